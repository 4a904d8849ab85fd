"""benchmarks/compare_runs.py: two runs compared number by number, timings apart from quality."""

from __future__ import annotations

import json
from pathlib import Path

from .benchmark_scripts import load_benchmark


def write_run(root: Path, ms: float, spearman: float, extra: bool = False) -> Path:
    ev = root / "leap/seed0/eval"
    ev.mkdir(parents=True)
    (ev / "stsb.json").write_text(json.dumps({"splits": {"test": {"spearman": spearman, "n_pairs": 1379}}}))
    (ev / "latency.json").write_text(json.dumps({"rows": [{"batch_size": 1, "ms_b1": ms, "ok": True}]}))
    (root / "tables").mkdir()
    (root / "tables/table1_main.csv").write_text(f"Model,STS-B\nleap,{spearman}\n")
    if extra:
        (ev / "qqp.json").write_text(json.dumps({"ap": 0.5}))
    return root


def test_equal_quality_and_different_timings_are_told_apart(tmp_path):
    cr = load_benchmark("compare_runs")
    old = write_run(tmp_path / "old", ms=10.0, spearman=0.8123)
    new = write_run(tmp_path / "new", ms=12.5, spearman=0.8123, extra=True)

    res = cr.compare(old, new)

    assert res["files_compared"] == 3 and res["only_new"] == ["leap/seed0/eval/qqp.json"] and not res["only_old"]
    assert res["keys"]["spearman"] == {"compared": 1, "differ": 0, "max_abs": 0.0, "max_rel": 0.0}
    assert res["keys"]["STS-B"]["differ"] == 0 and res["keys"]["n_pairs"]["differ"] == 0
    assert res["keys"]["ms_b1"]["differ"] == 1 and res["keys"]["ms_b1"]["max_rel"] == 0.25
    assert "ok" not in res["keys"]  # a boolean is not a number
    md = cr.markdown(res, "cmd")
    assert "| `ms_b1` | 1 | 1 | 2.5 | 25.00% |" in md and "5 numbers compared, 4 equal, 1 differ" in md
