"""`svbench spectrum --model torchvision:NAME` over torchvision's classification architectures: does every one
fit, what its convs are, how long the SVs and the certified bound take. Writes ``OUT/zoo.md`` and ``OUT/zoo.csv``
(one row per model) and each model's ``spectrum.md`` / ``lipschitz.md`` under ``OUT/NAME/``; the full spectrum
folders (CSV of every SV: tens of MB per model) under ``--spectra DIR``, else a temporary folder.

Each model is built without weights (nothing is downloaded) under a fixed seed, its state dict saved and read back
by ``svbench spectrum`` in this process, one thread (pin ``OMP_NUM_THREADS=1`` too). Random weights: the numbers
are the tool's cost and coverage, not the spectra of trained models.

    OMP_NUM_THREADS=1 python scripts/torchvision_zoo.py --out reports/torchvision-zoo
    python scripts/torchvision_zoo.py --out /tmp/zoo --models resnet18 --size 32   # one model
    python scripts/torchvision_zoo.py --out /tmp/zoo --models resnet50@224,vgg11_bn  # NAME@SIDE: its own input
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

# name -> input side: 64 x 64 where the architecture runs on it (the SVs of its first convs on large grids dominate
# the time otherwise); the transformers' fixed or window-partitioned inputs need 224, inception_v3 its 299 (its
# auxiliary classifier's convs run on 17 x 17 features only from there)
MODELS: dict[str, int] = {
    "alexnet": 64, "convnext_tiny": 64, "densenet121": 64, "efficientnet_b0": 64, "efficientnet_v2_s": 64,
    "googlenet": 64, "inception_v3": 299, "maxvit_t": 224, "mnasnet0_5": 64, "mobilenet_v2": 64,
    "mobilenet_v3_small": 64, "regnet_x_400mf": 64, "regnet_y_400mf": 64, "resnet18": 64, "resnet50": 64,
    "resnext50_32x4d": 64, "shufflenet_v2_x0_5": 64, "squeezenet1_0": 64, "swin_t": 64, "swin_v2_t": 64,
    "vgg11_bn": 64, "vit_b_16": 224, "wide_resnet50_2": 64, "resnet50@224": 224,  # one at ImageNet resolution
}
COLUMNS = ["model", "input", "status", "convs", "grouped", "proxy grid", "SVs", "sigma_max (largest layer)",
           "certified L", "seconds", "note"]


def run_one(label: str, side: int, out: Path, tmp: Path, spectra: Path) -> dict[str, object]:
    """One model (``NAME`` or ``NAME@SIDE``) through ``svbench spectrum`` in-process: its row of the table."""
    import torch
    import torchvision

    from svbench.cli.main import main

    name = label.split("@")[0]
    torch.manual_seed(0)
    kwargs = {"init_weights": False} if name in ("inception_v3", "googlenet") else {}
    model = torchvision.models.get_model(name, weights=None, **kwargs)
    path = tmp / f"{label}.pt"
    torch.save(model.state_dict(), path)
    del model
    err = io.StringIO()
    t0 = time.perf_counter()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(["spectrum", str(path), "--model", f"torchvision:{name}", "--input-shape", f"3,{side},{side}",
                     "--out", str(spectra / label)])
    seconds = time.perf_counter() - t0
    row: dict[str, object] = {"model": label, "input": f"3x{side}x{side}", "status": "ok" if code == 0 else
                              f"exit {code}", "seconds": f"{seconds:.1f}", "note": ""}
    lines = [ln for ln in err.getvalue().splitlines() if ln.strip()]
    if code != 0:
        row["note"] = lines[-1] if lines else ""
        return row
    (out / label).mkdir(parents=True, exist_ok=True)
    for kept in ("spectrum.md", "lipschitz.md"):
        if (spectra / label / kept).exists():
            shutil.copyfile(spectra / label / kept, out / label / kept)
    md = (out / label / "spectrum.md").read_text()
    rows = [r for r in md.splitlines() if r.startswith("| ") and not r.startswith("| layer |")]
    cells = [[c.strip() for c in r.strip("|").split("|")] for r in rows]
    row["convs"] = len(cells)
    row["grouped"] = sum(" g=" in c[2] for c in cells)
    row["proxy grid"] = sum("->" in c[3] for c in cells)
    row["SVs"] = sum(int(c[6]) for c in cells)
    row["sigma_max (largest layer)"] = f"{max(float(c[7]) for c in cells):.4g}"
    lip = out / label / "lipschitz.md"
    found = re.search(r"\*\*L = ([^*]+)\*\*", lip.read_text()) if lip.exists() else None
    row["certified L"] = found.group(1) if found else "not computed"
    if not found and lines:  # the warning says why (an op no rule covers: LayerNorm, gating)
        why = re.search(r"no guaranteed Lipschitz bound for (.*?)(?:;|\)\)|$)", lines[-1])
        row["note"] = why.group(1) if why else lines[-1][:120]
    return row


def write_table(rows: list[dict[str, object]], out: Path, threads: int) -> None:
    import torch
    import torchvision

    from svbench.measure.env import device_name

    with open(out / "zoo.csv", "w", newline="") as f:
        w = csv.DictWriter(f, COLUMNS)
        w.writeheader()
        w.writerows([{k: r.get(k, "") for k in COLUMNS} for r in rows])
    lines = [
        "# `svbench spectrum --model torchvision:NAME` over torchvision's architectures",
        "",
        f"Random weights (seed 0, nothing downloaded), all SVs of every conv on its real input grid plus the certified "
        f"Lipschitz bound; CPU ({device_name('cpu')}), {threads} thread(s), torch "
        f"{torch.__version__}, torchvision {torchvision.__version__}. `seconds` is the whole command (model build, "
        f"geometry pass, SVs, bound, files). `grouped`: convs with groups > 1; `proxy grid`: strided convs whose "
        f"stride does not divide their input (circular proxy on the grid rounded up).",
        "",
        "| " + " | ".join(COLUMNS) + " |",
        "|" + "---|" * len(COLUMNS),
    ]
    lines += ["| " + " | ".join(str(r.get(k, "")) for k in COLUMNS) + " |" for r in rows]
    (out / "zoo.md").write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--models", default="all", help="comma-separated torchvision names (default: all listed)")
    parser.add_argument("--size", type=int, default=None, help="input side for every model (default: per model)")
    parser.add_argument("--spectra", default=None, help="folder for the full spectrum outputs (default: temporary)")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    names = list(MODELS) if args.models == "all" else [m.strip() for m in args.models.split(",") if m.strip()]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            side = args.size or (int(name.split("@")[1]) if "@" in name else MODELS.get(name, 64))
            spectra = Path(args.spectra) if args.spectra else Path(tmp) / "spectra"
            rows.append(run_one(name, side, out, Path(tmp), spectra))
            print(" | ".join(str(rows[-1].get(k, "")) for k in COLUMNS), flush=True)
            write_table(rows, out, torch.get_num_threads())
    return 0 if all(r["status"] == "ok" for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
