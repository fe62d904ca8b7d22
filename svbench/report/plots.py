"""Plots generated from records only (matplotlib, Agg backend, returned as PNG bytes for inline HTML)."""

from __future__ import annotations

import io
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def time_vs_channels(sv: pd.DataFrame) -> bytes | None:
    """SV time against channels (log-log), one line per method, square stride-1 circular shapes."""
    if sv.empty:
        return None
    df = sv[(sv["status"] == "ok") & sv["time_ms"].notna() & (sv["provides"] != "none")].copy()
    parts = df["shape"].str.extract(r"(\d+)->(\d+) k(\d+) n(\d+) s(\d+) (\w+)")
    df["c_in"], df["c_out"], df["n"], df["s"] = (pd.to_numeric(parts[i]) for i in (0, 1, 3, 4))
    df = df[(df["c_in"] == df["c_out"]) & (df["s"] == 1)]
    if df.empty:
        return None
    ns = sorted(df["n"].unique())[:4]
    methods = sorted(df["method"].unique())
    colors = {m: plt.cm.tab20(i % 20) for i, m in enumerate(methods)}
    fig, axes = plt.subplots(1, len(ns), figsize=(4.2 * len(ns), 3.8), squeeze=False, sharey=True)
    for ax, n in zip(axes[0], ns):
        for method, g in df[df["n"] == n].groupby("method"):
            g = g.groupby("c_in")["time_ms"].mean().sort_index()
            ax.plot(g.index, g.values, marker="o", ms=3, color=colors[method], label=method)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(f"n = {n}", fontsize=9)
        ax.set_xlabel("channels c")
        ax.grid(True, which="both", alpha=0.3)
    axes[0][0].set_ylabel("SV time per layer (ms)")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=7, loc="lower center", ncol=min(4, len(labels)), bbox_to_anchor=(0.5, -0.12))
    return _png(fig)


def error_vs_time(sv: pd.DataFrame) -> bytes | None:
    """Pareto view: max error (or |sigma_max rel. err| for bounds/estimates) against time."""
    if sv.empty:
        return None
    df = sv[(sv["status"] == "ok") & sv["time_ms"].notna()].copy()
    err = df["max_abs_err_rel"].where(df["max_abs_err_rel"].notna(), df["sigma_max_rel_err"].abs())
    df["err"] = err
    df = df[df["err"].notna()]
    if df.empty:
        return None
    fig, ax = plt.subplots(figsize=(6, 4))
    for method, g in df.groupby("method"):
        ax.scatter(g["time_ms"], g["err"].clip(lower=1e-17), label=method, s=14)
    pts = df.sort_values("time_ms")
    front, best = [], np.inf
    for t, e in zip(pts["time_ms"], pts["err"]):
        if e < best:
            best = e
            front.append((t, max(e, 1e-17)))
    if front:
        ax.step(*zip(*front), where="post", color="k", lw=0.8, label="Pareto front")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("time (ms)")
    ax.set_ylabel("error / sigma_max")
    ax.legend(fontsize=6)
    ax.grid(True, which="both", alpha=0.3)
    return _png(fig)


def robust_vs_clean(train: pd.DataFrame) -> bytes | None:
    if train.empty:
        return None
    rob = [c for c in train.columns if c.startswith("robust_accuracy@")]
    if not rob:
        return None
    fig, ax = plt.subplots(figsize=(5, 4))
    for _, r in train.iterrows():
        ax.scatter(100 * r["test_accuracy"], 100 * r[rob[0]], s=20)
        ax.annotate(r["method"], (100 * r["test_accuracy"], 100 * r[rob[0]]), fontsize=6)
    ax.set_xlabel("clean accuracy (%)")
    ax.set_ylabel(f"robust accuracy (%) [{rob[0].split('@')[1]}]")
    ax.grid(True, alpha=0.3)
    return _png(fig)


