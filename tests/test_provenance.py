"""What a run's provenance record says about the config files it read."""

from __future__ import annotations

import json

from leap.workflow.provenance import file_sha256, record_invocation


def test_config_files_inside_the_repository_are_recorded_by_relative_path(tmp_path):
    root, outside = tmp_path / "repo", tmp_path / "elsewhere"
    (root / "config").mkdir(parents=True)
    outside.mkdir()
    inside_cfg, outside_cfg = root / "config/cpu.yaml", outside / "extra.yaml"
    inside_cfg.write_text("threads: 2\n")
    outside_cfg.write_text("threads: 1\n")
    log = root / "results/logs/invocations.jsonl"

    rec = record_invocation(log, root, ["snakemake", "--cores", "2"], [str(inside_cfg), str(outside_cfg)])

    want = {"config/cpu.yaml": file_sha256(inside_cfg), str(outside_cfg): file_sha256(outside_cfg)}
    assert rec["configfiles"] == want
    assert json.loads(log.read_text().splitlines()[-1]) == rec  # the line the run's provenance is built from
