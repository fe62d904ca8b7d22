"""Robust accuracy: AutoAttack (Croce & Hein, ICML 2020, arXiv:2003.01690) from the ``pyautoattack`` package,
and a foolbox PGD cross-check.

Inputs are pixels in [0, 1]; the model must hold its normalisation inside (AutoAttack clamps to [0, 1], so
normalised inputs would corrupt the attack: the TT paper's L2 numbers suffer from this). eps is in pixel units.
The evaluated subset is the FIRST n_examples of the test set (fixed order); its clean accuracy is recorded.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import Tensor, nn

from svbench.errors import UserError
from svbench.models.normalize import Normalize


@dataclass(frozen=True)
class AttackSpec:
    norm: Literal["Linf", "L2"] = "Linf"
    eps: float = 8 / 255
    n_examples: int = 1000
    version: Literal["standard", "custom"] = "standard"
    attacks: list[str] = field(default_factory=lambda: ["apgd-ce", "apgd-t"])  # version: custom only
    n_iter: int = 100  # custom only
    n_target_classes: int = 9  # custom only
    batch_size: int = 250
    foolbox_check: bool = False  # also run foolbox PGD (50 steps) on the same subset

    def __post_init__(self) -> None:
        if not self.eps > 0:
            raise ValueError(f"eps must be > 0, got {self.eps}")
        if self.n_examples < 1 or self.n_iter < 1 or self.batch_size < 1 or self.n_target_classes < 1:
            raise ValueError("n_examples, n_iter, batch_size and n_target_classes must be >= 1")
        allowed = {"apgd-ce", "apgd-dlr", "apgd-t", "fab", "fab-t", "square"}
        bad = [a for a in self.attacks if a not in allowed]
        if bad:
            raise ValueError(f"unknown attack(s) {bad}; allowed: {sorted(allowed)}")

    def describe(self) -> str:
        if self.version == "standard":
            return f"AutoAttack standard, {self.norm} eps={self.eps:.4g}"
        return (f"AutoAttack custom [{', '.join(self.attacks)}], {self.n_iter} iterations, "
                f"{self.n_target_classes} target classes, {self.norm} eps={self.eps:.4g}")


def assert_pixel_model(model: nn.Module, x: Tensor) -> None:
    """The attack contract: inputs in [0, 1] and a Normalize module inside the model."""
    if x.min() < 0 or x.max() > 1:
        raise UserError("attack inputs must be pixels in [0, 1] (normalisation belongs inside the model)")
    if not any(isinstance(m, Normalize) for m in model.modules()):
        raise UserError("the model has no Normalize layer inside; attacks need [0, 1] inputs with the "
                        "normalisation in the model")


def autoattack_accuracy(model: nn.Module, x: Tensor, y: Tensor, spec: AttackSpec, *, seed: int = 0,
                        device: torch.device | str = "cpu", lipschitz: float | None = None) -> dict[str, Any]:
    """Robust accuracy of the first ``spec.n_examples`` points. With ``lipschitz`` (a certified bound of the same
    model) the result also holds ``certificate``: the attack's successes checked against the certified radii
    (``metrics.certified.certificate_check``)."""
    try:
        from pyautoattack import AutoAttack
    except ImportError:
        raise UserError("robust accuracy needs the 'pyautoattack' package: pip install -e '.[robust]'") from None
    x, y = x[: spec.n_examples].to(device), y[: spec.n_examples].to(device)
    assert_pixel_model(model, x)
    model.eval()
    logging.getLogger("auto-attack").setLevel(logging.WARNING)
    if spec.version == "standard":
        aa = AutoAttack(model, norm=spec.norm, eps=spec.eps, version="standard", seed=seed, device=device)
    else:
        aa = AutoAttack(model, norm=spec.norm, eps=spec.eps, version="custom", attacks=list(spec.attacks),
                        seed=seed, device=device)
        aa.apgd.n_iter = spec.n_iter
        aa.apgd.n_restarts = 1
        aa.apgd_targeted.n_iter = spec.n_iter
        aa.apgd_targeted.n_target_classes = spec.n_target_classes
        aa.fab.n_target_classes = spec.n_target_classes
    aa.verbose = False
    with torch.no_grad():
        logits = model(x)
        clean = float((logits.argmax(1) == y).float().mean())
    x_adv, y_adv = aa.run_standard_evaluation(x, y, batch_size=spec.batch_size)
    delta = (x_adv - x).flatten(1)
    max_pert = float(delta.abs().max() if spec.norm == "Linf" else delta.norm(dim=1).max())
    if max_pert > spec.eps * (1 + 1e-4) + 1e-6:
        raise RuntimeError(f"AutoAttack perturbation {max_pert} exceeds eps {spec.eps}")
    if x_adv.min() < 0 or x_adv.max() > 1:
        raise RuntimeError("AutoAttack produced inputs outside [0, 1]")
    robust = float((y_adv.to(y.device) == y).float().mean())
    out = {"robust_accuracy": robust, "clean_accuracy_subset": clean, "n_examples": int(y.numel()),
           "max_perturbation": max_pert, "attack": spec.describe(), "autoattack_package": _aa_version()}
    if lipschitz is not None:
        from svbench.metrics.certified import certificate_check

        out["certificate"] = certificate_check(logits, y, x, x_adv, y_adv, lipschitz)
    return out


def _aa_version() -> str:
    try:
        from importlib.metadata import version

        return f"pyautoattack {version('pyautoattack')}"
    except Exception:  # noqa: BLE001
        return "pyautoattack (version unknown)"


def foolbox_pgd_accuracy(model: nn.Module, x: Tensor, y: Tensor, spec: AttackSpec,
                         device: torch.device | str = "cpu") -> dict[str, Any]:
    """Cross-check with foolbox's PGD (50 steps); raises UserError if foolbox is unavailable or incompatible."""
    try:
        import foolbox as fb
    except Exception as e:  # noqa: BLE001 - foolbox pulls eagerpy; any import failure is reported
        raise UserError(f"foolbox is not usable here ({type(e).__name__}); pip install foolbox") from None
    x, y = x[: spec.n_examples].to(device), y[: spec.n_examples].to(device)
    assert_pixel_model(model, x)
    model.eval()
    fmodel = fb.PyTorchModel(model, bounds=(0, 1), device=device)
    attack = fb.attacks.LinfPGD(steps=50) if spec.norm == "Linf" else fb.attacks.L2PGD(steps=50)
    _, _, success = attack(fmodel, x, y, epsilons=[spec.eps])
    return {"robust_accuracy_pgd": float(1 - success.float().mean()), "n_examples": int(y.numel())}