def overshoot_per_layer(records: list[dict[str, Any]]) -> bytes | None:
    rows = [r for r in records if r.get("metric") == "layer_sigma_max" and r.get("status") == "ok"]
    if not rows:
        return None
    df = pd.DataFrame([{"method": r["method_label"], "layer": r["extra"]["layer"],
                        "sigma": r["value"], "target": (r["extra"] or {}).get("overshoot")} for r in rows])
    df = df.groupby(["method", "layer"], sort=False)["sigma"].mean().unstack("layer")
    fig, ax = plt.subplots(figsize=(7, 4))
    df.plot.bar(ax=ax)
    ax.set_ylabel("guaranteed sigma_max after training")
    ax.axhline(1.0, color="k", lw=0.7, ls="--")
    ax.legend(fontsize=6, title="layer")
    plt.setp(ax.get_xticklabels(), rotation=30, ha="right", fontsize=7)
    return _png(fig)


SPECTRUM_POINTS = 2000  # per layer: a layer's sorted SVs are drawn at up to this many evenly spaced ranks
SPECTRUM_FLOOR = 1e-12  # zero SVs are drawn at this fraction of the largest sigma of the plot (log axis)


def _floor(top: float) -> float:
    """Where zero SVs are drawn on a log axis: ``SPECTRUM_FLOOR`` times the largest sigma of the plot."""
    return SPECTRUM_FLOOR * top if top > 0 else SPECTRUM_FLOOR


def _layer_ticks(ax: Any, names: list[str]) -> None:
    """One tick per layer, its name slanted (smaller for long networks)."""
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names, rotation=60, ha="right", fontsize=7 if len(names) <= 30 else 5)


def spectrum_ranks(count: int, points: int = SPECTRUM_POINTS) -> np.ndarray:
    """The ranks of a layer's ``count`` sorted SVs that its curve draws: all of them up to ``points``, else ``points``
    evenly spaced ones, always the first (sigma_max) and the last (sigma_min)."""
    return np.unique(np.linspace(0, count - 1, min(count, points)).round().astype(int))


def spectrum_per_layer(layers: list[tuple[str, np.ndarray, float | None]], title: str = "") -> bytes | None:
    """Two panels from ``(name, SVs sorted descending, guaranteed zero-padding bound or None)`` per layer, in
    network order: each layer's sorted SVs against their relative rank (log sigma; every SV of a layer with up to
    ``SPECTRUM_POINTS`` of them, else evenly spaced ranks including the first and the last), and sigma_max, median and
    sigma_min per layer with the bound. Zero SVs sit at ``SPECTRUM_FLOOR`` times the largest sigma, as the
    caption says."""
    layers = [(name, np.asarray(svs, dtype=float), bound) for name, svs, bound in layers if len(svs)]
    if not layers:
        return None
    floor = _floor(max(float(svs[0]) for _, svs, _ in layers))
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2), gridspec_kw={"width_ratios": [1, 1.25]})
    cmap = plt.cm.viridis
    for i, (name, svs, _) in enumerate(layers):
        idx = spectrum_ranks(len(svs))
        rank = idx / max(len(svs) - 1, 1)
        left.plot(rank, np.maximum(svs[idx], floor), lw=1, color=cmap(i / max(len(layers) - 1, 1)),
                  label=name if len(layers) <= 12 else None)
    left.set_yscale("log")
    left.set_xlabel("relative rank of the SV in its layer (0 = sigma_max)")
    left.set_ylabel("sigma")
    left.grid(True, which="both", alpha=0.3)
    if len(layers) <= 12:
        left.legend(fontsize=6)
    else:
        left.set_title(f"{len(layers)} layers, colour = depth (first dark, last light)", fontsize=8)
    x = np.arange(len(layers))
    right.plot(x, [float(s[0]) for _, s, _ in layers], "o-", ms=3, label="sigma_max")
    right.plot(x, [max(float(np.median(s)), floor) for _, s, _ in layers], "s-", ms=3, label="median sigma")
    right.plot(x, [max(float(s[-1]), floor) for _, s, _ in layers], "v-", ms=3, label="sigma_min")
    bx = [i for i, (_, _, b) in enumerate(layers) if b is not None]
    if bx:
        right.plot(bx, [layers[i][2] for i in bx], "x", color="k", label="sigma_max bound (zero padding)")
    right.set_yscale("log")
    _layer_ticks(right, [name for name, _, _ in layers])
    right.grid(True, which="both", alpha=0.3)
    right.legend(fontsize=7)
    fig.suptitle((title + "\n" if title else "") + f"zero SVs drawn at {SPECTRUM_FLOOR:g} x the largest sigma",
                 fontsize=9)
    return _png(fig)


