"""Claims versus measured: each verdict rule pinned with the cases that went wrong before
(no exits, a far miss, one benchmark of five, another device) and the paper-layer mapping."""

from __future__ import annotations

import pytest

from leap.workflow.claim_measures import Measured, at_depth, paper_layer_to_student
from leap.workflow.claims import load_claims, verdict

BY_NAME = {c.claim: c for c in load_claims()}
EXIT_CLAIM = BY_NAME["STS-B, LEAP early exit, theta 0.95, 3 seeds"]


def res_with_baseline(full: float) -> dict:
    return {
        "baseline": {
            0: {"stsb": {"splits": {"test": {"spearman_full": full, "spearman_exit": full, "exit_rate": 0.0}}}}
        }
    }


def test_an_exit_score_with_almost_no_exits_cannot_hold():
    """0.04% of sentences exiting: the score is a full-depth score (the old report called it
    'direction holds')."""
    m = Measured((0.819,), "0.819", exit_rate=0.0004)
    v, why = verdict(EXIT_CLAIM, m, res_with_baseline(0.819), "leap")
    assert v == "differs" and "full-depth score" in why


def test_a_heads_row_without_exits_cannot_hold():
    heads = BY_NAME["STS-B, DeeBERT-style learned exit heads"]
    v, _ = verdict(heads, Measured((0.8158,), exit_rate=0.0), {}, "leap")
    assert v == "differs"


def test_heads_are_compared_with_objectives_that_exit_not_with_full_depth_scores():
    """The committed CPU report once compared the heads (0.723, 33% exiting) with a variant
    that exited 0% of sentences (0.823, a full-depth score) and called it 'direction holds'."""
    heads = BY_NAME["STS-B, DeeBERT-style learned exit heads"]

    def run(spearman: float, rate: float) -> dict:
        return {0: {"stsb": {"splits": {"test": {"spearman_exit": spearman, "exit_rate": rate}}}}}

    res = {"leap": run(0.817, 0.001), "leap_fix": run(0.675, 0.468)}
    v, why = verdict(heads, Measured((0.723,), exit_rate=0.33), res, "deebert")
    assert v == "differs" and "0.675 (leap_fix" in why  # heads beat the only exiting objective
    v, why = verdict(heads, Measured((0.723,), exit_rate=0.33), {"leap": run(0.817, 0.001)}, "deebert")
    assert v == "differs" and "no exit objective" in why


def test_exit_with_a_small_cost_and_most_exiting_is_direction_holds():
    m = Measured((0.790,), exit_rate=0.85)
    v, why = verdict(EXIT_CLAIM, m, res_with_baseline(0.819), "leap")
    assert v == "direction holds" and "gap" in why


def test_exit_that_loses_too_much_differs():
    m = Measured((0.675,), exit_rate=0.5)
    assert verdict(EXIT_CLAIM, m, res_with_baseline(0.819), "leap")[0] == "differs"


def test_within_tolerance_is_reproduced():
    m = Measured((0.763,), exit_rate=0.9)
    assert verdict(EXIT_CLAIM, m, res_with_baseline(0.777), "leap")[0] == "reproduced"


def test_far_misses_of_text_claims_differ():
    cum = BY_NAME["cumulative exit by L6 / L7 (LEAP, theta 0.95)"]
    assert verdict(cum, Measured((0.0, 0.0), exit_rate=0.0), {}, "leap")[0] == "differs"
    assert verdict(cum, Measured((0.39, 0.90), exit_rate=0.9), {}, "leap")[0] == "reproduced"
    el = BY_NAME["expected exit layer / layer reduction"]
    assert verdict(el, Measured((12.0, 1.0), exit_rate=0.01), {}, "leap")[0] == "differs"
    beta = BY_NAME["beta sweep {0.1,0.2,0.4,0.6,0.8} (50K samples, 2 epochs)"]
    assert verdict(beta, Measured((0.0, 1.0, 1.0), exit_rate=0.0), {}, "leap")[0] == "differs"


def test_a_slower_exit_is_a_miss_not_a_note():
    sp = BY_NAME["wall-clock speedup batch 1 / 8 / 32 (L4, fp16)"]
    v, why = verdict(sp, Measured((0.94, 0.95, 1.0), exit_rate=0.5), {}, "leap")
    assert v == "differs" and "0.94x" in why


def test_another_device_is_not_comparable():
    sp = BY_NAME["wall-clock speedup batch 1 / 8 / 32 (L4, fp16)"]
    m = Measured((1.1, 1.0, 1.0), exit_rate=0.5, not_comparable="timed on a CPU; the paper's is an L4 GPU in fp16")
    assert verdict(sp, m, {}, "leap")[0] == "not comparable"


def test_one_benchmark_of_five_is_not_comparable():
    from leap.workflow.claim_measures import m_beir_delta

    def beir(v):
        return {"dataset": "scifact", "full": {"NDCG@10": v, "NDCG@5": v, "NDCG@1": v, "NDCG@3": v}}

    res = {"baseline": {0: {"beir_scifact": beir(0.6)}}, "leap": {0: {"beir_scifact": beir(0.6006)}}}
    claim = BY_NAME["BEIR NDCG@10, LEAP full vs baseline full, mean over 5 tasks"]
    m = m_beir_delta(res, {}, "leap", ks=(10,))
    v, why = verdict(claim, m, res, "leap")
    assert v == "not comparable" and "1 of the paper's 5" in why


