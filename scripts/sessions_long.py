"""The session "done when" scenarios at full length (not in CI).

    python scripts/sessions_long.py            # about 20 minutes

Runs tests/daemon/test_sessions_daemon.py with MVDS_SESSION_TEST_SCALE set
so that keepalive_s is 15 s (the default), resolve_interval_s 30 s (the
default) and the idle, one-way and full-disk phases last 5 minutes or more.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    env = dict(os.environ, MVDS_SESSION_TEST_SCALE="18.75")  # 0.8 s x 18.75 = 15 s keepalives
    tests = [
        "tests/daemon/test_sessions_daemon.py::test_idle_nodes_stay_reachable_and_a_stopped_one_is_reported",
        "tests/daemon/test_sessions_daemon.py::test_a_full_file_system_under_a_syncing_daemon",
    ]
    code = subprocess.call([sys.executable, "-m", "pytest", "-v", "-p", "no:randomly", *tests], cwd=ROOT, env=env)
    env["MVDS_SESSION_TEST_SCALE"] = "60"  # 0.5 s x 60 = the default 30 s re-resolution
    moved = "tests/daemon/test_sessions_daemon.py::test_a_peer_that_moved_port_keeps_getting_one_way_traffic"
    return code or subprocess.call([sys.executable, "-m", "pytest", "-v", "-p", "no:randomly", moved],
                                   cwd=ROOT, env=env)


if __name__ == "__main__":
    sys.exit(main())