def network_speedups(nt: pd.DataFrame) -> bytes | None:
    """Network tasks: each method's speed-up over ``reference`` of the same run (log scale), per model; a second panel
    for the clipping pass where one was timed. Bars only where the ratio exists (methods with a reference beside)."""
    if nt.empty or "speedup_vs_reference" not in nt:
        return None
    df = nt[(nt["method"] != "reference") & nt["speedup_vs_reference"].notna()].copy()
    if df.empty:
        return None
    several = df["task"].nunique() > 1
    df["where"] = [f"{m} [{t}]" if several else str(m) for t, m in zip(df["task"], df["model"])]
    panels = [("speedup_vs_reference", "all SVs / bound / estimate")]
    if df["clip_speedup_vs_reference"].notna().any():
        panels.append(("clip_speedup_vs_reference", "clipping pass"))
    wheres = list(dict.fromkeys(df["where"]))
    methods = list(dict.fromkeys(df["method"]))
    colors = {m: plt.cm.tab10(i % 10) for i, m in enumerate(methods)}
    size = (5.5 * len(panels), 0.6 + 0.45 * len(wheres) * len(methods) ** 0.5)
    fig, axes = plt.subplots(1, len(panels), figsize=size, squeeze=False)
    for ax, (column, title) in zip(axes[0], panels):
        shown = [m for m in methods if df.loc[df["method"] == m, column].notna().any()]
        height = 0.8 / len(shown)
        for j, method in enumerate(shown):
            g = df[df["method"] == method].set_index("where")[column].dropna()
            ax.barh([wheres.index(w) - 0.4 + (j + 0.5) * height for w in g.index], g.values, height=height,
                    color=colors[method], label=method)
        ax.set_xscale("log")
        ax.axvline(1.0, color="k", lw=0.7)
        ax.set_yticks(range(len(wheres)))
        ax.set_yticklabels(wheres, fontsize=8)
        ax.invert_yaxis()
        ax.set_xlabel("x faster than reference (same run)")
        ax.set_title(title, fontsize=9)
        ax.grid(True, axis="x", which="both", alpha=0.3)
    handles = [plt.Rectangle((0, 0), 1, 1, color=colors[m]) for m in methods]
    axes[0][-1].legend(handles, methods, fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5))
    return _png(fig)


def spectrum_comparison(checkpoints: list[tuple[str, list[tuple[str, float, float]]]]) -> bytes:
    """sigma_max (left) and sigma_min (right) per layer, one line per checkpoint, from ``(label, [(layer, sigma_max,
    sigma_min), ...])``; layers matched by name in first-seen order (a gap where a checkpoint lacks one). Log sigma;
    zero sigma_min at ``SPECTRUM_FLOOR`` times the largest sigma."""
    names = list(dict.fromkeys(name for _, layers in checkpoints for name, _, _ in layers))
    floor = _floor(max((smax for _, layers in checkpoints for _, smax, _ in layers), default=1.0))
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2), sharex=True)
    fig.subplots_adjust(wspace=0.3)
    for label, layers in checkpoints:
        values = {name: (smax, smin) for name, smax, smin in layers}
        for ax, k in zip(axes, (0, 1)):
            ys = [max(values[n][k], floor) if n in values else np.nan for n in names]
            ax.plot(range(len(names)), ys, "o-", ms=3, label=label)
    for ax, what in zip(axes, ("sigma_max", "sigma_min")):
        ax.set_yscale("log")
        ax.set_ylabel(what)
        _layer_ticks(ax, names)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle(f"per layer, one line per checkpoint; zero SVs drawn at {SPECTRUM_FLOOR:g} x the largest sigma",
                 fontsize=9)
    return _png(fig)
