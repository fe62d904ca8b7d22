"""``power``: power iteration on the layer's real operator, and Gouk-style division.

Gouk, Frank, Pfahringer & Cree, Machine Learning 110 (2021), arXiv:1804.04368; persistent vector as in Miyato et
al., ICLR 2018 (arXiv:1802.05957).

- ``layer_svs``: an ESTIMATE of sigma_1 of the implemented operator (zero or circular padding, any stride,
  dilation): ``iters`` steps of v = T^*(T u) from the persistent vector of this layer and input size (a seeded
  random start the first time). It is a Rayleigh quotient, so it never exceeds sigma_1 and is NOT a certificate.
- Control: every ``every`` steps, one iteration per layer from its persistent vector, then
  w <- w / max(1, sigma_hat / target) for convs; linear layers by matrix power iteration; eval-mode BN by
  gamma <- gamma / max(1, max_c(|gamma_c| / sqrt(running_var_c + eps)) / target_bn) with the layer's own eps.
  Because sigma_hat <= sigma_1, the true sigma_1 can still exceed the target: each report holds the true value
  (exact for circular padding, the n' bound for zero padding).
- ``operator="reshaped"``: Miyato's norm of W as a c_out x (c_in k^2) matrix, offered only as a LABELLED
  baseline; for stride 1 it satisfies ||W_mat|| <= sigma_1 <= k ||W_mat||, so normalising by it can leave a layer
  up to k x over the target.

Presets are the constants of the TT paper's runs (methods.md section 6).
"""

from __future__ import annotations

import time
import weakref
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor, nn

from svbench.errors import UnsupportedShape
from svbench.functional.grouped import dense_equivalent_kernel, layer_sigma_max
from svbench.functional.power import conv_power_iteration, matrix_power_iteration
from svbench.functional.spectrum import matrix_spectral_norm
from svbench.functional.transfer import Grid, as_grid, grid_hw
from svbench.methods.base import (
    METHODS,
    Capabilities,
    LayerSpec,
    Method,
    axis_padding,
    control_source,
    conv_geometry,
    geometry_of,
    padding_mode_problem,
    sv_weight,
)
from svbench.methods.hooks import InputSizes

# (conv, linear, batchnorm) bounds of the TT paper's runs, all applied every step.
PRESETS: dict[str, tuple[float, float, float]] = {
    "wrn16-10-c10": (7.0, 7.0, 10.0),
    "wrn16-10-c100": (10.0, 3.9, 6.1),
    "vgg19": (1.5, 1.5, 8.0),
}


@dataclass(frozen=True)
class PowerConfig:
    iters: int = 10  # iterations per SV computation (layer_svs)
    train_iters: int = 1  # iterations per control step (persistent vector)
    persistent: bool = True
    operator: Literal["conv", "reshaped"] = "conv"
    preset: Literal["none", "wrn16-10-c10", "wrn16-10-c100", "vgg19"] = "none"
    conv_target: float | None = None
    linear_target: float | None = None
    bn_target: float | None = None
    every: int = 1
    seed: int = 0

    def __post_init__(self) -> None:
        if self.iters < 1 or self.train_iters < 1:
            raise ValueError("iters and train_iters must be >= 1")
        for name in ("conv_target", "linear_target", "bn_target"):
            v = getattr(self, name)
            if v is not None and not v > 0:
                raise ValueError(f"{name} must be > 0, got {v}")
        if self.every < 1:
            raise ValueError(f"every must be >= 1, got {self.every}")

    def targets(self) -> tuple[float | None, float | None, float | None]:
        """(conv, linear, bn) targets: explicit values override the preset's."""
        pc, pl, pb = PRESETS.get(self.preset, (None, None, None))
        return (
            self.conv_target if self.conv_target is not None else pc,
            self.linear_target if self.linear_target is not None else pl,
            self.bn_target if self.bn_target is not None else pb,
        )


