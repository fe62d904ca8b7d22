"""The certified Lipschitz bound of a checkpoint's whole model, for ``svbench spectrum CKPT --model NAME``.

The checkpoint's weights (eval BN statistics included) are loaded into the named architecture and
``metrics.certified.lipschitz_bound`` composes the per-layer guaranteed bounds along the model's graph (residual
sums, concatenations, BN folded into its conv: ``metrics.lipschitz_graph``). The value is a guaranteed upper bound
on the l2 Lipschitz constant of the logits in pixel units, not the constant itself. A checkpoint the plain
architecture cannot hold as it is -- TT or Cayley layers (a model trained with ``tt`` / ``cayley``), a
spectral_norm / weight_norm linear layer (only conv weights are rebuilt from their parts) -- gets no value and a
note saying why; so does a model with an op no rule covers. The SVs are computed either way.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from svbench.checkpoint.load import ConvEntry
from svbench.errors import UserError, first_line


@dataclass
class ModelBound:
    """A model's certified Lipschitz bound (None: not computed, ``note`` says why) and each layer call's factor."""

    model: str
    input_shape: tuple[int, int, int]
    value: float | None
    layers: list[dict[str, Any]] = field(default_factory=list)
    note: str | None = None
    seconds: float | None = None


def load_model(model_name: str, input_shape: tuple[int, int, int], state: dict[str, Tensor],
               convs: list[ConvEntry], module: nn.Module | None = None) -> tuple[nn.Module | None, str | None]:
    """The architecture with the checkpoint's weights (CPU, eval), or (None, why it cannot hold them as they are).
    Conv weights a spectral_norm / weight_norm kept in parts are the eval weights ``find_convs`` rebuilt.
    ``module``: the model the checkpoint pickles, the architecture itself (copied)."""
    from svbench.checkpoint.spectrum import (
        _WEIGHT_PARTS,
        _shared_prefix,
        _without_weight_parts,
        named_model,
        with_versions,
    )

    special = [e.name for e in convs if e.kind != "conv"]
    if special and module is None:  # a pickled model holds its TT / Cayley layers: the bound takes them
        return None, (f"{len(special)} TT / Cayley layer(s) ({', '.join(special[:3])}) that the plain {model_name!r} "
                      "cannot hold (a train task with certify: true records the bound of such a model)")
    model = named_model(model_name, input_shape, state, module)
    why = "its weights do not load"
    for prefix in dict.fromkeys(["", _shared_prefix(state)]):
        cut = len(prefix)
        st = {k[cut:]: v for k, v in state.items() if k.startswith(prefix)}
        parts = {k.split(p, 1)[0] for k in st for p in _WEIGHT_PARTS if p in k}
        rebuilt = {e.name[cut:]: e.kernel for e in convs if e.via is not None}
        if parts - set(rebuilt):
            return None, (f"layer(s) {', '.join(sorted(parts - set(rebuilt))[:3])} keep their weight in "
                          "spectral_norm / weight_norm parts; svbench rebuilds conv weights only")
        st = _without_weight_parts(model, st)
        for name, w in rebuilt.items():
            st[f"{name}.weight"] = w
        try:
            model.load_state_dict(with_versions(model, st), strict=True)
        except (RuntimeError, ValueError) as e:
            why = f"its weights do not load ({first_line(e, 160)})"
            continue
        return model.eval(), None
    return None, why


def model_bound(model: nn.Module | None, model_name: str, input_shape: tuple[int, int, int],
                device: torch.device | str = "cpu", note: str | None = None) -> ModelBound:
    """``lipschitz_bound`` of the loaded model; a refusal (an op or layer no rule covers) becomes the note."""
    import time

    from svbench.metrics.certified import lipschitz_bound

    if model is None:
        return ModelBound(model_name, input_shape, None, note=note)
    t0 = time.perf_counter()
    try:
        value, layers = lipschitz_bound(model.to(device), input_shape, device)
    except UserError as e:
        return ModelBound(model_name, input_shape, None, note=str(e))
    except Exception as e:  # noqa: BLE001 - the SVs are written already; an unforeseen failure is said, not raised
        return ModelBound(model_name, input_shape, None,
                          note=f"failed: {type(e).__name__}: {first_line(e)} (please report it)")
    return ModelBound(model_name, input_shape, value, layers, seconds=time.perf_counter() - t0)


def lipschitz_markdown(bound: ModelBound) -> str:
    shape = "x".join(map(str, bound.input_shape))
    head = [f"Certified l2 Lipschitz bound of {bound.model!r} on {shape} inputs (pixel units), composed from",
            "guaranteed per-layer bounds along the model's graph: residual sums add, concatenations add in squares,",
            "an eval BN or Normalize next to a conv is folded into it (one row). L is the product of the factors",
            "below only for a chain of layers; where branches meet, their bounds add. A bound, not the Lipschitz",
            "constant; the certified l2 radius of a point is margin / (sqrt(2) L).", ""]
    if bound.value is None:
        return "\n".join(head + [f"**Not computed**: {bound.note}"]) + "\n"
    lines = head + [f"**L = {bound.value:.6g}** ({len(bound.layers)} layer calls, {bound.seconds:.1f} s)", "",
                    "| layer | type | factor | source |", "|---|---|---|---|"]
    lines += [f"| {r['layer']} | {r['type']} | {r['bound']:.6g} | {r['source']} |" for r in bound.layers]
    return "\n".join(lines) + "\n"


def write_lipschitz(bound: ModelBound, out: Path) -> Path:
    """lipschitz.md (the bound and every factor) and, when computed, lipschitz.csv (layer, type, bound, source)."""
    md = out / "lipschitz.md"
    md.write_text(lipschitz_markdown(bound))
    if bound.value is not None:
        with open(out / "lipschitz.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["layer", "type", "bound", "source"])
            for r in bound.layers:
                w.writerow([r["layer"], r["type"], repr(r["bound"]), r["source"]])
    return md
