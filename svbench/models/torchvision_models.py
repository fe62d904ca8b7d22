"""torchvision's classification architectures as svbench models: ``torchvision:NAME`` (``resnet50``,
``mobilenet_v2``, ...: the names of ``torchvision.models.list_models(module=torchvision.models)``).

Built without weights (nothing is downloaded). Their inputs are 3-channel images; they carry no normalisation
layer (svbench's own models normalise inside), which changes nothing for the SV work they are used for here:
``spectrum --model`` and network tasks.
"""

from __future__ import annotations

import difflib
import warnings

from torch import nn

from svbench.errors import UserError

PREFIX = "torchvision:"


def is_torchvision(name: str) -> bool:
    return name.startswith(PREFIX)


def torchvision_name(name: str) -> str:
    """The bare torchvision name of ``torchvision:NAME``; an unknown one is one line with the closest names."""
    import torchvision

    bare = name[len(PREFIX):]
    names = torchvision.models.list_models(module=torchvision.models)
    if bare not in names:
        close = difflib.get_close_matches(bare, names, n=3)
        hint = f"; did you mean {' / '.join(close)}?" if close else ""
        raise UserError(f"unknown torchvision classification model {bare!r}{hint} (torchvision "
                        f"{torchvision.__version__} has {len(names)}: torchvision.models.list_models("
                        f"module=torchvision.models))")
    return bare


def build_torchvision(name: str, num_classes: int | None = None, in_channels: int = 3, aux_logits: bool | None = None,
                      **_: object) -> nn.Module:
    """torchvision's model ``torchvision:NAME`` without weights, with ``num_classes`` outputs (torchvision's default,
    1,000, when None) and, for the models with auxiliary classifiers (inception_v3, googlenet), ``aux_logits`` when
    given. Other keyword arguments of svbench's models (``image_size``, normalisation) do not apply."""
    import torchvision

    bare = torchvision_name(name)
    if in_channels != 3:
        raise UserError(f"model {name!r} takes 3-channel inputs, got {in_channels}; use a 3-channel dataset or input "
                        f"shape")
    kwargs: dict[str, object] = {} if num_classes is None else {"num_classes": int(num_classes)}
    if aux_logits is not None:
        kwargs["aux_logits"] = bool(aux_logits)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # e.g. inception_v3's note on its future default initialisation
        return torchvision.models.get_model(bare, weights=None, **kwargs)