@METHODS.register("power")
class PowerMethod(Method):
    name = "power"
    provides = "estimate"
    supports = Capabilities(groups=True, dilation=True)
    Config = PowerConfig
    rectangular_grids = True
    anisotropic = True
    any_circular_grid = True
    summary = "power iteration on the real operator (persistent vector); Gouk division of conv/linear/BN"
    reference = "Gouk, Frank, Pfahringer & Cree, Mach. Learn. 2021 (arXiv:1804.04368); Miyato et al., ICLR 2018"

    def __init__(self, config: PowerConfig | None = None) -> None:
        super().__init__(config)
        self._vectors: weakref.WeakKeyDictionary[nn.Module, dict[int, Tensor]] = weakref.WeakKeyDictionary()
        self._sizes = InputSizes(anisotropic=self.anisotropic)

    def backend(self, spec: LayerSpec | None = None, device: torch.device | str = "cpu",
                dtype: torch.dtype | None = None) -> str:
        return f"power_iteration({self.config.operator}, {self.config.iters} it)"

    def _start(self, module: nn.Module, key: int, shape: tuple[int, ...], like: Tensor) -> Tensor:
        store = self._vectors.setdefault(module, {})
        u = store.get(key) if self.config.persistent else None
        if u is None or u.shape != shape or u.device != like.device or u.dtype != like.dtype:
            gen = torch.Generator().manual_seed(self.config.seed)
            u = torch.randn(shape, generator=gen, dtype=torch.float64).to(like.device, like.dtype)
            u = u / u.norm()
        return u

    def estimate(self, conv: nn.Module, n: Grid, iters: int) -> Tensor:
        """sigma_hat of the conv's real operator on n x n (or an (h, w) grid), updating its persistent vector."""
        stride, padding, groups, dilation = conv_geometry(conv, anisotropic=True)
        w = sv_weight(conv)
        if self.config.operator == "reshaped":  # a grouped conv's matrix is block diagonal over its groups
            mat = dense_equivalent_kernel(w, groups).reshape(w.shape[0], -1)
            u = self._start(conv, -1, (mat.shape[1],), w)
            sigma, u = matrix_power_iteration(mat, u, iters)
            key = -1
        else:
            u = self._start(conv, n, (1, w.shape[1] * groups, *grid_hw(n)), w)
            sigma, u = conv_power_iteration(w, u, stride=stride, padding=axis_padding(conv), padding_mode=padding,
                                            dilation=dilation, iters=iters, groups=groups)
            key = n
        if self.config.persistent:
            self._vectors.setdefault(conv, {})[key] = u
        return sigma

    def layer_svs(self, layer: nn.Module, input_hw: int) -> Tensor:
        why = padding_mode_problem(layer)
        if why:  # the iteration runs zero padding: its quotient would be of another operator
            raise UnsupportedShape(f"power: {why}")
        with torch.no_grad():
            return self.estimate(layer, as_grid(input_hw), self.config.iters).reshape(1)

    def control_target(self) -> float | None:
        return self.config.targets()[0]

    # ---- training hooks ---------------------------------------------------------------------------------
    def wrap(self, model: nn.Module) -> nn.Module:
        self._sizes.attach(model)
        return model

    def after_step(self, model: nn.Module, step: int, *, report: bool = True) -> list[dict[str, Any]]:
        c = self.config
        conv_t, lin_t, bn_t = c.targets()
        if step % c.every or (conv_t is None and lin_t is None and bn_t is None):
            return []
        reports: list[dict[str, Any]] = []
        with torch.no_grad():
            for name, mod in model.named_modules():
                t0 = time.perf_counter()
                if isinstance(mod, nn.Conv2d) and conv_t is not None:
                    n = self._sizes.size_of(mod)
                    if n is None:
                        continue
                    est = float(self.estimate(mod, n, c.train_iters))
                    mod.weight.div_(max(1.0, est / conv_t))
                    (s, g, d), pad = geometry_of(mod), mod.padding_mode
                    true = layer_sigma_max(mod.weight.detach(), n, s, pad, g, d) if report else None
                    reports.append(_report(name, "conv", conv_t, est, true, control_source(mod), t0))
                elif isinstance(mod, nn.Linear) and lin_t is not None:
                    u = self._start(mod, 0, (mod.in_features,), mod.weight)
                    est_t, u = matrix_power_iteration(mod.weight.detach(), u, c.train_iters)
                    self._vectors.setdefault(mod, {})[0] = u
                    est = float(est_t)
                    mod.weight.div_(max(1.0, est / lin_t))
                    true = matrix_spectral_norm(mod.weight) if report else None
                    reports.append(_report(name, "linear", lin_t, est, true, "exact", t0))
                elif isinstance(mod, nn.modules.batchnorm._BatchNorm) and bn_t is not None and mod.affine:
                    lip = float(bn_lipschitz(mod))
                    mod.weight.div_(max(1.0, lip / bn_t))
                    after = float(bn_lipschitz(mod)) if report else None
                    reports.append(_report(name, "batchnorm", bn_t, lip, after, "exact", t0))
        return reports


def bn_lipschitz(bn: nn.modules.batchnorm._BatchNorm) -> Tensor:
    """Eval-mode BN Lipschitz constant max_c |gamma_c| / sqrt(running_var_c + eps), with the layer's own eps."""
    gamma = bn.weight.detach() if bn.weight is not None else torch.ones_like(bn.running_var)
    return (gamma.abs() / torch.sqrt(bn.running_var + bn.eps)).max()


def _report(name: str, kind: str, target: float, est: float, true: float | None, src: str, t0: float
            ) -> dict[str, Any]:
    return {
        "layer": name, "kind": kind, "target": target, "estimate_before": est, "sigma_max_after": true,
        "sigma_source": src, "overshoot": None if true is None else true / target,
        "time_ms": (time.perf_counter() - t0) * 1e3,
    }
