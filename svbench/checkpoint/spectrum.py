"""Per-layer spectra of a checkpoint's convs (``svbench spectrum``).

Without a model every conv is evaluated on the given input size with stride 1 (assumed, and said so). With a
registered model (or ``torchvision:NAME``, a torchvision classification architecture) and an input shape, forward
hooks give each conv's real input size, stride and padding (one pass on the meta device: shapes only).

What the numbers are: the SVs of the CIRCULAR conv on the layer's input grid (exact for circular padding; for a
zero-padded layer a "circular proxy", which is NOT a bound, methods.md section 1.2). ``sigma_max_bound`` is a
guaranteed upper bound for the zero-padded layer: the circular sigma_max on n' = s ceil((n + k - 1) / s); a
model's reflect- or replicate-padded conv gets its circular proxy and no bound (its padding map has norm > 1).
TT layers (cores k1, k2, k3) are QR-folded first; their nonzero SVs are those of the folded core (Theorem 1 of
Senderovich et al., NeurIPS 2022) and the rest are 0. Cayley layers (a weight with a scalar ``alpha``; Trockman &
Kolter, ICLR 2021) are read as the orthogonal operator they implement, never as a conv with the stored weight.
With a model, TT and Cayley layers take the geometry of the model's conv of the same name.
"""

from __future__ import annotations

import copy
import csv
import dataclasses
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from svbench.checkpoint.load import ConvEntry, find_convs, load_checkpoint
from svbench.errors import UserError, first_line
from svbench.functional.grouped import layer_sigma_max
from svbench.functional.transfer import (
    Grid,
    Stride,
    as_grid,
    as_stride,
    check_circular_geometry,
    grid_area,
    grid_div,
    grid_hw,
    grid_text,
    proxy_grid,
    stride_hw,
    stride_text,
)
from svbench.measure.env import device_name, resolve_device
from svbench.models.imported import is_imported

if TYPE_CHECKING:
    from svbench.checkpoint.lipschitz import ModelBound
    from svbench.methods.base import Method

# all-SVs methods that take only their own layer class (TTConv2d), never a plain kernel
_LAYER_TYPE_METHODS = ("tt",)


@dataclass
class LayerSpectrum:
    name: str
    kind: str
    shape: tuple[int, int, int, int]
    n: Grid  # the input grid: n (n x n) or (h, w)
    stride: Stride  # one int, or (s1, s2) per axis
    geometry_source: str  # "model hooks" or "assumed"
    padding: str
    svs: Tensor
    sigma_max_bound: float | None
    device: str = "cpu"  # where the SVs were computed
    groups: int = 1  # from the model's conv (with --model); a state dict alone does not record it
    dilation: Stride = 1
    proxy_n: Grid | None = None  # the grid of the circular proxy when it is not n (:func:`proxy_grid`)

    @property
    def sigma_max(self) -> float:
        return float(self.svs[0])

    @property
    def sigma_min(self) -> float:
        return float(self.svs[-1])

    @property
    def condition(self) -> float:
        return self.sigma_max / self.sigma_min if self.sigma_min > 0 else float("inf")


