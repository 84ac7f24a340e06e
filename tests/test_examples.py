"""The README's shell walkthrough (examples/two_nodes.sh) runs as written.

The walkthrough uses the README's ports 7401 and 7402; the test runs it on
two free ports instead (the only change to the script's text), so it does
not collide with anything else on the machine listening there, such as a
concurrent test run.
"""

import pathlib
import shutil
import socket
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "examples" / "two_nodes.sh"
README_PORTS = ("7401", "7402")


def test_readme_shows_the_walkthrough_verbatim():
    body = SCRIPT.read_text().split("set -euo pipefail\n", 1)[1].strip()
    assert body in (ROOT / "README.md").read_text(), "README.md must show examples/two_nodes.sh"


def free_udp_ports(count: int) -> list[str]:
    sockets = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [str(s.getsockname()[1]) for s in sockets]
    finally:
        for s in sockets:
            s.close()


def test_two_nodes_walkthrough_runs(tmp_path):
    bin_dir = pathlib.Path(sys.executable).parent
    assert shutil.which("mvds", path=str(bin_dir)), "the mvds console script is installed"
    text = SCRIPT.read_text()
    for port in README_PORTS:
        assert text.count(f"127.0.0.1:{port}") == 2, "each port: its init and the peer add"
    for port, free in zip(README_PORTS, free_udp_ports(2)):
        text = text.replace(f"127.0.0.1:{port}", f"127.0.0.1:{free}")
    script = tmp_path / "two_nodes.sh"
    script.write_text(text)
    result = subprocess.run(
        ["bash", str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=120,
        env={"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(tmp_path)},
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    for text in ("hello bob", "one", "two", "any bytes"):
        assert text in out
    assert '"seq":3' in out and '"seq":1' not in out.split("any bytes", 1)[1]
    assert "reachable" in out
    assert "got them" in out and "(own)" in out, "tail --all shows alice's own messages"
    assert "no problems found" in out, "mvds doctor on a healthy pair"
