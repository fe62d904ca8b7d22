"""Comparison tables generated from records only (never typed by hand)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from svbench.methods.base import LayerSpec
from svbench.results.stats import mean_ci95_halfwidth

SV_COLUMNS = [
    ("sv_time_ms", "time_ms"),
    ("sv_time_ms#iqr", "time_iqr_ms"),
    ("sv_peak_mem_bytes", "peak_mem_bytes"),
    ("sv_peak_mem_vs_transfer", "peak_vs_transfer"),
    ("sigma_max", "sigma_max"),
    ("oracle_sigma_max", "oracle_sigma_max"),
    ("sigma_max_rel_err", "sigma_max_rel_err"),
    ("sv_max_abs_err_rel", "max_abs_err_rel"),
    ("forward_time_ms", "forward_ms"),
    ("speedup_vs_reference_paired", "paired_speedup"),
    ("forward_vs_conv_paired", "forward_vs_conv"),
]


def shape_label(shape: dict[str, Any] | None) -> str:
    if not shape:
        return "-"
    try:
        return LayerSpec(**shape).label
    except (TypeError, ValueError):
        return str(shape)


# What makes two runs' numbers incomparable as one sample: other code, another device, another torch.
RUN_ENVIRONMENT = (("git_sha", "git"), ("device_name", "on"), ("torch_version", "torch"))


def records_frame(records: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per record with a readable ``shape_label``.

    Records of several runs are averaged together only where they share commit, device and torch version. Where
    those differ, each task name gets the differing values (``wrn [git 5be69f4]``), so every row, mean and ratio
    to ``reference`` stays within one of them: averaging a run of one commit with a run of another gave a time
    neither had measured.
    """
    if not records:
        return pd.DataFrame()
    df = pd.DataFrame.from_records(records)
    df["shape_label"] = [shape_label(s) for s in df.get("shape", [None] * len(df))]
    varying = [(f, word) for f, word in RUN_ENVIRONMENT if f in df and df[f].astype(str).nunique() > 1]
    if varying:
        tags = [", ".join(f"{word} {_short_env(row[f], f)}" for f, word in varying) for _, row in df.iterrows()]
        df["task"] = [f"{t} [{tag}]" for t, tag in zip(df["task"], tags)]
    return df


def _short_env(value: Any, field: str) -> str:
    text = str(value)
    if field == "git_sha" and len(text) >= 40:
        return text[:7] + text[40:]  # keeps '+dirty'
    return text


def _ok_values(g: pd.DataFrame, metric: str, field: str = "value") -> pd.Series:
    """Numeric ``field`` of the ok records of ``metric`` in a group (NaN-free)."""
    sub = g[(g["metric"] == metric) & (g["status"] == "ok")]
    return pd.to_numeric(sub[field], errors="coerce").dropna()


def _mean(vals: pd.Series) -> float:
    return float(vals.mean()) if len(vals) else np.nan


def _status(g: pd.DataFrame) -> tuple[str, str]:
    """('ok', '') or the first non-ok record's (status, reason)."""
    bad = g[g["status"] != "ok"]
    if bad.empty:
        return "ok", ""
    return str(bad.iloc[0]["status"]), str(bad.iloc[0].get("reason") or "")


def sv_table(records: list[dict[str, Any]]) -> pd.DataFrame:
    """Rows (task, shape, method variant); numeric columns averaged over seeds; a status/reason column."""
    df = records_frame([r for r in records if r.get("task_kind") == "sv"])
    if df.empty:
        return pd.DataFrame()
    keys = ["task", "shape_label", "method_label"]
    rows = []
    for (task, shape, label), g in df.groupby(keys, sort=False):
        row: dict[str, Any] = {"task": task, "shape": shape, "method": label}
        first = g.iloc[0]
        row["provides"] = first.get("provides")
        row["backend"] = first.get("backend")
        row["oracle"] = next((o for o in g.get("oracle", []) if isinstance(o, str) and o != "none"), "none")
        for metric, col in SV_COLUMNS:
            if metric.endswith("#iqr"):
                row[col] = _mean(_ok_values(g, metric[:-4], "iqr"))
            else:
                row[col] = _mean(_ok_values(g, metric))
        row["status"], row["reason"] = _status(g)
        row["seeds"] = int(g["seed"].nunique())
        rows.append(row)
    out = pd.DataFrame(rows)
    ref = out[out["method"] == "reference"].set_index(["task", "shape"])["time_ms"]
    out["speedup_vs_reference"] = [
        ref.get((t, sh), np.nan) / tm if np.isfinite(tm) and tm > 0 and prov != "none" else np.nan
        for t, sh, tm, prov in zip(out["task"], out["shape"], out["time_ms"], out["provides"])
    ]
    return out


