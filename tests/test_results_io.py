import json

import pytest

from svbench.errors import UserError
from svbench.results.io import ResultsWriter, load_results
from svbench.results.schema import CORE_FIELDS


def _rec(cell_id, value):
    """A minimal record with every core field."""
    return dict({f: "x" for f in CORE_FIELDS}, schema_version=1, cell_id=cell_id, value=value, status="ok",
                metric=None)


def test_partial_last_line_is_skipped_and_trimmed(tmp_path):
    w = ResultsWriter(tmp_path)
    w.append_cell([_rec("a", 1.0), _rec("a", 2.0)])
    with open(tmp_path / "results.jsonl", "a") as f:
        f.write('{"cell_id": "b", "val')  # SIGKILL in the middle of a write
    with pytest.warns(UserWarning, match="partial last line"):
        recs = load_results(tmp_path)
    assert [r["cell_id"] for r in recs] == ["a", "a"]
    w2 = ResultsWriter(tmp_path)  # trims the partial line before appending
    w2.append_cell([_rec("c", float("nan"))])
    recs = load_results(tmp_path)
    assert [r["cell_id"] for r in recs] == ["a", "a", "c"]
    assert recs[-1]["value"] is None  # non-finite numbers are stored as null, never as NaN strings
    for line in (tmp_path / "results.jsonl").read_text().splitlines():
        json.loads(line)


def test_corrupt_middle_line_is_an_error(tmp_path):
    good = json.dumps(_rec("a", 1.0))
    (tmp_path / "results.jsonl").write_text(f"{good}\nGARBAGE\n{good}\n")
    with pytest.raises(UserError, match="corrupt"):
        load_results(tmp_path)


def test_missing_results(tmp_path):
    with pytest.raises(UserError, match="no results found"):
        load_results(tmp_path / "nothing")
