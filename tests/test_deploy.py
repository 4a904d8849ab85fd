"""Deploying early exit: calibration within a budget, the calibration record, monitoring,
the shadow check, the fallback engaging on traffic the model was not calibrated on (and
disengaging after), and the amortization arithmetic."""

from __future__ import annotations

import json
import logging
import random

import numpy as np
import pytest

from leap.core.builtin import builtin_sentences
from leap.core.exit_config import ExitConfig, read_exit_file
from leap.deploy.amortize import amortize
from leap.deploy.calibrate import Budget, agreement, calibrate, calibrate_folder
from leap.deploy.monitor import ExitMonitor, MonitorConfig, attach_monitor, detach_monitor, monitor_of
from leap.errors import LeapError
from leap.serving.model import load_exit_model


@pytest.fixture(scope="module")
def minilm(minilm_path):
    return load_exit_model(minilm_path, exit=ExitConfig(theta=0.93, min_layer=3), device="cpu")


def test_calibration_picks_the_fastest_rule_within_budget(minilm):
    """The chosen rule, encoded through the model, meets the budget; every swept rule that exits
    earlier on average breaks it (measured the same way, not read back from the sweep)."""
    sents = builtin_sentences()[:80]
    res = calibrate(minilm, sents, Budget(nn10=0.85), thetas=(0.85, 0.93, 0.99))
    full = minilm.encode(sents, exit=ExitConfig(strategy="none"))

    def measured(rule: ExitConfig) -> tuple[float, float, float]:
        emb, layers = minilm.encode_with_exit_layers(sents, exit=rule)
        return float(layers.mean()), agreement(emb, full)[0], float((layers < minilm.num_layers).mean())

    assert res["chosen"] is not None
    depth, nn10, rate = measured(res["chosen"])
    assert nn10 >= 0.85 - 0.02 and rate > 0  # simulated and encoded NN@10 agree within 0.02
    for row in res["sweep"]:
        rule = ExitConfig(theta=row["theta"], min_layer=row["min_layer"], patience=row["patience"])
        d, n, r = measured(rule)
        if d < depth - 1e-9 and r > 0:
            assert n < 0.85 + 0.02, (rule, d, n)


def test_an_impossible_budget_chooses_nothing_and_writes_nothing(tmp_path, tiny_models):
    from leap.deploy.convert import convert

    folder = convert(tiny_models["bert"], tmp_path / "m", exit=ExitConfig(theta=0.9))
    before = (folder / "leap_exit.json").read_text()
    res = calibrate_folder(str(folder), builtin_sentences()[:40], Budget(nn10=1.0, mean_cosine=1.0), thetas=(-1.0, 0.5))
    assert res["chosen"] is None and (folder / "leap_exit.json").read_text() == before


def test_calibration_record_is_saved_with_the_rule(tmp_path, minilm_path):
    from leap.deploy.convert import convert
    from leap.serving.model import ExitSentenceTransformer

    folder = convert(minilm_path, tmp_path / "m", exit=ExitConfig(theta=0.99))
    sents = builtin_sentences()[:80]
    res = calibrate_folder(str(folder), sents, Budget(nn10=0.8), source="dev.txt", thetas=(0.9, 0.93, 0.95))
    saved = read_exit_file(folder)
    assert ExitSentenceTransformer(str(folder), device="cpu").exit_config == res["chosen"]
    rec = saved["calibration"]
    assert rec["data"] == "dev.txt" and rec["n_sentences"] == 80 and len(rec["data_sha256"]) == 64
    assert rec["budget"]["nn10"] == 0.8 and rec["achieved"]["nn10"] >= 0.8 and rec["date"]
    assert len(rec["exit_distribution"]) == 6 and sum(rec["exit_distribution"]) == pytest.approx(1.0)


def test_budget_needs_a_criterion():
    with pytest.raises(LeapError, match="at least one of"):
        Budget(nn10=None)
    with pytest.raises(LeapError, match="shadow check"):
        MonitorConfig(fallback=True, shadow_fraction=0.0)


def test_monitor_counts_exit_layers_of_every_request(minilm):
    mon = attach_monitor(minilm, ExitMonitor(6))
    try:
        assert monitor_of(minilm) is mon
        _, layers = minilm.encode_with_exit_layers(builtin_sentences()[:50])
        minilm.encode(builtin_sentences()[50:70])
        st = mon.stats()
    finally:
        assert detach_monitor(minilm) is mon
    assert monitor_of(minilm) is None and "forward" not in minilm.__dict__
    assert st["rows"] == 70 and sum(st["exit_histogram"]) == 70
    assert st["exit_histogram"][2] >= int((layers == 3).sum())
    assert st["shadow_rows"] == 0 and st["fallback_active"] is False


