"""Typed evaluation records: a round trip keeps every key, a missing key fails once with the
record's name, and the seed-set summaries are the tables' (mean, t-interval, seed values)."""

from __future__ import annotations

import pytest

from leap.errors import LeapError
from leap.workflow.records import LatencyRun, PairEval, SeedSet, record_type, write_record

SPLIT = {
    "n_pairs": 3,
    "spearman_exit": 0.5,
    "spearman_full": 0.6,
    "exit_rate": 0.4,
    "expected_exit_layer": 5.0,
    "layer_reduction": 1.2,
    "encode_seconds": 0.1,  # a key the type does not name: kept in extra
    "frontier": {
        "truncation": [{"rule": "truncation", "setting": 1, "exit_rate": 1.0, "mean_exit_layer": 1.0,
                        "layer_reduction": 6.0, "quality": 0.3}],
        "at_config": {"rule": "convergence", "setting": 0.9, "exit_rate": 0.4, "mean_exit_layer": 5.0,
                      "layer_reduction": 1.2, "quality": 0.5, "exit_advantage": 0.01, "mixing": -0.02},
        "sweep": [],
    },
}  # fmt: skip


def test_a_pair_evaluation_round_trips_every_key():
    d = {"exit": {"theta": 0.9}, "num_layers": 6, "layer_maps": False, "splits": {"test": SPLIT}}
    rec = PairEval.from_dict(d)
    assert rec.to_dict() == d
    split = rec.split("test")
    assert split.spearman_exit == 0.5 and split.extra == {"encode_seconds": 0.1}
    assert split.frontier.at_config.exit_advantage == 0.01 and split.frontier.at_config.extra == {"mixing": -0.02}
    assert split.frontier.truncation[0].frontier_point().layer_reduction == 6.0
    assert record_type("stsb") is PairEval and record_type("beir_nfcorpus").__name__ == "RetrievalEval"


def test_a_writer_that_renames_a_key_fails_when_it_writes(tmp_path):
    """A renamed key breaks once, in the job that writes it (write_record), naming the key;
    reading stays lenient (a missing field reads as None) so partial records still load."""
    broken = {k: v for k, v in SPLIT.items() if k != "spearman_exit"} | {"spearman_exited": 0.5}
    d = {"exit": {}, "num_layers": 6, "splits": {"test": broken}}
    with pytest.raises(LeapError, match=r"PairSplit record without \['spearman_exit'\]"):
        write_record(tmp_path / "stsb.json", d)
    assert not (tmp_path / "stsb.json").exists()
    assert PairEval.from_dict(d).split().spearman_exit is None
    with pytest.raises(LeapError, match="LatencyRun record without"):
        write_record(tmp_path / "latency.json", {"device": "cpu"})
    whole = {"exit": {}, "num_layers": 6, "splits": {"test": SPLIT}}
    assert write_record(tmp_path / "stsb.json", whole) == whole and (tmp_path / "stsb.json").exists()


def test_seed_sets_summarise_as_the_tables_do():
    rows = [{"batch_size": 1, "full_ms": 2.0, "exit_ms": 1.0, "speedup": s} for s in (1.5, 1.7, 1.6)]
    runs = SeedSet([LatencyRun.from_dict({"rows": [r]}) for r in rows])
    assert runs.mean(lambda r: r.speedup(1)) == pytest.approx(1.6)
    # mean 1.6, sd 0.1 over 3 seeds: t(0.975, 2) = 4.303, half-width 4.303 * 0.1 / sqrt(3) = 0.248
    assert runs.interval(lambda r: r.speedup(1)) == "1.600 [1.352, 1.848]"
    assert runs.seeds_text(lambda r: r.speedup(1)) == "1.500 / 1.700 / 1.600"
    assert runs.mean(lambda r: r.speedup(32)) is None  # no such batch size: no value, not an error
