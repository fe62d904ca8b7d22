"""The method interface every registered method implements, and the layer shapes they are run on.

A method is a thin class over pure functions in ``svbench.functional``. It declares what it provides
(``all_svs``, ``upper_bound``, ``estimate``, ``orthogonal_layer`` or ``none``), which layer shapes it supports
(the runner skips the others and says why) and a frozen, validated config dataclass.
"""

from __future__ import annotations

import abc
import dataclasses
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
from torch import Tensor, nn

from svbench._registry import Registry
from svbench._validate import from_mapping, to_mapping
from svbench.errors import UnsupportedShape, UserError
from svbench.functional.transfer import (
    Grid,
    Stride,
    as_grid,
    as_stride,
    check_circular_geometry,
    fits_grid,
    grid_hw,
    grid_text,
    proxy_grid,
    stride_hw,
    stride_text,
)

Provides = Literal["all_svs", "upper_bound", "estimate", "orthogonal_layer", "none"]
PROVIDES_HELP: dict[str, str] = {
    "all_svs": "all singular values, exact",
    "upper_bound": "a guaranteed upper bound on sigma_max",
    "estimate": "an estimate of sigma_max (from below, not a certificate)",
    "orthogonal_layer": "an orthogonal layer (all SVs 1 by construction)",
    "none": "nothing: plain conv, the reference for overhead and accuracy",
}
Padding = Literal["circular", "zeros"]


@dataclass(frozen=True)
class LayerSpec:
    """One conv layer geometry: an n x n input (n x width with ``width``, e.g. a spectrogram layer), square k x k
    kernel, 'same' padding k // 2, one stride or one per axis ((1, 2): the width's only, as a spectrogram CNN's)."""

    c_in: int
    c_out: int
    k: int
    n: int  # the input height (and width, unless ``width`` is given)
    stride: int | tuple[int, int] = 1  # canonical: the int s when both axes agree, else (s_height, s_width)
    padding: Padding = "circular"
    groups: int = 1
    dilation: int = 1
    width: int | None = None  # a rectangular n x width input; None (or n) is the square n x n one

    def __post_init__(self) -> None:
        if self.width is not None and self.width == self.n:
            object.__setattr__(self, "width", None)  # canonical: a square spec is one value, whatever was written
        if isinstance(self.stride, list | tuple):  # (s, s) is s: a spec is one value however its stride was written
            if len(self.stride) != 2:
                raise ValueError(f"stride must be a positive integer or [s_height, s_width], got {list(self.stride)!r}")
            for value in self.stride:
                if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                    raise ValueError(f"stride must be a positive integer or [s_height, s_width] of positive "
                                     f"integers, got {list(self.stride)!r}")
            object.__setattr__(self, "stride", as_stride(tuple(self.stride)))
        for name in ("c_in", "c_out", "k", "n", "stride", "groups", "dilation", "width"):
            value = getattr(self, name)
            if (name == "width" and value is None) or (name == "stride" and isinstance(value, tuple)):
                continue
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.k % 2 == 0:
            raise ValueError(f"kernel size must be odd ('same' padding k // 2), got k={self.k}")
        span = self.dilation * (self.k - 1) + 1
        h, w = self.hw
        if span > min(h, w):
            raise ValueError(
                f"kernel {self.k}x{self.k} (dilation {self.dilation}) is larger than the {h}x{w} input; use "
                f"{'n' if h <= w else 'width'} >= {span}"
            )
        s1, s2 = self.strides
        axes = ((h, s1, "input size"), (w, s2, "input width")) if self.width or s1 != s2 else ((h, s1, "input size"),)
        for side, s, name in axes:
            if self.padding == "circular" and side % s:
                raise ValueError(f"stride {s} does not divide the {name} {side} (circular padding needs "
                                 f"stride | n)")
        if self.c_in % self.groups or self.c_out % self.groups:
            raise ValueError(f"groups={self.groups} must divide c_in={self.c_in} and c_out={self.c_out}")

    @property
    def hw(self) -> tuple[int, int]:
        """(height, width) of the input."""
        return self.n, self.width or self.n

    @property
    def strides(self) -> tuple[int, int]:
        """(along the height, along the width)."""
        return stride_hw(self.stride)

    @property
    def grid(self) -> Grid:
        """The input grid as the engine and ``layer_svs`` take it: n, or (n, width)."""
        return as_grid(self.hw)

    @property
    def in_shape(self) -> tuple[int, int, int]:
        return (self.c_in, *self.hw)

    @property
    def out_hw(self) -> tuple[int, int]:
        """(height, width) of the output."""
        p = self.dilation * (self.k // 2)
        return tuple((side + 2 * p - self.dilation * (self.k - 1) - 1) // s + 1 for side, s in zip(self.hw,
                                                                                                  self.strides))

    def num_svs(self) -> int:
        """Number of SVs of the layer's operator, zeros included: min(c_out m^2, c_in n^2) (m1 m2, h w on a
        rectangular input)."""
        (m1, m2), (h, w) = self.out_hw, self.hw
        return min(self.c_out * m1 * m2, self.c_in * h * w)

    @property
    def label(self) -> str:
        pad = "circ" if self.padding == "circular" else "zero"
        extra = (f" g{self.groups}" if self.groups > 1 else "") + (f" d{self.dilation}" if self.dilation > 1 else "")
        return f"{self.c_in}->{self.c_out} k{self.k} n{grid_text(self.grid)} s{stride_text(self.stride)} {pad}{extra}"

    def as_dict(self) -> dict[str, Any]:
        """The fields; ``width`` only for a rectangular input (square records keep the schema they always had)."""
        out = dataclasses.asdict(self)
        if out["width"] is None:
            del out["width"]
        return out


