"""``svbench report``: markdown, CSV and one self-contained HTML page (PNG images inline) from results files."""

from __future__ import annotations

import base64
import datetime as _dt
import html
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from svbench.errors import UserError
from svbench.report import plots
from svbench.results.io import load_results, results_path
from svbench.results.tables import (
    network_markdown,
    network_table,
    profile_markdown,
    sv_markdown,
    sv_table,
    train_markdown,
    train_table,
)


def load_many(paths: list[str | Path]) -> list[dict[str, Any]]:
    """Records of every input (run folders or results files); an input named twice is read once, and one that
    holds no records is left out with a warning (the report is of the others)."""
    records: list[dict[str, Any]] = []
    seen: set[Path] = set()
    for p in paths:
        path = results_path(p).resolve()
        if path in seen:
            warnings.warn(f"{p}: named more than once; read once", stacklevel=2)
            continue
        seen.add(path)
        got = load_results(path)
        if not got and len(paths) > 1:
            warnings.warn(f"{p}: no records (an empty results file, or a run stopped before its first cell); left "
                          "out of the report", stacklevel=2)
        records += got
    if not records:
        raise UserError(f"no records in {', '.join(map(str, paths))}")
    return records


def _env_summary(records: list[dict[str, Any]]) -> str:
    keys = ["device_name", "torch_version", "cuda_version", "num_threads", "tf32_matmul", "git_sha"]
    seen = {k: sorted({str(r.get(k)) for r in records}) for k in keys}
    return "; ".join(f"{k}: {', '.join(v)}" for k, v in seen.items())


def build_report(paths: list[str | Path], out_dir: str | Path) -> dict[str, Path]:
    records = load_many(paths)
    sv = sv_table(records)
    tr = train_table(records)
    md = ["# svbench report\n", f"Runs: {', '.join(sorted({r['run_id'] for r in records}))}  ",
          f"Suites: {', '.join(sorted({r['suite'] for r in records}))}  ",
          f"Environment: {_env_summary(records)}  ",
          f"Generated {_dt.datetime.now(_dt.UTC).isoformat(timespec='seconds')} from results files only. "
          "↑ higher is better, ↓ lower is better; values are means over seeds (± 95% CI, Student's t, when there are "
          "several).\n"]
    if not sv.empty:
        md.append(sv_markdown(sv))
    if not tr.empty:
        md.append(train_markdown(tr))
    nt = network_table(records)
    if not nt.empty:
        md.append(network_markdown(nt))
    if profiles := profile_markdown(records):
        md.append(profiles)
    figures = {
        "time_vs_channels": plots.time_vs_channels(sv),
        "error_vs_time": plots.error_vs_time(sv),
        "robust_vs_clean": plots.robust_vs_clean(tr),
        "overshoot_per_layer": plots.overshoot_per_layer(records),
        "network_speedups": plots.network_speedups(nt),
    }
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
        paths_out = {"markdown": out / "report.md", "csv": out / "report.csv", "html": out / "report.html"}
        paths_out["markdown"].write_text("\n".join(md))
        parts = [sv.assign(kind="sv"), tr.assign(kind="train"), nt.assign(kind="network")]
        pd.concat([p for p in parts if not p.empty], ignore_index=True).to_csv(paths_out["csv"], index=False)
        paths_out["html"].write_text(_html("\n".join(md), sv, tr, figures))
        for name, png in figures.items():
            if png:
                (out / f"{name}.png").write_bytes(png)
    except OSError as e:
        raise UserError(f"cannot write the report into {out}: {e.strerror}; choose another folder with --out") from None
    return paths_out


def _table_html(df: pd.DataFrame) -> str:
    if df.empty:
        return ""
    shown = df.copy()
    for c in shown.columns:
        if shown[c].dtype.kind == "f":
            shown[c] = shown[c].map(lambda v: "—" if not np.isfinite(v) else f"{v:.4g}")
    return shown.to_html(index=False, escape=True, border=0, classes="t")


def _html(md: str, sv: pd.DataFrame, tr: pd.DataFrame, figures: dict[str, bytes | None]) -> str:
    imgs = "".join(
        f'<figure><img alt="{k}" src="data:image/png;base64,{base64.b64encode(v).decode()}"/>'
        f"<figcaption>{html.escape(k.replace('_', ' '))}</figcaption></figure>"
        for k, v in figures.items() if v
    )
    head = html.escape(md.split("\n### ")[0]).replace("\n", "<br/>")
    style = ("body{font-family:sans-serif;margin:2em;max-width:1400px}table.t{border-collapse:collapse;font-size:12px}"
             "table.t td,table.t th{border:1px solid #ccc;padding:2px 6px}figure{display:inline-block;margin:8px}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>svbench report</title><style>{style}</style>"
            f"</head><body><div>{head}</div><h2>SV task</h2>{_table_html(sv)}<h2>Train task</h2>{_table_html(tr)}"
            f"<h2>Plots</h2>{imgs}</body></html>")