def test_fallback_engages_on_traffic_it_was_not_calibrated_on_and_disengages_after(minilm, caplog):
    """Word-shuffled sentences converge early in all-MiniLM-L6-v2 (an input built to force
    early exit): the shadow check sees their exit embeddings drift from full depth, the
    model falls back to full depth, and switches back once normal traffic returns."""
    normal = builtin_sentences()
    rng = random.Random(0)
    shuffled = [" ".join(rng.sample(s.split(), len(s.split()))) for s in normal]
    cfg = MonitorConfig(shadow_fraction=1.0, budget=Budget(nn10=0.8, mean_cosine=0.9), window=64, fallback=True)
    mon = attach_monitor(minilm, ExitMonitor(6, cfg))
    caplog.set_level(logging.WARNING, logger="leap.deploy")
    try:
        for i in range(0, 96, 16):
            minilm.encode(normal[i : i + 16])
        assert not mon.fallback_active, mon.stats()
        served_normal, _ = minilm.encode_with_exit_layers(normal[:8])
        for i in range(0, 96, 16):
            minilm.encode(shuffled[i : i + 16])
        assert mon.fallback_active and mon.switches == 1, mon.stats()
        # while it falls back, requests are served at full depth
        e, layers = minilm.encode_with_exit_layers(shuffled[:16])
        assert (layers == 6).all()
        full = minilm.encode(shuffled[:16], exit=ExitConfig(strategy="none"))
        assert np.abs(e - full).max() < 1e-5
        for i in range(96, 192, 16):
            minilm.encode(normal[i : i + 16])
        assert not mon.fallback_active and mon.switches == 2, mon.stats()
        assert mon.stats()["alerts"]["agreement"] > 0
    finally:
        detach_monitor(minilm)
    messages = [r.getMessage() for r in caplog.records]
    assert any("falling back" in m for m in messages) and any("back on" in m for m in messages)


def test_amortize_break_even():
    out = amortize(requests_per_day=1_000_000, full_ms=8.46, exit_ms=5.25, train_device_hours=56)
    assert out["break_even_requests"] == pytest.approx(56 * 3.6e6 / 3.21)
    assert out["break_even_days"] == pytest.approx(out["break_even_requests"] / 1e6)
    assert out["saved_device_hours_per_day"] == pytest.approx(1e6 * 3.21 / 3.6e6)
    slower = amortize(1000, full_ms=5.0, exit_ms=6.0, train_device_hours=1)
    assert slower["break_even_requests"] is None and "never pays back" in slower["verdict"]


def test_cli_calibrate_and_amortize(tmp_path, tiny_models, capsys):
    from leap.cli import main
    from leap.deploy.convert import convert

    folder = convert(tiny_models["bert"], tmp_path / "m")
    data = tmp_path / "dev.txt"
    data.write_text("\n".join(builtin_sentences()[:60]) + "\n", encoding="utf-8")
    assert (
        main(["calibrate", str(folder), "--data", str(data), "--nn10", "0.0", "--thetas", "0.5", "0.99", "--json"]) == 0
    )
    out = json.loads(capsys.readouterr().out)
    assert out["chosen"] is not None and len(out["sweep"]) == 2 * 2  # 2 thetas x 2 l_min
    bench = tmp_path / "bench.json"
    bench.write_text(json.dumps({"rows": [{"batch_size": 1, "full_ms": 10.0, "exit_ms": 6.0}]}))
    assert (
        main(["amortize", "--requests-per-day", "3600000", "--bench", str(bench), "--train-hours", "2", "--json"]) == 0
    )
    assert json.loads(capsys.readouterr().out)["break_even_requests"] == pytest.approx(2 * 3.6e6 / 4.0)
    assert main(["calibrate", "sentence-transformers/x", "--data", str(data)]) == 2
    assert "is not a local folder" in capsys.readouterr().err


def test_monitor_is_a_wrapper_outside_the_model(minilm):
    """The model's own forward knows only its exit rule; attaching twice keeps one wrapper."""
    from sentence_transformers import SentenceTransformer

    from leap.serving.model import ExitSentenceTransformer

    assert ExitSentenceTransformer.forward is SentenceTransformer.forward  # no monitor branch in the model
    first = attach_monitor(minilm, ExitMonitor(6))
    second = attach_monitor(minilm, ExitMonitor(6))
    try:
        minilm.encode(builtin_sentences()[:5])
        assert first.stats()["rows"] == 0 and second.stats()["rows"] == 5
    finally:
        detach_monitor(minilm)
    with pytest.raises(LeapError, match="counts 12 layers"):
        attach_monitor(minilm, ExitMonitor(12))
    assert monitor_of(minilm) is None


def test_cli_calibrate_states_every_budget_and_refuses_a_folder_that_is_not_exit_enabled(tmp_path, tiny_models, capsys):
    import shutil

    from leap.cli import main
    from leap.deploy.convert import convert

    sents = builtin_sentences()[:40]
    data = tmp_path / "dev.txt"
    data.write_text("\n".join(sents) + "\n", encoding="utf-8")
    pairs = tmp_path / "pairs.tsv"
    pairs.write_text("".join(f"{a}\t{b}\t{i % 5}\n" for i, (a, b) in enumerate(zip(sents, sents[1:]))))
    plain = tmp_path / "plain"
    shutil.copytree(tiny_models["bert"], plain)
    assert main(["calibrate", str(plain), "--data", str(data)]) == 2
    assert "not exit-enabled" in capsys.readouterr().err and not (plain / "leap_exit.json").exists()
    assert main(["calibrate", str(plain), "--data", str(data), "--in-place", "--nn10", "0", "--thetas", "0.5"]) == 0
    assert (plain / "leap_exit.json").exists()
    capsys.readouterr()
    folder = convert(tiny_models["bert"], tmp_path / "m")
    assert main(["calibrate", str(folder), "--data", str(data), "--thetas", "0.99"]) == 0
    assert "budget (every criterion checked): NN@10 >= 0.95\n" in capsys.readouterr().out  # the default, said
    argv = ["calibrate", str(folder), "--data", str(pairs), "--pairs", "--spearman-drop", "0.5", "--thetas", "0.99"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "budget (every criterion checked): Spearman drop <= 0.5\n" in out and "NN@10 >=" not in out
    assert main(["calibrate", str(folder), "--data", str(data), "--spearman-drop", "0.1"]) == 2
    assert "needs scored pairs" in capsys.readouterr().err