@dataclass(frozen=True)
class Capabilities:
    """What a method can handle; ``why_not`` returns the reason a shape is skipped (None if supported)."""

    strides: tuple[int, ...] | None = None  # None: any stride
    paddings: tuple[str, ...] = ("circular", "zeros")
    groups: bool = False
    dilation: bool = False

    def why_not(self, spec: LayerSpec) -> str | None:
        # a 1 x 1 conv pads nothing (seeded_conv pads d (k // 2)): zero-padded, it is the circular operator when the
        # stride divides n (else it has ceil(n / s) outputs a side, which the circular model cannot have)
        moot = spec.k == 1 and all(side % s == 0 for side, s in zip(spec.hw, spec.strides)) and (
            "circular" in self.paddings)
        if spec.padding not in self.paddings and not moot:
            return f"{spec.padding} padding not supported (supports: {', '.join(self.paddings)})"
        if self.strides is not None and isinstance(spec.stride, tuple):
            return (f"a stride per axis ({stride_text(spec.stride)}) not supported (supports: "
                    f"{', '.join(map(str, self.strides))} on both axes)")
        if self.strides is not None and spec.stride not in self.strides:
            return f"stride {spec.stride} not supported (supports: {', '.join(map(str, self.strides))})"
        if spec.groups > 1 and not self.groups:
            return "grouped convolution not supported"
        if spec.dilation > 1 and not self.dilation:
            return "dilation not supported"
        return None

    def describe(self) -> str:
        strides = "any" if self.strides is None else ",".join(map(str, self.strides))
        return (
            f"padding {'/'.join(self.paddings)}; stride {strides}; groups {'yes' if self.groups else 'no'}; "
            f"dilation {'yes' if self.dilation else 'no'}"
        )


@dataclass(frozen=True)
class NoConfig:
    """A method without hyper-parameters."""