def _model_geometry(
    model_name: str, input_shape: tuple[int, ...], state: dict[str, Tensor], convs: list[ConvEntry] = (),
    module: nn.Module | None = None,
) -> dict[str, tuple[int, int, str, int, int]]:
    """name -> (input size, stride, padding mode, groups, dilation) of every conv of the model, by forward hooks.

    A TT layer of the checkpoint (``NAME.k1/k2/k3``, a model trained with ``tt``) or a Cayley layer (``NAME.weight``
    and ``NAME.alpha``, trained with ``cayley``) stands for the model's conv ``NAME`` when their channels and kernel
    size agree: the geometry is the conv's (the hooks read shapes only)."""
    import warnings

    from svbench.models.probe import probe_inputs

    def fit(state: dict[str, Tensor], convs: list[ConvEntry]) -> tuple[nn.Module, list[str], list[str]]:
        try:
            with torch.device("meta"):  # shapes only: nothing is allocated, initialised or computed
                model = named_model(model_name, input_shape, state, module)
        except (NotImplementedError, RuntimeError):  # a builder that computes with tensors (torchvision's regnet
            model = named_model(model_name, input_shape, state, module)  # reads its widths back): on the CPU
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*copying from a non-meta parameter")  # meta: not copied
            return model, *_load_into(model, _layers_as_convs(model, state, convs), model_name)

    model, missing, unexpected = fit(state, list(convs))
    prefix = _shared_prefix(state) if missing or unexpected else ""
    if prefix:  # e.g. a Lightning checkpoint: every key under the LightningModule's attribute ("model.", "net.")
        cut = len(prefix)
        bare = fit({k[cut:]: v for k, v in state.items()},
                   [dataclasses.replace(e, name=e.name[cut:], keys=tuple(k[cut:] for k in e.keys)) for e in convs])
        if not bare[1] and not bare[2]:
            model, missing, unexpected = bare
        else:
            prefix = ""
    if missing or unexpected:
        raise UserError(
            f"the checkpoint does not match model {model_name!r}: {len(missing)} missing key(s) "
            f"({', '.join(missing[:3])}) and {len(unexpected)} unexpected key(s) ({', '.join(unexpected[:3])})"
        )
    from svbench.methods.cayley import CayleyConv2d
    from svbench.methods.tt import TTConv2d

    # a pickled model (``module``) holds its TT / Cayley layers themselves: their geometry is their own
    kinds = (nn.Conv2d,) if module is None else (nn.Conv2d, TTConv2d, CayleyConv2d)

    def is_conv(name: str, mod: nn.Module) -> bool:
        return isinstance(mod, kinds)

    try:
        found = probe_inputs(model, input_shape, is_conv)
    except (RuntimeError, ValueError) as e:  # e.g. 1 channel into a 3-channel stem, or a grid pooled below 1 x 1
        shape = ",".join(map(str, input_shape))
        raise UserError(f"model {model_name!r} does not run on a {shape} input ({first_line(e)}); pass the "
                        f"--input-shape it was trained on") from None
    reached = {name for name, *_ in found}
    if any(is_conv(name, mod) and name not in reached for name, mod in model.named_modules()):
        # convs only training runs (auxiliary classifiers): their geometry from a train-mode pass, when the input
        # lets it run (inception_v3's AuxLogits needs 17 x 17 features); else they keep the assumed geometry
        try:
            found += [f for f in probe_inputs(model, input_shape, is_conv, training=True) if f[0] not in reached]
        except Exception:  # noqa: BLE001 - best effort: whatever stops the train-mode pass, the eval geometry stands
            pass
    return {prefix + name: (as_grid((int(shape[-2]), int(shape[-1]))), as_stride(mod.stride), mod.padding_mode,
                            int(getattr(mod, "groups", 1)), as_stride(getattr(mod, "dilation", 1)))
            for name, mod, shape in found}


def named_model(model_name: str, input_shape: tuple[int, ...], state: dict[str, Tensor],
                module: nn.Module | None = None) -> nn.Module:
    """The architecture ``--model`` names for inputs of ``input_shape`` (C, H, W): svbench's registered model (its
    head sized for H x W), torchvision's (its classifier sized as the checkpoint's) or a researcher's own (an
    import spec), on the current device; or a copy of ``module``, the model a checkpoint pickles."""
    from svbench.models import build_model
    from svbench.models.torchvision_models import is_torchvision

    if module is not None:
        return copy.deepcopy(module)
    if is_torchvision(model_name):
        return _torchvision_model(model_name, state, input_shape[0])
    return build_model(model_name, in_channels=input_shape[0], image_size=as_grid(tuple(input_shape[1:])))


def _shared_prefix(state: dict[str, Tensor]) -> str:
    """``"X."`` when every key of the state dict starts with the same first component X (a training framework's
    wrapper attribute: PyTorch Lightning's ``model.`` / ``net.``), else ``""``. Dropped only when the rest then fits
    the model exactly."""
    firsts = {k.split(".", 1)[0] for k in state}
    return f"{firsts.pop()}." if len(firsts) == 1 and all("." in k for k in state) else ""


def _torchvision_model(name: str, state: dict[str, Tensor], in_channels: int) -> nn.Module:
    """torchvision's classification model ``torchvision:NAME`` (no weights: nothing is downloaded), its classifier
    sized as the checkpoint's (the out-features of the last nn.Linear's weight), so a fine-tuned model's state dict
    fits; without its auxiliary classifiers (inception_v3's ``AuxLogits``, googlenet's ``aux1`` / ``aux2``: used in
    training only) when the checkpoint has none of their keys (a model built with ``aux_logits=False``)."""
    from svbench.models.torchvision_models import build_torchvision

    model = build_torchvision(name, in_channels=in_channels)
    kwargs: dict[str, object] = {}
    aux = {n for n, _ in model.named_children() if n.lower().startswith("aux")}
    if getattr(model, "aux_logits", False) and aux and not any(k.split(".", 1)[0] in aux for k in state):
        kwargs["aux_logits"] = False
    heads = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear) and n.split(".", 1)[0] not in aux]
    if heads:
        head, layer = heads[-1]
        # its weight, or a 2-D part of it a spectral_norm / weight_norm keeps (each has the out-features first)
        w = next((t for k, t in state.items() if isinstance(t, Tensor) and t.dim() == 2 and (
            k == f"{head}.weight" or any(k.startswith(head + part) for part in _WEIGHT_PARTS))), None)
        if w is not None and w.shape[0] != layer.out_features:
            kwargs["num_classes"] = int(w.shape[0])
    return build_torchvision(name, in_channels=in_channels, **kwargs) if kwargs else model


