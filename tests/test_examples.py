"""The README's shell walkthrough (examples/two_nodes.sh) runs as written."""

import pathlib
import shutil
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "examples" / "two_nodes.sh"


def test_readme_shows_the_walkthrough_verbatim():
    body = SCRIPT.read_text().split("set -euo pipefail\n", 1)[1].strip()
    assert body in (ROOT / "README.md").read_text(), "README.md must show examples/two_nodes.sh"


def test_two_nodes_walkthrough_runs(tmp_path):
    bin_dir = pathlib.Path(sys.executable).parent
    assert shutil.which("mvds", path=str(bin_dir)), "the mvds console script is installed"
    result = subprocess.run(
        ["bash", str(SCRIPT)], cwd=tmp_path, capture_output=True, text=True, timeout=120,
        env={"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(tmp_path)},
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    for text in ("hello bob", "one", "two", "any bytes"):
        assert text in out
    assert '"seq":3' in out and '"seq":1' not in out.split("any bytes", 1)[1]
    assert "reachable" in out