def seeded_conv(
    spec: LayerSpec, *, seed: int, dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu"
) -> nn.Conv2d:
    """A plain conv of this geometry with a reproducible kernel W ~ N(0, 1) / (k sqrt(c_in / groups)) and bias."""
    conv = nn.Conv2d(
        spec.c_in, spec.c_out, spec.k, stride=spec.stride, padding=spec.dilation * (spec.k // 2),
        dilation=spec.dilation, groups=spec.groups, bias=True, padding_mode=spec.padding,
    )
    gen = torch.Generator().manual_seed(seed)
    fan = spec.k * (spec.c_in // spec.groups) ** 0.5
    with torch.no_grad():
        conv.weight.copy_(torch.randn(conv.weight.shape, generator=gen, dtype=torch.float64) / fan)
        conv.bias.copy_(0.1 * torch.randn(conv.bias.shape, generator=gen, dtype=torch.float64))
    return conv.to(device=device, dtype=dtype)


def conv_geometry(layer: nn.Module, *, anisotropic: bool = False) -> tuple[Stride, str, int, Stride]:
    """(stride, padding mode, groups, dilation) of an nn.Conv2d-like layer; raises for a transposed conv (its
    operator is the adjoint of a conv on its OUTPUT grid: read as a conv on its input grid, as ``gram`` and
    ``power`` did, it is another operator) and, unless ``anisotropic`` (the routes that take a stride and a
    dilation per axis: :attr:`Method.anisotropic`), for a stride or dilation that differs between the axes.
    Stride and dilation come canonical: the int s when both axes agree, (s1, s2) otherwise."""
    if isinstance(layer, nn.modules.conv._ConvTransposeNd):
        raise UnsupportedShape(f"{type(layer).__name__} is the adjoint of a conv on its output grid: use the network "
                               f"routes (network_svs), or adjoint_conv(layer) on transposed_grid(layer, h, w) "
                               f"(svbench.methods.base)")
    if anisotropic:
        stride, dilation = as_stride(getattr(layer, "stride", 1)), as_stride(getattr(layer, "dilation", 1))
    else:
        stride = _square(getattr(layer, "stride", 1), "stride")
        dilation = _square(getattr(layer, "dilation", 1), "dilation")
    return stride, getattr(layer, "padding_mode", "zeros"), getattr(layer, "groups", 1), dilation


def geometry_of(layer: nn.Module) -> tuple[Stride, int, Stride]:
    """(stride, groups, dilation) of a conv as the network routes take them (stride and dilation canonical: an int,
    or one per axis)."""
    stride, _, groups, dilation = conv_geometry(layer, anisotropic=True)
    return stride, groups, dilation


def kernel_spans(layer: nn.Module) -> tuple[int, int]:
    """Input pixels one output pixel sees along each side: d (k - 1) + 1 (height, width)."""
    k, d = layer.kernel_size, layer.dilation
    return d[0] * (k[0] - 1) + 1, d[1] * (k[1] - 1) + 1


def total_padding(layer: nn.Module) -> tuple[int, int]:
    """Padding added along each side (height, width), both ends together: 2p for an int ``padding``, d (k - 1) for
    ``"same"`` (torch pads asymmetrically when that is odd), 0 for ``"valid"``."""
    p = getattr(layer, "padding", 0)
    if isinstance(p, str):
        return tuple(s - 1 for s in kernel_spans(layer)) if p == "same" else (0, 0)
    p = (p, p) if isinstance(p, int) else tuple(p)
    return 2 * p[0], 2 * p[1]


def effective_weight(layer: nn.Module) -> Tensor:
    """The weight the layer's forward uses: its parameter, or what a torch parametrization (``parametrizations.
    spectral_norm``, ``weight_norm``, ``orthogonal``, ...) computes from its originals -- read with the
    parametrizations in eval mode, so reading it never advances spectral_norm's power iteration (a side effect on
    the user's model). torch's older hook-based ``spectral_norm`` / ``weight_norm`` keep the computed weight as the
    attribute itself (set by their pre-hook at each forward)."""
    from torch.nn.utils import parametrize

    if not parametrize.is_parametrized(layer, "weight"):
        return layer.weight
    parts = list(layer.parametrizations.weight)
    modes = [p.training for p in parts]
    for p in parts:
        p.train(False)
    try:
        return layer.weight
    finally:
        for p, mode in zip(parts, modes):
            p.train(mode)


def is_plain(layer: nn.Module, kind: type[nn.Module] = nn.Conv2d) -> bool:
    """Whether ``layer`` is the operator of ``kind`` (nn.Conv2d / nn.ConvTranspose2d) with its effective weight:
    the class itself, or torch's parametrized version of it (spectral_norm, weight_norm, ...). A subclass with a
    forward of its own (weight standardisation, a learned scale) is not: its weight is not its operator's."""
    if type(layer) is kind:
        return True
    from torch.nn.utils import parametrize

    return parametrize.is_parametrized(layer) and type(layer).__bases__ == (kind,)


def share_weight(twin: nn.Module, weight: Tensor) -> nn.Module:
    """``twin`` with ``weight`` (a layer's effective weight) as its own: the same tensor -- a parameter is shared,
    not copied; a weight a parametrization or a hook computes is set as a plain attribute."""
    if not isinstance(weight, nn.Parameter):
        del twin.weight
    twin.weight = weight
    return twin


def sv_weight(layer: nn.Module) -> Tensor:
    """The layer's weight for an SV computation (``layer_svs`` and the network routes), detached (its effective
    weight: :func:`effective_weight`); float16 / bfloat16 weights come in float32 (exactly: every 16-bit float is a
    float32), since the FFT and LAPACK / cuSOLVER routes have no 16-bit complex kernels."""
    w = effective_weight(layer).detach()
    return w.float() if w.dtype in (torch.float16, torch.bfloat16) else w


def mode_is_moot(layer: nn.Module, n: Grid) -> bool:
    """True when the layer adds no padding on any side (``padding=0`` / ``"valid"``) and its stride divides the grid
    n: its ``padding_mode`` then changes nothing (a 1 x 1 conv with torch's default ``padding_mode="zeros"`` is the
    circular 1 x 1 conv; a wider kernel without padding is refused by :func:`padding_problem` as fewer outputs)."""
    strides = stride_hw(getattr(layer, "stride", 1))
    return total_padding(layer) == (0, 0) and all(side % s == 0 for side, s in zip(grid_hw(n), strides))


def axis_padding(layer: nn.Module) -> tuple[int, int]:
    """The padding of each side along (height, width), the same on both ends of an axis (a 3 x 1 kernel with
    padding (1, 0) gives (1, 0)); raises ``UnsupportedShape`` when an axis is padded unevenly (``"same"`` with an
    even kernel span: torch pads one more pixel at the end)."""
    th, tw = total_padding(layer)
    if th % 2 or tw % 2:
        raise UnsupportedShape(f"padding {getattr(layer, 'padding', 0)!r} pads the two ends of an axis unevenly "
                               f"(totals {th}, {tw}); this route pads each axis evenly")
    return th // 2, tw // 2


def check_circular_mode(layer: nn.Module, n: Grid, method: str, hint: str = "") -> None:
    """The exact methods model circular padding: ``UnsupportedShape`` for another mode, unless the layer pads nothing
    on a grid its stride divides (:func:`mode_is_moot`)."""
    mode = getattr(layer, "padding_mode", "zeros")
    if mode != "circular" and not mode_is_moot(layer, n):
        raise UnsupportedShape(f"{method}: exact for circular padding only; this layer uses {mode!r} padding{hint}")


def padding_problem(layer: nn.Module, *, exact: bool) -> str | None:
    """Why svbench's circular model of this conv (nn.Conv2d, or a TT conv) is not its operator, or None. The model
    is the circular conv on the n x n grid with n / s outputs a side (zero padding: the circular conv on n' that
    contains it). Along each side, with span d (k - 1) + 1, stride s and total padding P:

    - circular, ``exact`` (all SVs): span - s <= P < span (then the layer's n / s outputs are the model's rows, up to
      a shift; e.g. P = 2 (k // 2) for odd k). Less padding gives fewer outputs (a part of the model's rows);
    - circular, a bound (``exact=False``), or zero padding: P < span (at most the model's rows: sigma_max is at most
      the model's). More padding gives more outputs than the model has (repeated rows, or rows the n' model cannot
      hold): sigma_max can exceed the model's.
    """
    if not all(hasattr(layer, a) for a in ("kernel_size", "dilation", "padding", "stride", "padding_mode")):
        return None  # no padding of its own to check (e.g. a Cayley layer: circular by construction)
    mode_problem = padding_mode_problem(layer)
    if mode_problem:
        return mode_problem
    for span, total, stride in zip(kernel_spans(layer), total_padding(layer), stride_hw(layer.stride)):
        if total >= span:
            return (f"padding {total / 2:g} a side on a kernel spanning {span} gives more outputs than the circular "
                    "conv on the grid has; svbench models padding up to d (k - 1) / 2 (e.g. k // 2 for odd k)")
        if exact and (layer.padding_mode == "circular" or total_padding(layer) == (0, 0)) and total < span - stride:
            return (f"padding {total / 2:g} a side on a kernel spanning {span} at stride {stride} gives fewer outputs "
                    "than the circular conv on the grid; its SVs are not the exact ones (pad d (k - 1) / 2, e.g. "
                    "k // 2 for odd k, or use a bound method)")
    return None


def control_problem(layer: nn.Module, h: int, w: int, *, clips: bool = False, anisotropic: bool = False
                    ) -> str | None:
    """Why the control steps (clip, rescale, divide) cannot take this conv on an h x w input, or None. They act on
    svbench's circular model of the layer (circular padding: the circular conv on n x n; zero padding: the circular
    conv on n' that contains it, n = max(h, w)), so that model must hold the layer's operator: no reflect /
    replicate padding, no more outputs than the model, one stride and dilation, and for circular padding a grid the
    stride divides along both axes (the circular conv on h x w itself, since session 17; before, a non-square grid
    was left out: the 3 x 3 model of a conv on 2 x 3 had reached sigma_max 1.41 for a target of 1). ``clips``: a
    clip-and-crop step (sedghi, tt) projects the circular model on n itself whatever the padding, so the stride
    must divide n for zero padding too. ``anisotropic``: the control takes a stride and a dilation per axis (sedghi,
    gram, power since session 18); else such a conv is left out."""
    try:
        stride = conv_geometry(layer, anisotropic=anisotropic)[0]
        why = padding_problem(layer, exact=False)
    except UnsupportedShape as e:
        return str(e)
    if why:
        return why
    s1, s2 = stride_hw(stride)
    if getattr(layer, "padding_mode", "zeros") == "circular":
        if h % s1 or w % s2:
            return f"stride {stride_text(stride)} does not divide the {h}x{w} grid (no circular model)"
    elif clips and (max(h, w) % s1 or max(h, w) % s2):
        return (f"stride {stride_text(stride)} does not divide n = {max(h, w)}: the clip projects the circular conv "
                f"on n x n, which has no such stride")
    return None


def control_source(layer: nn.Module) -> str:
    """What a control report's sigma_max is for this layer: the circular model's exact value when it is the layer's
    operator (``circular_exact@n``), a bound when the layer has fewer outputs (``circular_bound@n``: a part of the
    model's rows) or zero padding (``circular_bound@n'``)."""
    if getattr(layer, "padding_mode", "zeros") != "circular":
        return "circular_bound@n'"
    return "circular_exact@n" if padding_problem(layer, exact=True) is None else "circular_bound@n"


def padding_mode_problem(layer: nn.Module) -> str | None:
    """Why a layer's ``padding_mode`` is outside svbench's models (circular, zeros), or None. Reflect and replicate
    padding repeat border pixels: the operator is the conv after a padding map of norm up to 2 (reflect) or
    sqrt(p + 1) per side (replicate), so neither the circular nor the zero-padded values describe it."""
    mode = getattr(layer, "padding_mode", "zeros")
    if mode in ("zeros", "circular"):
        return None
    return (f"{mode!r} padding repeats border pixels; svbench models circular and zero padding only (its sigma_max "
            "is neither's)")


def check_padding(layer: nn.Module, method: str, *, exact: bool) -> None:
    """Raise ``UnsupportedShape`` (one line) when :func:`padding_problem` finds one."""
    why = padding_problem(layer, exact=exact)
    if why:
        raise UnsupportedShape(f"{method}: {why}")


def _square(value: Any, what: str) -> int:
    if isinstance(value, int):
        return value
    if len(set(value)) != 1:
        raise UnsupportedShape(f"non-square {what} {tuple(value)} is not supported")
    return int(value[0])


class Method(abc.ABC):
    """Base class of every method. Subclasses set the ClassVars and implement ``layer_svs``."""

    name: ClassVar[str]
    provides: ClassVar[str]
    supports: ClassVar[Capabilities] = Capabilities()
    Config: ClassVar[type] = NoConfig
    summary: ClassVar[str] = ""
    reference: ClassVar[str] = ""
    trains: ClassVar[bool] = True  # False: an SV-computation baseline only, not run in train tasks
    # True: ``network_svs`` computes convs on rectangular h x w grids (``conv_inputs(rectangular=True)``); else a
    # non-square grid is refused in one line
    rectangular_grids: ClassVar[bool] = False
    # True: ``layer_svs`` and ``network_svs`` take a stride or dilation per axis ((1, 2): the width's only; through
    # ``conv_geometry(anisotropic=True)`` / ``conv_inputs(anisotropic=True)``); else such a conv is refused by name
    anisotropic: ClassVar[bool] = False
    # True: ``network_svs`` takes a circular conv whose stride does not divide its grid (an operator route, not the
    # FFT's); else such a conv is refused by name (``conv_inputs(circular_divides=True)``)
    any_circular_grid: ClassVar[bool] = False

    def __init__(self, config: Any = None) -> None:
        if config is None:
            config = self.Config()
        if not isinstance(config, self.Config):
            raise TypeError(f"{self.name}: config must be a {self.Config.__name__}, got {type(config).__name__}")
        self.config = config

    @classmethod
    def from_options(cls, options: dict[str, Any] | None = None, where: str | None = None) -> Method:
        """Build from a plain mapping (suite file, CLI), with one-line errors on bad keys or values."""
        return cls(from_mapping(cls.Config, options or {}, where or f"method {cls.name!r} config"))

    @property
    def label(self) -> str:
        """Name plus the non-default config entries, e.g. ``tt(rank_fraction=0.5)``."""
        default = to_mapping(self.Config())
        mine = to_mapping(self.config)
        diff = [f"{k}={v}" for k, v in mine.items() if default.get(k) != v]
        return f"{self.name}({', '.join(diff)})" if diff else self.name

    def config_dict(self) -> dict[str, Any]:
        return to_mapping(self.config)

    # ---- the SV task -------------------------------------------------------------------------------------
    def make_layer(
        self, spec: LayerSpec, *, seed: int, dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu"
    ) -> nn.Module:
        """The layer this method implements for ``spec`` (default: a seeded plain conv)."""
        return seeded_conv(spec, seed=seed, dtype=dtype, device=device)

    @abc.abstractmethod
    def layer_svs(self, layer: nn.Module, input_hw: int) -> Tensor:
        """What this method computes for one layer on an ``input_hw`` x ``input_hw`` input, descending 1-D.

        ``all_svs`` / ``orthogonal_layer``: every SV of the implemented operator (zeros included);
        ``upper_bound`` / ``estimate``: a single value for sigma_max; ``none``: an empty tensor.
        """

    def expected_count(self, spec: LayerSpec) -> int:
        if self.provides in ("all_svs", "orthogonal_layer"):
            return spec.num_svs()
        if self.provides in ("upper_bound", "estimate"):
            return 1
        return 0

    def layer_key(self) -> str:
        """Identifies the layer ``make_layer`` builds, so runs on the same layer share one oracle."""
        return "conv"

    def dense_kernel(self, layer: nn.Module) -> Tensor | None:
        """The full (c_out, c_in, k, k) kernel the layer applies, if it is a plain conv operator (else None); for a
        grouped or dilated conv the ungrouped, undilated kernel of the same operator (block diagonal, zeros between
        the taps)."""
        from svbench.functional.grouped import dense_equivalent_kernel

        if not (isinstance(layer, nn.Conv2d) and isinstance(getattr(layer, "weight", None), Tensor)):
            return None
        weight = effective_weight(layer)
        return dense_equivalent_kernel(weight, layer.groups, as_stride(layer.dilation))

    def backend(self, spec: LayerSpec | None = None, device: torch.device | str = "cpu",
                dtype: torch.dtype | None = None) -> str:
        """The numerical route used (recorded with every result); ``auto`` is resolved for ``spec`` on ``device``."""
        return getattr(self.config, "backend", "n/a")

    def network_clip(self, model: nn.Module, input_shape: tuple[int, int, int], target: float
                     ) -> dict[str, Tensor] | None:
        """One spectral-clipping pass over every plain conv whose kernel fits its grid, as new kernels (the model is
        not changed; a kernel wider than its grid folds onto it, and the clipped operator has no kernel of the
        layer's size to crop to, so such convs are left out).

        None when the method has no such projection (only ``sedghi`` and its naive ``reference`` do).
        """
        return None

    def network_svs(self, model: nn.Module, input_shape: tuple[int, int, int]) -> dict[str, Tensor]:
        """What this method computes for EVERY conv of a model, each on the circular model of its input grid.

        Default: ``layer_svs`` per conv on a circular-padding view of it (same weight). Methods that can batch
        layers of one shape into one call (``sedghi``, ``tt``) override this.
        """
        out = {}
        for name, layer, n in conv_inputs(model, input_shape, rectangular=self.rectangular_grids,
                                          anisotropic=self.anisotropic,
                                          circular_divides=not self.any_circular_grid):
            out[name] = self.layer_svs(circular_view(layer), n)
        warn_left_out(model, out, f"{self.name} network_svs")
        return out

    def control_target(self) -> float | None:
        """The sigma_max this method's control aims at (None: no control); used for overshoot reports."""
        return None

    # ---- training hooks ---------------------------------------------------------------------------------
    def wrap(self, model: nn.Module) -> nn.Module:
        """Swap or parametrize the model's convs for this method (default: unchanged)."""
        return model

    def after_step(self, model: nn.Module, step: int, *, report: bool = True) -> list[dict[str, Any]]:
        """Control step after ``optimizer.step()`` (clip, rescale, ...); returns one report per layer touched.

        ``report``: also measure each layer's true sigma_max after the step (``sigma_max_after``, ``overshoot``) --
        an exact SV computation the control itself does not need. The training loop passes False, so that its
        control time is the method's own (the suites measure the final sigma separately, ``layer_sigmas``); the
        values are then None."""
        return []

    def penalty(self, model: nn.Module) -> Tensor | None:
        """A loss term added to the training loss (e.g. TT orthogonality), or None."""
        return None


METHODS: Registry[type[Method]] = Registry("method")


def conv_inputs(model: nn.Module, input_shape: tuple[int, int, int], *, rectangular: bool = False,
                anisotropic: bool = False, circular_divides: bool = True) -> list[tuple[str, nn.Module, Grid]]:
    """(name, conv-like module, grid size) for every nn.Conv2d / TT conv / nn.ConvTranspose2d in forward order
    (forward hooks). A transposed conv is given as :func:`adjoint_conv` (same SVs) on its output grid: s n for an
    input of n (the circular model's: n / s outputs of a stride-s conv on s n). A conv with a stride or dilation
    that differs between the axes is refused (``UnsupportedShape``, one line naming it) unless ``anisotropic`` (the
    routes that take one per axis: :attr:`Method.anisotropic`). A conv on a non-square grid is refused too, unless
    ``rectangular`` (the routes that compute h x w grids: every method's ``network_svs`` but ``cayley``'s, and
    ``network_clip``), which gets its grid as (h, w). torch's parametrized convs (spectral_norm, weight_norm) are
    returned (their effective weight is read); a Conv2d subclass with a forward of its own is not (:func:`is_plain`;
    the routes name it as left out). A circular conv whose stride does not divide its grid is refused by name
    (``UnsupportedShape``: its operator there is no circular conv) unless not ``circular_divides`` (the operator
    routes: :attr:`Method.any_circular_grid`)."""
    from svbench.models.probe import probe_inputs

    found = probe_inputs(model, input_shape, lambda name, mod: is_plain(mod) or is_plain(mod, nn.ConvTranspose2d)
                         or hasattr(mod, "k2"))
    out = []
    for name, mod, shape in found:
        n = as_grid((int(shape[-2]), int(shape[-1])))
        if not isinstance(n, int) and not rectangular:  # the width's n x n model is not the layer's operator
            h, w = grid_hw(n)
            raise UnsupportedShape(f"conv {name!r} runs on a {h}x{w} grid; this route computes square n x n grids "
                                   f"only (the {w}x{w} model's SVs are not this layer's); pass a square input_shape")
        try:  # a route that reads stride[0], dilation[0] would take a (1, 2) stride as 1: refused unless anisotropic
            if isinstance(mod, nn.ConvTranspose2d):
                strides = stride_hw(mod.stride) if anisotropic else (_square(mod.stride, "stride"),) * 2
                mod, n = adjoint_conv(mod), as_grid(tuple(side * s for side, s in zip(grid_hw(n), strides)))
            stride = conv_geometry(mod, anisotropic=anisotropic)[0]
        except UnsupportedShape as e:
            raise UnsupportedShape(f"conv {name!r}: {e} (this route takes one stride and one dilation per conv; "
                                   f"the built-in methods but cayley take one per axis)") from None
        # a padded conv whose stride does not divide its grid (inception_v3's stride-2 convs on odd grids): its
        # circular model on the grid rounded up (as `spectrum` does; was: "stride 2 does not divide the input size
        # 7", no conv named); a square grid that becomes h x w stays a route's to refuse (one line, above)
        mode = getattr(mod, "padding_mode", "zeros")
        if mode == "circular" and circular_divides:  # its operator on n is no circular conv when s does not divide n
            try:
                check_circular_geometry(mod.kernel_size[0], n, stride)
            except UserError as e:
                raise UnsupportedShape(f"conv {name!r} (circular padding): {e}") from None
        proxy = proxy_grid(n, stride, mode)
        if proxy != n and (rectangular or isinstance(proxy, int)):
            n = proxy
        out.append((name, mod, n))
    return out


def adjoint_conv(layer: nn.ConvTranspose2d) -> nn.Conv2d:
    """The conv whose adjoint (transpose) the transposed conv ``layer`` is, sharing its weight: torch's
    conv_transpose2d(x, W, s, p) is the input gradient of conv2d(., W, s, p) on the transposed conv's output grid,
    so the two operators have the same singular values (Dumoulin & Visin 2016, sec. 4). The weight layouts agree:
    (c_in, c_out / g, k, k) of the transposed conv is (out_channels, in_channels / g, k, k) of this conv. Its padding
    is the transposed conv's (zeros); ``output_padding`` only says which output grid (see :func:`transposed_grid`)."""
    weight = effective_weight(layer)  # read once: a parametrization computes it
    return share_weight(nn.Conv2d(layer.out_channels, layer.in_channels, layer.kernel_size, layer.stride,
                                  layer.padding, layer.dilation, layer.groups, bias=False, device="meta",
                                  dtype=weight.dtype), weight)


def transposed_grid(layer: nn.ConvTranspose2d, h: int, w: int) -> tuple[int, int] | None:
    """The (height, width) a transposed conv's forward gives for an h x w input -- (n - 1) s - 2 p + d (k - 1) +
    output_padding + 1 a side -- when :func:`adjoint_conv` on that grid gives back h x w (then it is the exact
    adjoint), else None (an output_padding of s or more, allowed when the dilation exceeds the stride)."""
    out = []
    for size, k, s, p, d, op in zip((h, w), layer.kernel_size, layer.stride, layer.padding, layer.dilation,
                                    layer.output_padding):
        m = (size - 1) * s - 2 * p + d * (k - 1) + op + 1
        if m < 1 or (m + 2 * p - d * (k - 1) - 1) // s + 1 != size:
            return None
        out.append(m)
    return out[0], out[1]


def model_padding(span: int | tuple[int, int], stride: Stride) -> int | tuple[int, int] | str:
    """An nn.Conv2d padding whose circular conv is svbench's circular model (n / s outputs a side): d (k - 1) / 2 a
    side, rounded down at stride >= 2; ``"same"`` where a span is even at stride 1 (torch pads that asymmetrically).
    ``span``: one int (square kernel) or (height, width); ``stride``: one int or one per axis. An even span along an
    axis of stride 1 beside a strided axis has no such padding (torch takes ``"same"`` at stride 1 only):
    ``UnsupportedShape``."""
    spans = (span, span) if isinstance(span, int) else span
    strides = stride_hw(stride)
    if any(s == 1 and sp % 2 == 0 for sp, s in zip(spans, strides)):
        if strides != (1, 1):
            raise UnsupportedShape(f"a kernel spanning {spans[0]}x{spans[1]} at stride {stride_text(stride)}: an "
                                   "even span along an unstrided axis needs padding 'same', which torch takes at "
                                   "stride 1 only")
        return "same"
    pads = tuple((sp - 1) // 2 for sp in spans)
    return pads[0] if isinstance(span, int) else pads


def circular_view(layer: nn.Module) -> nn.Module:
    """The circular model of a plain conv as a layer sharing its weight: circular padding, and a padding that gives
    the grid's n / s outputs (``padding_problem``: d (k - 1) / 2 a side, ``"same"`` for an even span at stride 1).
    A circular conv with such a padding, TT and other layers are returned as they are."""
    if not is_plain(layer):
        return layer
    if layer.padding_mode == "circular" and padding_problem(layer, exact=True) is None:
        return layer
    padding = model_padding(kernel_spans(layer), as_stride(layer.stride))
    weight = effective_weight(layer)  # read once: a parametrization computes it
    return share_weight(nn.Conv2d(layer.in_channels, layer.out_channels, layer.kernel_size, layer.stride, padding,
                                  layer.dilation, layer.groups, bias=False, padding_mode="circular", device="meta",
                                  dtype=weight.dtype), weight)  # meta: nothing allocated, it takes the layer's weight


def kernel_fits(layer: nn.Module, n: Grid) -> bool:
    """Whether the layer's kernel span d (k - 1) + 1 fits the grid n (n x n, or (h, w)) along each axis."""
    return fits_grid(kernel_spans(layer), n)


def kernel_span(conv: nn.Conv2d) -> int:
    """Input pixels one output pixel sees along its longer side: max over the axes of d (k - 1) + 1 (what must fit
    the n x n grid; the height's alone let a 1 x 3 kernel through to a clip on 2 x 2)."""
    return max(kernel_spans(conv))


def warn_left_out(model: nn.Module, done: Iterable[str], what: str) -> None:
    """One warning naming the conv layers of ``model`` a network route left out of its result (``done``: the names
    it covers): 1-D / 3-D convs, transposed or not (not modelled), Conv2d subclasses with a forward of their own,
    grouped or dilated convs where the method takes none, convs whose kernel is wider than their grid (a clip pass),
    convs the forward pass does not run. Without it a
    researcher could read the max over the result as the network's. No forward pass: a name walk only."""
    done = set(done)
    convs = [(name, m) for name, m in model.named_modules() if isinstance(m, nn.modules.conv._ConvNd) or
             (hasattr(m, "k2") and isinstance(getattr(m, "k2", None), Tensor))]
    left = [(name, m) for name, m in convs if name not in done]
    if not left:
        return

    def why(m: nn.Module) -> str:
        parts = [type(m).__name__]
        if getattr(m, "groups", 1) > 1:
            parts.append(f"groups {m.groups}")
        if max(getattr(m, "dilation", (1,))) > 1:
            parts.append(f"dilation {stride_text(m.dilation)}")
        return ", ".join(parts)

    shown = ", ".join(f"{name} ({why(m)})" for name, m in left[:6]) + (", ..." if len(left) > 6 else "")
    warnings.warn(f"{what}: {len(left)} of {len(convs)} conv layers left out of the result: {shown}; not modelled "
                  f"here (1-D / 3-D convs, a Conv2d subclass with a forward of its own, groups or dilation the "
                  f"method does not take, a kernel wider than its grid in a clip pass, or not run by the forward "
                  f"pass)", stacklevel=3)


def plain_convs(model: nn.Module, input_shape: tuple[int, int, int], *, rectangular: bool = False,
                anisotropic: bool = False) -> list[tuple[str, nn.Conv2d, Grid]]:
    """(name, conv, input size) of every plain ``nn.Conv2d`` (grouped and dilated ones included) whose kernel span
    d (k - 1) + 1 fits its input grid along each axis (``rectangular``, ``anisotropic``: as :func:`conv_inputs`)."""
    return [(name, m, n) for name, m, n in conv_inputs(model, input_shape, rectangular=rectangular,
                                                       anisotropic=anisotropic)
            if isinstance(m, nn.Conv2d) and kernel_fits(m, n)]