def _stands_for(e: ConvEntry, conv: nn.Module | None) -> bool:
    """Whether the TT or Cayley layer ``e`` of a checkpoint is what a method made of the model's ``conv``."""
    if not (isinstance(conv, nn.Conv2d) and conv.groups == 1 and as_stride(conv.dilation) == 1
            and conv.out_channels == e.c_out):
        return False
    if e.kind == "tt":  # a TT layer takes the conv's stride, one per axis too, and its kh x kw kernel
        return conv.in_channels == e.c_in and tuple(e.kernel.shape[-2:]) == tuple(conv.kernel_size)
    if len(set(conv.kernel_size)) != 1:
        return False
    k, s = conv.kernel_size[0], as_stride(conv.stride)
    # Cayley: stride 2 is a space-to-depth, then a stride-1 conv of 4 c_in inputs and kernel max(1, k // 2)
    return s in (1, 2) and conv.in_channels * s * s == e.c_in and e.kernel.shape[-1] == (k if s == 1 else
                                                                                       max(1, k // 2))


def _layers_as_convs(model: nn.Module, state: dict[str, Tensor], convs: list[ConvEntry]) -> dict[str, Tensor]:
    """``state`` with each TT layer's cores (Cayley layer's weight and scale) replaced by placeholders of the model's
    conv of the same name (weight, and bias where the conv has one and the layer none), when the layer is what a
    method made of that conv (:func:`_stands_for`), and spectral_norm / weight_norm parts by a placeholder weight
    (:func:`_without_weight_parts`); otherwise its keys stay and the load reports them."""
    mapped = _without_weight_parts(model, dict(state))
    modules = dict(model.named_modules())
    for e in convs:
        if e.kind == "conv" or not _stands_for(e, conv := modules.get(e.name)):
            continue
        for key in ("k1", "k2", "k3") if e.kind == "tt" else ("weight", "alpha"):
            mapped.pop(f"{e.name}.{key}", None)
        mapped[f"{e.name}.weight"] = torch.zeros_like(conv.weight, device="cpu")
        if conv.bias is not None and f"{e.name}.bias" not in mapped:
            mapped[f"{e.name}.bias"] = torch.zeros_like(conv.bias, device="cpu")
    return mapped


_WEIGHT_PARTS = (".weight_orig", ".weight_u", ".weight_v", ".weight_g", ".parametrizations.weight.")


def _without_weight_parts(model: nn.Module, state: dict[str, Tensor]) -> dict[str, Tensor]:
    """``state`` with the parts a spectral_norm / weight_norm keeps of a layer's weight (any layer: conv, linear)
    replaced by a placeholder ``NAME.weight`` of the model's own layer, so the plain model loads it (the geometry
    pass reads shapes only; the convs' weights are rebuilt by ``find_convs``)."""
    expected = set(model.state_dict())  # a model that is itself normalised expects the parts: left as they are
    for name, mod in model.named_modules():
        weight = getattr(mod, "weight", None)
        if not isinstance(weight, Tensor) or f"{name}.weight" in state or f"{name}.weight" not in expected:
            continue
        parts = [k for k in state if any(k.startswith(f"{name}{p}") for p in _WEIGHT_PARTS)]
        if parts:
            for k in parts:
                del state[k]
            state[f"{name}.weight"] = torch.zeros_like(weight, device="cpu")
    return state


def with_versions(model: nn.Module, state: dict[str, Tensor]) -> dict[str, Tensor]:
    """``state`` with the model's own per-module format versions (``_metadata``) where it carries none: svbench reads
    checkpoints into plain dicts, and a module that checks the version it loads (torchvision's mnasnet) would refuse
    them; the current format is the one the model was built in."""
    if getattr(state, "_metadata", None) is not None:
        return state
    versioned = OrderedDict(state)
    versioned._metadata = model.state_dict()._metadata  # type: ignore[attr-defined]
    return versioned


def _load_into(model: nn.Module, state: dict[str, Tensor], model_name: str) -> tuple[list[str], list[str]]:
    try:
        res = model.load_state_dict(with_versions(model, state), strict=False)
    except (RuntimeError, ValueError) as e:  # ValueError: a module's own check of what it loads
        # torch's first line is a header ("Error(s) in loading state_dict for Net:"); the reasons follow, one a line
        lines = [line.strip() for line in str(e).splitlines() if line.strip()]
        reasons = [line for line in lines if not line.startswith("Error(s) in loading")] or lines[:1]
        more = f" (and {len(reasons) - 1} more)" if len(reasons) > 1 else ""
        hint = ("; build it with the arguments it was trained with, e.g. FILE.py:Net(width=16)"
                if is_imported(model_name) and "size mismatch" in reasons[0] else "")
        raise UserError(f"the checkpoint does not fit model {model_name!r}: {reasons[0][:240]}{more}{hint}") from None
    return list(res.missing_keys), list(res.unexpected_keys)


def spectrum_method(method: str) -> Method:
    """The method that computes a checkpoint's spectra: a registered all-SVs method that reads plain kernels."""
    from svbench.methods import METHODS

    m = METHODS.get(method)()
    if m.provides != "all_svs":
        raise UserError(f"method {method!r} provides {m.provides}, not all SVs; use --method sedghi")
    if method in _LAYER_TYPE_METHODS:  # they read their own layer type; a checkpoint gives kernels (TT: folded)
        raise UserError(f"method {method!r} needs its own layer type, but a checkpoint's convs are read as kernels "
                        f"(TT layers already QR-folded); use --method sedghi")
    return m


def layer_spectrum(entry: ConvEntry, n: Grid, stride: Stride, method: str = "sedghi", padding: str = "zeros",
                   device: torch.device | str = "cpu", groups: int = 1, dilation: Stride = 1) -> Tensor:
    """All SVs (descending, zeros included, float64 on the CPU) of the circular operator of this conv on n x n (or
    h x w), computed on ``device``; a grouped or dilated conv (known from a model) as that operator, strides and
    dilations per axis too; a Cayley layer as its implemented orthogonal operator (whatever ``method``: it is no
    conv with its stored weight)."""
    if entry.kind == "cayley":
        return _cayley_spectrum(entry, n, stride, device)
    m = spectrum_method(method)
    kh, kw = entry.kernel.shape[-2:]
    from svbench.methods.base import model_padding

    spans = _spans(entry, dilation)
    check_circular_geometry(max(spans), n, stride)
    conv = nn.Conv2d(entry.kernel.shape[1] * groups, entry.kernel.shape[0], (kh, kw), stride=stride, bias=False,
                     padding=model_padding(spans, stride),
                     dilation=dilation, groups=groups, padding_mode="circular", device=device)
    with torch.no_grad():
        conv.weight.copy_(entry.kernel.float())
    svs = m.layer_svs(conv, n).detach().double().cpu()
    if entry.kind == "tt":
        total = min(entry.c_out * grid_area(grid_div(n, stride)), entry.c_in * grid_area(n))
        svs = torch.cat([svs, svs.new_zeros(max(0, total - svs.numel()))])
    return svs


def _cayley_geometry(entry: ConvEntry, n: Grid, stride: Stride) -> None:
    """A Cayley layer's grid: one stride (1 or 2) dividing each side, the kernel fitting each side after it (square
    or rectangular grids: its operator is computed on either since session 18)."""
    h, w = grid_hw(n)
    if stride not in (1, 2) or entry.c_in % (stride * stride) or h % stride or w % stride:
        raise UserError(f"a Cayley layer of stride {stride_text(stride)} needs an input size divisible by it and "
                        f"{stride_text(stride)}^2 dividing its {entry.c_in} stored input channels; got n = "
                        f"{grid_text(n)}")
    k_eff = entry.kernel.shape[-1]
    if k_eff > min(h, w) // stride:
        raise UserError(f"its {k_eff}x{k_eff} Cayley kernel is larger than the {h // stride}x{w // stride} grid it "
                        f"runs on; use a larger input size")


def _cayley_spectrum(entry: ConvEntry, n: Grid, stride: int, device: torch.device | str) -> Tensor:
    """All SVs (descending, float64 on the CPU) of a Cayley layer's operator on n x n (or h x w): the layer rebuilt
    from its
    weight and scale in float64, then the SVs of its per-frequency Cayley transforms (1 up to rounding when the
    layer is what it claims to be)."""
    from svbench.methods.cayley import CayleyConv2d, CayleyMethod

    _cayley_geometry(entry, n, stride)
    k_eff = entry.kernel.shape[-1]
    layer = CayleyConv2d(entry.c_in // (stride * stride), entry.c_out, k_eff if stride == 1 else 2 * k_eff, stride,
                         bias=False, device=device, dtype=torch.float64).eval()
    with torch.no_grad():
        layer.weight.copy_(entry.kernel.double())
        layer.alpha.copy_(entry.alpha.double())
    return CayleyMethod().layer_svs(layer, n).detach().double().cpu()


@dataclass
class SpectrumPlan:
    """What :func:`compute_spectrum` will do: every conv of a checkpoint with the geometry it is evaluated on, each
    already checked (finite weights, a grid the layer fits), so a bad layer is said before any SV is computed."""

    # entry, n, stride, padding, groups, dilation, source
    layers: list[tuple[ConvEntry, Grid, Stride, str, int, Stride, str]]
    method: str
    device: torch.device
    # with --model: the architecture holding the checkpoint's weights, for its certified Lipschitz bound
    # (checkpoint.lipschitz); None with the reason in bound_note when it cannot hold them as they are
    model_name: str | None = None
    input_shape: tuple[int, int, int] | None = None
    bound_model: nn.Module | None = None
    bound_note: str | None = None
    selection: str | None = None  # "k of N conv layers, --layers PATTERNS" when only some are computed


def plan_spectrum(
    path: str | Path,
    *,
    input_size: Grid | None = None,
    model: str | None = None,
    input_shape: tuple[int, int, int] | None = None,
    method: str = "sedghi",
    trust: bool = False,
    device: torch.device | str = "cpu",
    lipschitz: bool = True,
) -> SpectrumPlan:
    """Read the checkpoint and check every layer (cheap: no SVs). Raises UserError naming the first bad layer. With
    ``model`` and ``lipschitz``, the plan also holds the model loaded with the checkpoint's weights."""
    spectrum_method(method)  # a wrong --method is said before the checkpoint is read, not as a layer's problem
    dev = resolve_device(str(device))
    state, pickled = load_checkpoint(path, trust=trust)
    convs = find_convs(state)
    if model is None and input_shape is not None:  # the model the checkpoint pickles (torch.save(model))
        if pickled is None:
            raise UserError(f"--input-shape without --model reads the geometry from the model a checkpoint pickles "
                            f"(torch.save(model)); {path} holds a state dict: pass --model NAME too (a registered "
                            f"name, torchvision:NAME or FILE.py:NAME), or --input-size N")
        model = f"pickled {type(pickled).__name__}"
    else:
        pickled = None
    return _plan(state, convs, model=model, module=pickled, input_size=input_size, input_shape=input_shape,
                 method=method, device=dev, lipschitz=lipschitz)


def _plan(state: dict[str, Tensor], convs: list[ConvEntry], *, model: str | None, module: nn.Module | None,
          input_size: Grid | None, input_shape: tuple[int, int, int] | None, method: str, device: torch.device,
          lipschitz: bool) -> SpectrumPlan:
    """The plan of a checkpoint's (or a live model's) convs: each layer's geometry from the model (a name, or
    ``module`` itself) or assumed from ``input_size``, checked."""
    pickled, dev = module, device
    if model is not None:
        if input_shape is None:
            raise UserError("--model needs --input-shape C,H,W (e.g. 3,32,32)")
        geo = _model_geometry(model, input_shape, state, convs, pickled)
    else:
        if input_size is None:
            raise UserError("pass --input-size N (or --model NAME --input-shape C,H,W for real per-layer sizes)")
        geo = {}
    layers = []
    for e in convs:
        if not torch.isfinite(e.kernel).all() or (e.alpha is not None and not torch.isfinite(e.alpha).all()):
            raise UserError(f"layer {e.name!r} has NaN or Inf weights: the checkpoint is corrupt or its training "
                            f"diverged")
        if e.name in geo:
            n, stride, pad, groups, dilation = geo[e.name]
        elif model is not None and e.kind != "conv":
            fix = "run without --model" if pickled is None else "pass --input-size N instead"
            raise UserError(f"{'TT' if e.kind == 'tt' else 'Cayley'} layer {e.name!r} is not in model {model!r}; "
                            f"{fix}")
        else:
            n, stride, pad, groups, dilation = as_grid(input_size or tuple(input_shape[1:])), 1, "zeros", 1, 1
        if e.kind == "cayley":
            pad = "circular"  # the Cayley layer is a circular operator whatever the padding of the conv it replaced
        try:
            _check_geometry(e, n, stride, dilation, pad)
        except UserError as err:
            raise UserError(f"layer {e.name!r}: {err}") from None
        source = "model hooks" if e.name in geo else "assumed"
        layers.append((e, n, stride, pad, groups, dilation, source))
    plan = SpectrumPlan(layers, method, dev)
    if model is not None and lipschitz:
        from svbench.checkpoint.lipschitz import load_model

        plan.model_name, plan.input_shape = model, input_shape
        plan.bound_model, plan.bound_note = load_model(model, input_shape, state, convs, pickled)
    return plan


def model_spectrum(model: nn.Module, input_shape: tuple[int, int, int], *, method: str = "sedghi",
                   device: torch.device | str = "cpu", layers: list[str] | None = None) -> list[LayerSpectrum]:
    """Every conv's spectrum of a model in memory (a notebook's, mid-training), each conv on the input grid, stride,
    padding, groups and dilation its forward gives it for inputs of ``input_shape`` (C, H, W): forward hooks on a
    copy, the model itself untouched. The same per-layer results as ``svbench spectrum model.pt --input-shape C,H,W``
    gives for the model pickled: all SVs of each conv's circular model (exact; TT layers from their folded core, Cayley
    layers as the orthogonal operator they implement), ``sigma_max_bound`` the guaranteed zero-padding bound; nothing
    is written; ``layers``: only the convs matching these names or shell-style patterns (as ``--layers``). The
    model's certified Lipschitz bound: :func:`svbench.metrics.lipschitz_bound`."""
    spectrum_method(method)
    if not (isinstance(input_shape, tuple | list) and len(input_shape) == 3 and all(
            isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in input_shape)):
        raise UserError(f"input_shape must be (C, H, W) of positive integers, e.g. (3, 32, 32); got {input_shape!r}")
    state = {k: v.detach() for k, v in model.state_dict().items()}
    plan = _plan(state, find_convs(state), model=type(model).__name__, module=model, input_size=None,
                 input_shape=tuple(input_shape), method=method, device=resolve_device(str(device)), lipschitz=False)
    if layers is not None:
        plan = select_layers(plan, [layers] if isinstance(layers, str) else list(layers), type(model).__name__)
    return compute_spectrum(plan)


def _check_geometry(entry: ConvEntry, n: Grid, stride: Stride, dilation: Stride, padding: str) -> None:
    if entry.kind == "cayley":
        _cayley_geometry(entry, n, stride)
    else:
        check_circular_geometry(max(_spans(entry, dilation)), proxy_grid(n, stride, padding), stride)


def _spans(entry: ConvEntry, dilation: Stride) -> tuple[int, int]:
    """Input pixels one output pixel sees along each axis: d (k - 1) + 1 (height, width), a dilation per axis."""
    return tuple(d * (k - 1) + 1 for d, k in zip(stride_hw(dilation), entry.kernel.shape[-2:]))


def compute_spectrum(plan: SpectrumPlan, into: list[LayerSpectrum] | None = None,
                     progress: Callable[[int, str], None] | None = None) -> list[LayerSpectrum]:
    """The spectra of a plan's layers, in order. ``into``: a list each finished layer is appended to as soon as it
    is done, so a caller keeps (and can write) the finished layers when a later one fails or is interrupted.
    ``progress(i, name)`` is called before layer i (0-based) starts (the CLI's progress bar)."""
    out = [] if into is None else into
    dev = plan.device
    for i, (e, n, stride, pad, groups, dilation, source) in enumerate(plan.layers):
        if progress is not None:
            progress(i, e.name)
        grid = proxy_grid(n, stride, pad) if e.kind != "cayley" else n
        try:
            svs = layer_spectrum(e, grid, stride, plan.method, pad, dev, groups, dilation)
        except UserError as err:
            raise UserError(f"layer {e.name!r}: {err}") from None
        kh, kw = e.kernel.shape[-2:]
        # the bound is the zero-padded layer's on its own n (its n' = s ceil((n + k - 1) / s) holds whether or not
        # s divides n); reflect / replicate padding (a model's) has none (methods.base)
        bound = None if pad != "zeros" else layer_sigma_max(e.kernel.float().to(dev), n, stride, "zeros", groups,
                                                            dilation)  # a grouped conv by its blocks
        shape = (e.c_out, e.c_in * groups, kh, kw)
        kind = e.kind if e.via is None else f"{e.kind} ({e.via})"  # the eval weight rebuilt from its parts
        out.append(LayerSpectrum(e.name, kind, shape, n, stride, source, pad, svs, bound,
                                 f"{dev.type} ({device_name(dev)})", groups, dilation, None if grid == n else grid))
    return out


def checkpoint_spectrum(path: str | Path, **options: Any) -> list[LayerSpectrum]:
    """Every conv's spectrum: :func:`plan_spectrum` (its keyword options: input_size, model, input_shape, method,
    trust, device), then :func:`compute_spectrum`."""
    return compute_spectrum(plan_spectrum(path, **options))


def prepare_out(out_dir: str | Path) -> Path:
    """Create the output folder before anything is computed, so an unwritable ``--out`` costs no computation."""
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".svbench-write-check"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise _write_error(out, e) from None
    return out


def _write_error(out: Path, e: OSError) -> UserError:
    return UserError(f"cannot write the spectrum into {out}: {e.strerror}; choose another folder with --out")


def write_spectrum(spectra: list[LayerSpectrum], out_dir: str | Path, incomplete: str | None = None,
                   selection: str | None = None) -> tuple[Path, Path]:
    """spectrum.csv (one row per SV), spectrum.md and spectrum.png (each layer's sorted SVs, and sigma_max / median /
    sigma_min per layer) in ``out_dir``; ``incomplete`` marks a list cut short (in the table and the plot's title),
    ``selection`` says which layers were asked for (``--layers``)."""
    from svbench.report.plots import spectrum_per_layer

    out = prepare_out(out_dir)
    try:
        csv_path, md_path = out / "spectrum.csv", out / "spectrum.md"
        with open(csv_path, "w", newline="") as f:
            w = csv.writer(f)
            # grid: where the circular operator was taken (n, or the proxy grid of proxy_grid)
            w.writerow(["layer", "kind", "n", "stride", "index", "sigma", "grid"])
            for s in spectra:  # the layer's columns formatted once, not per SV (Wide-ResNet-50-2: 831k rows, 11 s)
                n, stride = grid_text(s.n), stride_text(s.stride)
                grid = grid_text(s.n if s.proxy_n is None else s.proxy_n)
                w.writerows((s.name, s.kind, n, stride, i, v, grid) for i, v in enumerate(map(repr, s.svs.tolist())))
        md_path.write_text(spectrum_markdown(spectra, incomplete, selection))
        png = spectrum_per_layer([(sp.name, sp.svs.double().cpu().numpy(), sp.sigma_max_bound) for sp in spectra],
                                 title=f"INCOMPLETE: {incomplete}" if incomplete else "")
        if png is not None:
            (out / "spectrum.png").write_bytes(png)
    except OSError as e:
        raise _write_error(out, e) from None
    return csv_path, md_path


def comparison_markdown(results: list[tuple[str, list[LayerSpectrum]]], bounds: list[ModelBound] = ()) -> str:
    """sigma_max and sigma_min of every layer (matched by name, in first-seen order) across checkpoints, and each
    model's certified Lipschitz bound when ``bounds`` (one per checkpoint, with --model) are given."""
    labels = [label for label, _ in results]
    by_name = [{s.name: s for s in spectra} for _, spectra in results]
    names = list(dict.fromkeys(s.name for _, spectra in results for s in spectra))
    lines = ["Each conv's sigma_max and sigma_min in each checkpoint (layers matched by name; — where a checkpoint has",
             "no such layer). Each checkpoint's full table, CSV and plot are in its own folder.", "",
             "| layer | " + " | ".join(f"{label} sigma_max | {label} sigma_min" for label in labels) + " |",
             "|---|" + "---|---|" * len(labels)]
    for name in names:
        cells = []
        for layers in by_name:
            s = layers.get(name)
            cells += ["—", "—"] if s is None else [f"{s.sigma_max:.6g}", f"{s.sigma_min:.4g}"]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    if bounds:
        lines += ["", "Certified l2 Lipschitz bound of each model (lipschitz.md in its folder):", ""]
        lines += [f"- {label}: " + (f"L = {b.value:.6g}" if b.value is not None else f"not computed ({b.note})")
                  for label, b in zip(labels, bounds)]
    return "\n".join(lines) + "\n"


def write_comparison(results: list[tuple[str, list[LayerSpectrum]]], out_dir: str | Path,
                     bounds: list[ModelBound] = ()) -> tuple[Path, Path]:
    """comparison.md and comparison.png (sigma_max and sigma_min per layer, one line per checkpoint) in ``out_dir``."""
    from svbench.report.plots import spectrum_comparison

    out = prepare_out(out_dir)
    md_path, png_path = out / "comparison.md", out / "comparison.png"
    try:
        md_path.write_text(comparison_markdown(results, bounds))
        png_path.write_bytes(spectrum_comparison(
            [(label, [(s.name, s.sigma_max, s.sigma_min) for s in spectra]) for label, spectra in results]))
    except OSError as e:
        raise _write_error(out, e) from None
    return md_path, png_path


def depthwise_note(spectra: list[LayerSpectrum]) -> str | None:
    """A warning for weights that look depthwise: (C, 1, k, k) after the first layer, read as 1 -> C convs."""
    names = [s.name for i, s in enumerate(spectra) if i > 0 and s.kind == "conv" and s.shape[1] == 1 and s.shape[0] > 1
             and s.geometry_source != "model hooks"]  # with --model the conv's own groups were used
    if not names:
        return None
    return (f"layer(s) {', '.join(names)} have 1 input channel though not first: read as 1 -> C convs; if they are "
            f"depthwise or grouped convs these SVs are of another operator (a state dict does not record groups; "
            f"pass --model NAME --input-shape C,H,W to read groups and dilation from the model)")


def _grouping(s: LayerSpectrum) -> str:
    return (f" g={s.groups}" if s.groups > 1 else "") + (f" d={stride_text(s.dilation)}" if s.dilation != 1 else "")


def _grid_cell(s: LayerSpectrum) -> str:
    return grid_text(s.n) + ("" if s.proxy_n is None else f" -> {grid_text(s.proxy_n)}")


def select_layers(plan: SpectrumPlan, patterns: list[str], path: str | Path) -> SpectrumPlan:
    """The plan with only the layers whose name matches one of the shell-style ``patterns`` (``layer4.*``,
    ``*downsample*``; ``fnmatch``, case-sensitive), in order; none matching is one line naming some layers. The
    model (and its certified bound) stays whole: the bound is the model's, not the selection's."""
    import fnmatch

    kept = [layer for layer in plan.layers if any(fnmatch.fnmatchcase(layer[0].name, pat) for pat in patterns)]
    if not kept:
        names = [layer[0].name for layer in plan.layers]
        shown = ", ".join(names[:6]) + (f", ... ({len(names)} in all)" if len(names) > 6 else "")
        raise UserError(f"--layers {','.join(patterns)}: no conv layer of {path} matches; its layers: {shown}")
    plan.selection = f"{len(kept)} of {len(plan.layers)} conv layers, --layers {','.join(patterns)}"
    plan.layers = kept
    return plan


def spectrum_markdown(spectra: list[LayerSpectrum], incomplete: str | None = None, selection: str | None = None
                      ) -> str:
    """The spectrum table with what its numbers are; ``incomplete``: why the list stops early (said first);
    ``selection``: which layers were asked for (``--layers``)."""
    lines = [
        "SVs of each conv's circular operator on its input grid (exact for circular padding; a proxy, not a bound,",
        "for zero padding). `sigma_max bound` is a guaranteed upper bound for the zero-padded layer (circular",
        "sigma_max on n' = s*ceil((n+k-1)/s), k the longer side; none for reflect / replicate padding). TT layers:",
        "QR-folded core, exact by Theorem 1. Cayley layers: the implemented orthogonal operator (circular; shape =",
        "the stored weight, after space-to-depth). A state dict does not record groups or dilation: without --model",
        "every weight is read as a dense, undilated conv of its own shape; with --model they come from the model's",
        "convs (shown as g=, d= after the shape). A padded conv whose stride does not divide its input n has its",
        "proxy on n rounded up to a multiple of the stride (`n -> proxy grid`).",
    ]
    note = depthwise_note(spectra)
    if note:
        lines.append(note)
    if selection:
        lines.append(f"Selected: {selection}.")
    lines += [
        f"Computed on: {', '.join(sorted({s.device for s in spectra})) or 'cpu'}.",
        "",
        "| layer | kind | shape (out, in, kh, kw) | input n | stride used | padding | #SVs | sigma_max | sigma_min "
        "| condition | sigma_max bound (zero pad) |",
        "|" + "---|" * 11,
    ]
    if incomplete:
        lines[:0] = [f"**INCOMPLETE**: {incomplete}", ""]
    for s in spectra:
        cond = "inf" if s.condition == float("inf") else f"{s.condition:.4g}"
        bound = "—" if s.sigma_max_bound is None else f"{s.sigma_max_bound:.6g}"
        lines.append(
            f"| {s.name} | {s.kind} | {s.shape}{_grouping(s)} | {_grid_cell(s)} | {stride_text(s.stride)} "
            f"({s.geometry_source}) | "
            f"{s.padding} | {s.svs.numel()} | {s.sigma_max:.6g} | {s.sigma_min:.4g} | {cond} | {bound} |"
        )
    return "\n".join(lines) + "\n"
