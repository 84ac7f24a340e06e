"""The README's pairing walkthrough (examples/pairing.sh) runs as written
(on two free ports instead of 7411 and 7412, the only change)."""

import pathlib
import shutil
import subprocess
import sys

from test_examples import free_udp_ports

ROOT = pathlib.Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "examples" / "pairing.sh"
PORTS = ("7411", "7412")


def test_readme_shows_the_pairing_walkthrough_verbatim():
    body = SCRIPT.read_text().split("set -euo pipefail\n", 1)[1].strip()
    assert body in (ROOT / "README.md").read_text(), "README.md must show examples/pairing.sh"


def test_pairing_walkthrough_runs(tmp_path):
    bin_dir = pathlib.Path(sys.executable).parent
    assert shutil.which("mvds", path=str(bin_dir))
    text = SCRIPT.read_text()
    for port, free in zip(PORTS, free_udp_ports(2)):
        assert text.count(f"127.0.0.1:{port}") == 1
        text = text.replace(f"127.0.0.1:{port}", f"127.0.0.1:{free}")
    script = tmp_path / "pairing.sh"
    script.write_text(text)
    result = subprocess.run(
        ["bash", str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=120,
        env={"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(tmp_path)},
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "paired with carol" in out and "sharing chat" in out
    assert "hello dave" in out  # dave's tail shows carol's message; the ACKs came both ways
    assert "a code works once" in out
    assert "the inviting node refused or did not answer: the code may be expired or used" in result.stderr
    assert 'name = "dave"' in (tmp_path / "carol" / "mvds.toml").read_text()
    assert 'name = "carol"' in (tmp_path / "dave" / "mvds.toml").read_text()
