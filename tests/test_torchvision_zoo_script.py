"""scripts/torchvision_zoo.py: the coverage table of `spectrum --model torchvision:NAME` (reports/torchvision-zoo)
is produced by this script; one small model through it end to end."""

import csv
import importlib.util
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "torchvision_zoo.py"


def _script():
    spec = importlib.util.spec_from_file_location("torchvision_zoo", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_one_model_row_is_read_from_the_spectrum_it_wrote(tmp_path, capsys):
    zoo = _script()
    assert zoo.main(["--out", str(tmp_path), "--models", "resnet18@32", "--spectra", str(tmp_path / "full")]) == 0
    capsys.readouterr()
    (row,) = list(csv.DictReader(open(tmp_path / "zoo.csv")))
    assert row["model"] == "resnet18@32" and row["input"] == "3x32x32" and row["status"] == "ok"
    assert row["convs"] == "20" and row["grouped"] == "0" and row["proxy grid"] == "0"
    spectrum = (tmp_path / "full" / "resnet18@32" / "spectrum.csv").read_text().splitlines()
    assert int(row["SVs"]) == len(spectrum) - 1  # one CSV row per SV
    assert float(row["certified L"]) > float(row["sigma_max (largest layer)"]) > 0
    assert "| resnet18@32 | 3x32x32 | ok | 20 |" in (tmp_path / "zoo.md").read_text()
    assert {p.name for p in (tmp_path / "resnet18@32").iterdir()} == {"spectrum.md", "lipschitz.md"}  # small files
