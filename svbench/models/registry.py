"""Model registry: ``build_model(name, num_classes=..., in_channels=..., image_size=...)``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from svbench._registry import Registry
from svbench.errors import UserError

MODELS: Registry[Callable[..., nn.Module]] = Registry("model")


def build_model(name: str, **kwargs: Any) -> nn.Module:
    """A registered model, ``torchvision:NAME`` (a torchvision classification architecture, no weights), or your
    own: ``FILE.py:NAME`` / ``MODULE:NAME`` with optional literal arguments (:mod:`svbench.models.imported`)."""
    from svbench.models.imported import build_imported, is_imported
    from svbench.models.torchvision_models import build_torchvision, is_torchvision

    if is_torchvision(name):
        return build_torchvision(name, **kwargs)
    if is_imported(name):
        return build_imported(name, **kwargs)
    return MODELS.get(name)(**kwargs)


def check_model_name(name: str) -> None:
    """Raise the one-line UserError :func:`build_model` would, without building anything."""
    from svbench.models.imported import check_imported, is_imported
    from svbench.models.torchvision_models import is_torchvision, torchvision_name

    if is_torchvision(name):
        torchvision_name(name)
    elif is_imported(name):
        check_imported(name)
    elif name not in MODELS:
        raise UserError(f"{MODELS.unknown_message(name)} torchvision's classification architectures are "
                        f"torchvision:NAME; your own FILE.py:NAME or MODULE:NAME (network tasks, spectrum --model).")
