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


def seeded_run(root: Path, spearmans: list[float], published: float, verdict: str) -> Path:
    for seed, value in enumerate(spearmans):
        ev = root / f"leap/seed{seed}/eval"
        ev.mkdir(parents=True)
        (ev / "stsb.json").write_text(json.dumps({"splits": {"test": {"spearman_exit": value, "encode_seconds": 3.0}}}))
    pub = root / "published/m/eval"
    pub.mkdir(parents=True)
    (pub / "stsb.json").write_text(json.dumps({"splits": {"test": {"spearman_full": published}}}))
    (root / "claims.csv").write_text(f"claim,variant,measured,verdict\nSTS-B,leap,{spearmans[0]},{verdict}\n")
    return root


def test_a_change_of_training_is_told_from_untouched_checkpoints_and_set_against_the_seed_spread(tmp_path):
    """Published checkpoints within the tolerance, trained students beyond it: each trained
    number's seed-mean shift in units of the first run's seed sd; a changed verdict is listed."""
    cr = load_benchmark("compare_runs")
    old = seeded_run(tmp_path / "old", [0.80, 0.82, 0.84], published=0.7, verdict="differs")
    new = seeded_run(tmp_path / "new", [0.81, 0.83, 0.85], published=0.7 + 1e-6, verdict="holds")

    res = cr.compare(old, new, tolerance=1e-5)

    published = res["sources"]["published quality"]
    assert published["compared"] == 1 and published["beyond_tolerance"] == 0 and 0 < published["max_abs"] < 1e-5
    assert res["sources"]["trained quality"]["beyond_tolerance"] == 3
    assert res["sources"]["trained timing"]["compared"] == 3  # encode_seconds is a timing
    (shift,) = res["seed_shifts"]
    assert shift["variant"] == "leap" and shift["key"] == "splits/test/spearman_exit"
    assert abs(shift["shift"] - 0.01) < 1e-12 and abs(shift["z"] - 0.5) < 1e-9  # 0.01 over a seed sd of 0.02
    assert res["verdict_changes"] == [
        {
            "claim": "STS-B",
            "variant": "leap",
            "measured_old": 0.8,
            "measured_new": 0.81,
            "verdict_old": "differs",
            "verdict_new": "holds",
        }
    ]
    md = cr.markdown(res, "cmd")
    assert "| published | quality | 1 | 0 |" in md and "1 (100%) within 1 sd" in md
    assert "| leap | eval/stsb.json | `splits/test/spearman_exit` | +0.0100 | 0.0200 | 0.50 |" in md
    assert "| STS-B | leap | 0.8 -> 0.81 | differs -> holds |" in md
