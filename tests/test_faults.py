"""Faults on the way to the data, injected for real: the stand-in Hub answers 503 / 429, drops
the connection mid-file, serves a truncated or altered BEIR zip, or is asked for a revision
that does not exist; the operating system refuses a write for lack of space. Each test
checks the recovery (the same data as without the fault) or the one line, and writes its row
of the docs' fault table (tests/faults.py)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.faults import ONE_LINE, record, run_limited
from tests.hub_fixtures import build_hub
from tests.hub_stub import Fault, HubStub

ROOT = Path(__file__).resolve().parents[1]

LOAD = """
import hashlib, json, logging, sys
logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(message)s")
from leap.errors import LeapError
from leap.workflow.data.retry import Retry
from leap.workflow.data.sources import HubSettings, HubSource
revisions, attempts = json.loads(sys.argv[1]), int(sys.argv[2])
hub = HubSettings(revisions=revisions, retry=Retry(attempts=attempts, backoff=0.0))
try:
    sents = HubSource("mrpc", hub).training_sentences()
except LeapError as err:
    print(f"error: {err}", file=sys.stderr)
    sys.exit(2)
print(json.dumps({"n": len(sents), "sha": hashlib.sha256("\\n".join(sents).encode()).hexdigest()}))
"""


@pytest.fixture(scope="module")
def hub_root(tmp_path_factory) -> Path:
    return build_hub(tmp_path_factory.mktemp("hub"))


def load_mrpc(root: Path, faults: list[Fault], tmp: Path, revisions: dict | None = None, attempts: int = 4):
    """MRPC's training sentences through the stand-in Hub with ``faults`` and the run's
    ``attempts``, in a fresh process (the Hub client reads its endpoint once):
    ``(returncode, stdout JSON or None, stderr)``."""
    env = {k: v for k, v in os.environ.items() if "OFFLINE" not in k}
    with HubStub(root, faults) as url:
        env |= {"HF_ENDPOINT": url, "HF_HOME": str(tmp / "hf"), "HF_HUB_DISABLE_TELEMETRY": "1"}
        proc = subprocess.run(
            [sys.executable, "-c", LOAD, json.dumps(revisions or {}), str(attempts)],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
    out = json.loads(proc.stdout.strip().splitlines()[-1]) if proc.returncode == 0 else None
    return proc.returncode, out, proc.stderr


@pytest.fixture(scope="module")
def clean_load(hub_root, tmp_path_factory) -> dict:
    rc, out, err = load_mrpc(hub_root, [], tmp_path_factory.mktemp("clean"))
    assert rc == 0, err[-2000:]
    return out


@pytest.mark.slow
@pytest.mark.parametrize("code", [503, 429])
def test_fault_a_hub_answering_503_or_429_is_retried_and_gives_the_same_data(hub_root, clean_load, tmp_path, code):
    """Eight failed answers in a row outlast the Hub client's own retries; the run's retry
    (data.download_attempts) gets through, to the same sentences."""
    rc, out, err = load_mrpc(hub_root, [Fault("status", "/", times=8, code=code)], tmp_path)
    assert rc == 0, err[-3000:]
    assert out == clean_load
    retried = next(line for line in err.splitlines() if "attempt 2 of 4" in line)
    record(
        f"the Hub answers {code}",
        f"the stand-in Hub answers HTTP {code} to the next 8 requests",
        f"recovers; the log says: {retried}",
    )


@pytest.mark.slow
def test_fault_a_connection_dropped_mid_file_is_retried_and_gives_the_same_data(hub_root, clean_load, tmp_path):
    rc, out, err = load_mrpc(hub_root, [Fault("drop", ".parquet", times=8)], tmp_path)
    assert rc == 0, err[-3000:]
    assert out == clean_load
    retried = next(line for line in err.splitlines() if "attempt 2 of 4" in line)
    record(
        "a connection dropped mid-file",
        "the stand-in Hub sends half of each data file 8 times, then hangs up",
        f"recovers; the log says: {retried}",
    )


@pytest.mark.slow
def test_fault_a_hub_that_keeps_failing_stops_in_one_line_after_the_attempts(hub_root, tmp_path):
    # two attempts, not four: each one waits out the Hub client's own retries (seconds apart)
    rc, out, err = load_mrpc(hub_root, [Fault("status", "/", times=None, code=503)], tmp_path, attempts=2)
    line = err.strip().splitlines()[-1]
    assert rc == 2 and line.startswith("error: data source 'hub:mrpc'") and "after 2 attempts" in line
    assert err.count("again in") == 1  # every attempt made, none more
    record("the Hub keeps failing", "the stand-in Hub answers 503 to every request", line)


def test_fault_a_pinned_revision_that_does_not_exist_stops_at_once_in_one_line(hub_root, tmp_path):
    rc, out, err = load_mrpc(hub_root, [], tmp_path, revisions={"nyu-mll/glue": "0" * 40})
    line = err.strip().splitlines()[-1]
    assert rc == 2 and "doesn't exist" in line and "attempt" not in err  # not retried: it will not appear
    record(
        "a pinned revision that does not exist",
        "data.revisions pins a commit the Hub does not have",
        line,
    )


def _zip_sha(path: Path) -> str:
    return "md5:" + hashlib.md5(path.read_bytes()).hexdigest()


def test_fault_a_truncated_beir_zip_is_downloaded_again(hub_root, tmp_path):
    from leap.workflow.data.beir_download import download_beir
    from leap.workflow.data.retry import Retry

    good = hub_root / "beir" / "scifact.zip"
    with HubStub(hub_root, [Fault("truncate", "/beir/", times=1)]) as url, zipfile.ZipFile(good) as z:
        folder = download_beir(
            "scifact", f"{url}/beir/scifact.zip", tmp_path / "dl", {"scifact": _zip_sha(good)}, Retry(3, 0)
        )
        assert (folder / "corpus.jsonl").read_bytes() == z.read("scifact/corpus.jsonl")
    record(
        "a truncated BEIR zip",
        "the stand-in server sends the first half of the zip as if it were all of it, once",
        "recovers: the zip fails its checksum, is deleted and downloaded again",
    )


def test_fault_an_altered_beir_zip_stops_in_one_line_and_extracts_nothing(hub_root, tmp_path):
    from leap.errors import LeapError
    from leap.workflow.data.beir_download import download_beir
    from leap.workflow.data.retry import Retry

    good = hub_root / "beir" / "scifact.zip"
    with HubStub(hub_root, [Fault("corrupt", "/beir/", times=None)]) as url, pytest.raises(LeapError) as err:
        download_beir("scifact", f"{url}/beir/scifact.zip", tmp_path / "dl", {"scifact": _zip_sha(good)}, Retry(3, 0))
    assert "after 3 attempts" in str(err.value) and list((tmp_path / "dl").iterdir()) == []
    record(
        "an altered BEIR zip", "the stand-in server changes 64 bytes in the middle of every download", str(err.value)
    )


def test_fault_a_full_disk_while_writing_an_evaluation_keeps_the_previous_file(tmp_path):
    from leap.files import write_json

    previous = {"splits": {"test": {"spearman": 0.8}}}
    write_json(tmp_path / "stsb.json", previous)
    code = (
        ONE_LINE + 'from leap.files import write_json\none_line(lambda: write_json("stsb.json", {"s": [0.81] * 20000}))'
    )
    proc = run_limited(code, 4096, tmp_path)
    line = proc.stderr.strip().splitlines()[-1]
    assert proc.returncode == 2 and "not enough space to write stsb.json" in line and "bytes" in line
    assert json.loads((tmp_path / "stsb.json").read_text()) == previous
    assert sorted(p.name for p in tmp_path.iterdir()) == ["stsb.json"]  # no temp file left
    record(
        "a full disk writing an evaluation JSON",
        "RLIMIT_FSIZE 4 KiB on the process writing it",
        line,
        "nothing: the previous file is kept",
    )