def _fmt(x: Any, kind: str) -> str:
    if x is None or (isinstance(x, float) and not np.isfinite(x)):
        return "—"
    if kind == "mem":
        return f"{x / 2**20:.2f}"
    if kind == "err":
        return f"{x:+.1e}" if x != 0 else "0"
    if kind == "abs":
        return f"{x:.1e}"
    if kind == "ms":
        return f"{x:.3g}"
    return f"{x:.5g}"


def _forward_txt(r: Any) -> str:
    """Forward ms, with the paired ratio over the plain conv when it was measured."""
    txt = _fmt(r["forward_ms"], "ms")
    ratio = r.get("forward_vs_conv")
    if isinstance(ratio, float) and np.isfinite(ratio):
        txt += f" ({ratio:.2f}× conv)"
    return txt


def sv_markdown(table: pd.DataFrame) -> str:
    """Markdown rendering of :func:`sv_table` (skipped cells say why)."""
    if table.empty:
        return "_no SV results_\n"
    out = []
    for task, tg in table.groupby("task", sort=False):
        out.append(f"### SV task `{task}`\n")
        header = (
            "| shape | method | provides | backend | time ms (IQR) ↓ | × vs reference ↑ | peak MiB ↓ | sigma_max "
            "| rel. err sigma_max | max abs err / sigma_max ↓ | forward ms ↓ | oracle |"
        )
        out += [header, "|" + "---|" * 12]
        for _, r in tg.iterrows():
            if r["status"] != "ok":
                out.append(
                    f"| {r['shape']} | {r['method']} | {r['provides']} | {r['backend']} | {r['status']}: "
                    f"{r['reason']} | | | | | | | |"
                )
                continue
            t = f"{_fmt(r['time_ms'], 'ms')} ({_fmt(r['time_iqr_ms'], 'ms')})"
            sp = r.get("speedup_vs_reference")
            sp_txt = f"{sp:.2f}" if isinstance(sp, float) and np.isfinite(sp) else "—"
            paired = r.get("paired_speedup")
            if isinstance(paired, float) and np.isfinite(paired):
                sp_txt += f" (paired {paired:.2f})"
            out.append(
                f"| {r['shape']} | {r['method']} | {r['provides']} | {r['backend']} | {t} | {sp_txt} | "
                f"{_fmt(r['peak_mem_bytes'], 'mem')} | {_fmt(r['sigma_max'], 'num')} | "
                f"{_fmt(r['sigma_max_rel_err'], 'err')} | {_fmt(r['max_abs_err_rel'], 'abs')} | "
                f"{_forward_txt(r)} | {r['oracle']} |"
            )
        out.append("")
    return "\n".join(out) + "\n"


TRAIN_COLUMNS = [
    "test_accuracy", "ece", "nll", "lipschitz_bound", "sigma_max_after", "overshoot_max", "train_time_s",
    "control_time_s", "val_accuracy_best",
]


def _eps_value(metric: str) -> float:
    text = metric.split("@", 1)[1]
    num, _, den = text.partition("/")
    try:
        return float(num) / float(den or 1)
    except ValueError:
        return float("inf")


def train_table(records: list[dict[str, Any]]) -> pd.DataFrame:
    """Rows (task, model@dataset, method variant); metrics averaged over seeds (with the seed count)."""
    df = records_frame([r for r in records if r.get("task_kind") == "train"])
    if df.empty:
        return pd.DataFrame()
    cert = sorted({m for m in df["metric"].dropna() if str(m).startswith("certified_accuracy@")}, key=_eps_value)
    prefixes = ("robust_accuracy", "clean_accuracy_subset@")
    robust = sorted({m for m in df["metric"].dropna() if str(m).startswith(prefixes)})
    rows = []
    for (task, cell_what, label), g in df.groupby(
        ["task", df["cell_id"].str.split("|").str[1], "method_label"], sort=False
    ):
        row: dict[str, Any] = {"task": task, "setting": cell_what, "method": label}
        for metric in TRAIN_COLUMNS + robust + cert:
            vals = _ok_values(g, metric)
            row[metric] = _mean(vals)
            if (metric == "test_accuracy" or metric.startswith("robust_accuracy")) and len(vals) > 1:
                row[metric + "_ci95"] = mean_ci95_halfwidth(np.asarray(vals, dtype=float))
        row.update(_certificate_summary(g))
        row["status"], row["reason"] = _status(g)
        row["seeds"] = int(g["seed"].nunique())
        rows.append(row)
    return pd.DataFrame(rows)


