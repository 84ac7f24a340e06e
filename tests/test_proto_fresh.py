"""The committed protobuf module must be what scripts/gen_proto.py generates."""

import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent


def test_generated_module_is_up_to_date(tmp_path):
    subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_proto.py"), "--out", str(tmp_path)],
        check=True,
        capture_output=True,
    )
    fresh = (tmp_path / "mvds_pb2.py").read_text()
    committed = (ROOT / "mvds" / "_pb" / "mvds_pb2.py").read_text()
    assert fresh == committed, (
        "mvds/_pb/mvds_pb2.py is stale: run `python scripts/gen_proto.py` and commit it"
    )
