"""`mvds demo` from a directory that holds a folder named ``mvds`` (the
parent of a clone, or after ``mvds init mvds``): the demo's daemons must
still run the installed package, and a demo that fails to start leaves its
--dir empty so that a rerun works."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from test_demo import FAST

# The console script does not put the current directory on sys.path; the
# demo's children must not either.
MVDS_SCRIPT = str(Path(sys.executable).parent / "mvds")


def test_demo_runs_from_a_directory_with_a_folder_named_mvds(tmp_path):
    shadow = tmp_path / "mvds"
    shadow.mkdir()
    (shadow / "__init__.py").write_text("# not the mvds package\n")
    result = subprocess.run(
        [MVDS_SCRIPT, "demo", "--dir", str(tmp_path / "demo"), *FAST, "--timeout", "90"],
        capture_output=True, text=True, timeout=150, cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert "overall: 12/12 deliveries" in result.stdout


def test_a_demo_that_fails_to_start_leaves_its_dir_reusable(tmp_path):
    # Daemons that cannot start: a sitecustomize ends every `mvds run`
    # process at interpreter start-up (the demo itself is `mvds demo`).
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    (hooks / "sitecustomize.py").write_text(
        "import os, sys\n"
        "if 'run' in sys.orig_argv:\n"
        "    sys.stderr.write('refusing to start on purpose\\n'); sys.stderr.flush()\n"
        "    os._exit(3)\n"
    )
    demo_dir = tmp_path / "demo"
    result = subprocess.run(
        [MVDS_SCRIPT, "demo", "--dir", str(demo_dir), *FAST, "--timeout", "30"],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(hooks)},
    )
    assert result.returncode != 0
    assert "failed to start" in result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
    assert not demo_dir.exists() or not any(demo_dir.iterdir())