def _certificate_summary(g: pd.DataFrame) -> dict[str, Any]:
    """Sums and minimum over seeds and attacks of the ``certificate_violations@...`` records of one row."""
    sub = g[g["metric"].astype(str).str.startswith("certificate_violations@") & (g["status"] == "ok")]
    if sub.empty:
        return {}
    extras = [e for e in sub.get("extra", []) if isinstance(e, dict)]
    ratios = [e["min_ratio"] for e in extras if isinstance(e.get("min_ratio"), (int, float))]
    return {"certificate_violations": int(pd.to_numeric(sub["value"], errors="coerce").fillna(0).sum()),
            "certificate_checked": int(sum(e.get("checked", 0) for e in extras)),
            "certificate_min_ratio": min(ratios) if ratios else np.nan}


def certificate_markdown(tg: pd.DataFrame) -> str:
    """One line under a train table: the certificates checked against the attacks on the same points."""
    if "certificate_checked" not in tg or tg["certificate_checked"].isna().all():
        return ""
    bad = tg[tg["certificate_violations"].fillna(0) > 0]
    parts = [f"{r['method']} {r['certificate_min_ratio']:.3g}" for _, r in tg.iterrows()
             if np.isfinite(r.get("certificate_min_ratio", np.nan))]
    if len(bad):
        head = ("**Certificate violated**: "
                + ", ".join(f"{r['method']} ({int(r['certificate_violations'])})" for _, r in bad.iterrows())
                + " -- successful attacks inside the certified radius; the Lipschitz bound is not a bound (a bug)")
    else:
        checked = int(tg["certificate_checked"].fillna(0).sum())
        head = f"Certificates checked against the attacks: 0 violations in {checked} successful attacks"
    tail = ("; smallest ‖x_adv − x‖₂ / certified radius (≥ 1; how loose the certificate is there): "
            + ", ".join(parts)) if parts else ""
    return head + tail + ".\n"


def train_markdown(table: pd.DataFrame) -> str:
    if table.empty:
        return ""
    cert = [c for c in table.columns if c.startswith("certified_accuracy@")]
    robust = [c for c in table.columns if c.startswith("robust_accuracy") and not c.endswith("_ci95")]
    cols = [("test_accuracy", "clean acc ↑", "pct"), ("ece", "ECE ↓", "pct")]
    cols += [(c, c.replace("robust_accuracy_pgd@", "PGD ").replace("robust_accuracy@", "AA ") + " ↑", "pct")
             for c in robust]
    cols += [("sigma_max_after", "max σ after ↓", "num"), ("overshoot_max", "overshoot ↓", "num"),
             ("lipschitz_bound", "L bound ↓", "num")]
    cols += [(c, "CRA@" + c.split("@")[1] + " ↑", "pct") for c in cert]
    cols += [("train_time_s", "train s", "num"), ("control_time_s", "control s", "num")]
    out = []
    for task, tg in table.groupby("task", sort=False):
        out.append(f"### Train task `{task}` ({tg.iloc[0]['setting']})\n")
        out.append("| method | " + " | ".join(c[1] for c in cols) + " | seeds | status |")
        out.append("|" + "---|" * (len(cols) + 3))
        for _, r in tg.iterrows():
            cells = []
            for key, _, kind in cols:
                v = r.get(key)
                if v is None or (isinstance(v, float) and not np.isfinite(v)):
                    cells.append("—")
                elif kind == "pct":
                    ci = r.get(key + "_ci95")
                    has_ci = isinstance(ci, float) and np.isfinite(ci)
                    cells.append(f"{100 * v:.1f}" + (f" ± {100 * ci:.1f}" if has_ci else ""))
                else:
                    cells.append(f"{v:.4g}")
            status = r["status"] if r["status"] == "ok" else f"{r['status']}: {r['reason']}"
            out.append(f"| {r['method']} | " + " | ".join(cells) + f" | {r['seeds']} | {status} |")
        out.append("")
        cert_line = certificate_markdown(tg)
        if cert_line:
            out.append(cert_line)
    return "\n".join(out) + "\n"


