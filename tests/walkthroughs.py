"""Running the README's shell walkthroughs (examples/*.sh) as written: the
README must show the script verbatim, and the script runs with the README's
ports swapped for free ones (the only change), so it does not collide with
anything else listening on the machine, such as a concurrent test run."""

from __future__ import annotations

import pathlib
import shutil
import socket
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent


def free_udp_ports(count: int) -> list[str]:
    sockets = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [str(s.getsockname()[1]) for s in sockets]
    finally:
        for s in sockets:
            s.close()


def readme_shows(script: pathlib.Path) -> bool:
    """Whether README.md shows the script's body (after its `set` line) verbatim."""
    body = script.read_text().split("set -euo pipefail\n", 1)[1].strip()
    return body in (ROOT / "README.md").read_text()


def run_walkthrough(script: pathlib.Path, ports: tuple[str, ...], uses_per_port: int,
                    cwd: pathlib.Path) -> subprocess.CompletedProcess:
    """Run the script in ``cwd`` with the installed `mvds` and free ports
    (each README port must appear ``uses_per_port`` times as 127.0.0.1:PORT)."""
    bin_dir = pathlib.Path(sys.executable).parent
    assert shutil.which("mvds", path=str(bin_dir)), "the mvds console script is installed"
    text = script.read_text()
    for port, free in zip(ports, free_udp_ports(len(ports))):
        assert text.count(f"127.0.0.1:{port}") == uses_per_port, port
        text = text.replace(f"127.0.0.1:{port}", f"127.0.0.1:{free}")
    copy = cwd / script.name
    copy.write_text(text)
    return subprocess.run(
        ["bash", str(copy)], cwd=cwd, capture_output=True, text=True, timeout=120,
        env={"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(cwd)},
    )