def test_beir_not_measured_names_the_side_without_retrieval():
    from leap.workflow.claim_measures import m_beir_delta

    beir = {"dataset": "scifact", "full": {"NDCG@10": 0.6}}
    only_base = {"baseline": {0: {"beir_scifact": beir}}, "self_xd_mpnet": {0: {"stsb": {}}}}
    assert m_beir_delta(only_base, {}, "self_xd_mpnet", ks=(10,)).note == "BEIR not run for self_xd_mpnet"
    neither = {"baseline": {0: {"stsb": {}}}, "leap": {0: {"stsb": {}}}}
    assert m_beir_delta(neither, {}, "leap", ks=(10,)).note == "BEIR not run for baseline and leap"
    apart = {"baseline": {0: {"beir_scifact": beir}}, "leap": {0: {"beir_nfcorpus": {**beir, "dataset": "nfcorpus"}}}}
    assert m_beir_delta(apart, {}, "leap", ks=(10,)).note == "no BEIR set run for both baseline and leap"


def test_not_measured_says_what_is_missing():
    v, why = verdict(EXIT_CLAIM, Measured(None, note="variant leap not run"), {}, "leap")
    assert v == "not measured" and why == "variant leap not run"


def test_paper_layers_map_by_relative_depth_without_duplicates():
    assert [paper_layer_to_student(l, 6) for l in (6, 7, 8)] == [3.0, 3.5, 4.0]
    assert [paper_layer_to_student(l, 12) for l in (6, 7, 8)] == [6.0, 7.0, 8.0]
    vals = [0.1, 0.2, 0.3, 0.5, 0.8, 1.0]
    assert at_depth(vals, 3.5) == pytest.approx(0.4)  # between layers 3 and 4
    assert at_depth(vals, 3.0) == pytest.approx(0.3)


def test_claims_are_data_every_name_resolves_and_a_new_claim_is_one_entry(tmp_path):
    """Every claim of the paper's file names a registered measurement (and direction); a
    claims file with one more entry gives one more claim, judged like the others."""
    import yaml

    from leap.errors import LeapError
    from leap.workflow.claim_measures import DIRECTIONS, MEASUREMENTS
    from leap.workflow.claims import CLAIMS_FILE, build_claims

    claims = load_claims()
    assert len(claims) == 25 and all(c.measure in MEASUREMENTS for c in claims)
    assert all(c.direction is None or c.direction in DIRECTIONS for c in claims)
    entries = yaml.safe_load(CLAIMS_FILE.read_text())
    entries.append(
        {"claim": "baseline exit rate, again", "paper": "0%", "values": [0.0], "unit": "fraction",
         "measure": "exit_rate", "args": {"variant": "baseline"}, "tolerance": [0.01]}
    )  # fmt: skip
    extra = tmp_path / "claims.yaml"
    extra.write_text(yaml.safe_dump(entries))
    more = load_claims(extra)
    assert len(more) == 26 and more[-1].args == {"variant": "baseline"}
    res = {"baseline": {0: {"stsb": {"splits": {"test": {"exit_rate": 0.0}}}}}}
    assert verdict(more[-1], MEASUREMENTS["exit_rate"](res, {}, "leap", variant="baseline"), res, "leap")[0] == (
        "reproduced"
    )
    assert len(build_claims([])) >= 25
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump([{**entries[0], "measure": "no_such_measure"}]))
    with pytest.raises(LeapError, match="unknown measure 'no_such_measure'"):
        load_claims(bad)


def test_every_table_and_figure_is_listed_once_with_a_builder_and_a_caption():
    """One list (leap/workflow/resources/report_items.yaml) that the workflow, the builders and the
    reports read: each table has a registered builder, each item a caption file."""
    from pathlib import Path

    from leap.workflow.figures import FIGURE_BUILDERS
    from leap.workflow.results import FIGURE_NAMES, TABLE_NAMES, report_groups, report_items
    from leap.workflow.tables import TABLE_BUILDERS, table_builders

    root = Path(__file__).resolve().parents[1]
    assert len(set(TABLE_NAMES)) == len(TABLE_NAMES) and set(TABLE_BUILDERS) == set(TABLE_NAMES)
    assert list(table_builders()) == list(TABLE_NAMES)
    assert set(FIGURE_BUILDERS) == set(FIGURE_NAMES)
    for item in (*report_items()["tables"], *report_items()["figures"]):
        assert (root / "report" / item.kind / f"{item.name}.rst").read_text().strip(), item.name
    grouped = [name for items in report_groups().values() for name in items]
    assert sorted(grouped) == sorted([*TABLE_NAMES, *FIGURE_NAMES])
    args = {t.name: t.args for t in report_items()["tables"]}
    assert args["table10_strategies"] == {"thetas": [0.93, 0.95, 0.99], "pabee": "0.99/3"}