def network_table(records: list[dict[str, Any]]) -> pd.DataFrame:
    df = records_frame([r for r in records if r.get("task_kind") == "network"])
    if df.empty:
        return pd.DataFrame()
    rows = []
    for (task, model, label), g in df.groupby(["task", "model", "method_label"], sort=False):
        row: dict[str, Any] = {"task": task, "model": model, "method": label, "provides": g.iloc[0]["provides"]}
        for metric in ("network_sv_time_ms", "network_peak_mem_bytes", "network_sigma_max", "network_max_err_rel",
                       "network_min_bound_rel_err", "network_max_est_rel_err", "network_clip_time_ms",
                       "network_clip_err_rel"):
            row[metric] = _mean(_ok_values(g, metric))
        t = g[g["metric"] == "network_sv_time_ms"]
        row["n_layers"] = int(t.iloc[0]["extra"]["n_layers"]) if len(t) else 0
        status, reason = _status(g)
        row["status"] = status if status == "ok" else f"{status}: {reason}"
        rows.append(row)
    out = pd.DataFrame(rows)
    out["speedup_vs_reference"] = _speedups(out, "network_sv_time_ms")
    out["clip_speedup_vs_reference"] = _speedups(out, "network_clip_time_ms")
    return out


def _speedups(out: pd.DataFrame, metric: str) -> list[float]:
    """Reference time / method time for the same (task, model) of the same run."""
    ref = out[out["method"] == "reference"].set_index(["task", "model"])[metric]
    return [ref.get((t, m), np.nan) / v if v and np.isfinite(v) else np.nan
            for t, m, v in zip(out["task"], out["model"], out[metric])]


def _bound_or_estimate(row: Any) -> Any:
    """A bound's lowest relative error, or an estimate's highest: the one that says whether it kept its side."""
    bound = row["network_min_bound_rel_err"]
    return bound if bound is not None and np.isfinite(bound) else row["network_max_est_rel_err"]


def network_markdown(table: pd.DataFrame) -> str:
    if table.empty:
        return ""
    out = []
    for task, tg in table.groupby("task", sort=False):
        out.append(f"### Network task `{task}` (all convs, circular model on each layer's grid)\n")
        out.append("| model | method | provides | layers | time ms ↓ | × vs reference ↑ | peak MiB ↓ | max err / σ ↓ "
                   "| σ_max rel. err (bound: min ≥ 0, estimate: max ≤ 0) | clip ms ↓ | clip × vs reference ↑ "
                   "| clip err ↓ | status |")
        out.append("|" + "---|" * 13)
        for _, r in tg.iterrows():
            def f(v: Any, kind: str = "num") -> str:
                if v is None or (isinstance(v, float) and not np.isfinite(v)):
                    return "—"
                return f"{v / 2**20:.1f}" if kind == "mem" else f"{v:.4g}"
            out.append(f"| {r['model']} | {r['method']} | {r['provides']} | {r['n_layers']} | "
                       f"{f(r['network_sv_time_ms'])} | {f(r['speedup_vs_reference'])} | "
                       f"{f(r['network_peak_mem_bytes'], 'mem')} | {f(r['network_max_err_rel'])} | "
                       f"{f(_bound_or_estimate(r))} | {f(r['network_clip_time_ms'])} | "
                       f"{f(r['clip_speedup_vs_reference'])} | {f(r['network_clip_err_rel'])} | {r['status']} |")
        out.append("")
    return "\n".join(out) + "\n"


PROFILE_METRICS = {"sv_profile_busy_ms": "SVs", "network_profile_busy_ms": "SVs",
                   "network_clip_profile_busy_ms": "clipping pass"}


def profile_markdown(records: list[dict[str, Any]], top: int = 5) -> str:
    """One row per profiled call (task option ``profile``): busy vs wall time and the largest operators."""
    rows = [r for r in records if r.get("metric") in PROFILE_METRICS and r.get("status", "ok") == "ok"]
    if not rows:
        return ""
    out = ["### Profiles (one call each under torch.profiler: a breakdown, not a timing)\n",
           "| cell | what | clock | busy ms | wall ms | largest operators (or kernels) by self time (share) |",
           "|" + "---|" * 6]
    for r in rows:
        extra = r.get("extra") or {}
        if r.get("value") is None:
            ops = f"profiler failed: {extra.get('error', '?')}"
        else:
            ops = ", ".join(f"`{o['op'][:60]}` {o['calls']}x ({100 * (o.get('share') or 0):.0f}%)"
                            for o in (extra.get("top") or [])[:top])
        busy = "—" if r.get("value") is None else f"{r['value']:.4g}"
        wall = "—" if extra.get("wall_ms") is None else f"{extra['wall_ms']:.4g}"
        cell = str(r.get("cell_id")).replace("|", " · ")  # a pipe would split the markdown cell
        out.append(f"| {cell} | {PROFILE_METRICS[r['metric']]} | {extra.get('clock', '—')} | {busy} | "
                   f"{wall} | {ops.replace('|', '/')} |")
    return "\n".join(out) + "\n\n"
