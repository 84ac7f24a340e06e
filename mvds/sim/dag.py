"""The message graph (the DAG formed by ``parents``) as Graphviz DOT.

The DOT file is always written; a PNG is rendered only when Graphviz's
``dot`` is on PATH (it is an optional system tool, not a Python dependency).
"""

from __future__ import annotations

import pathlib
import shutil
import subprocess
from typing import Callable

from mvds.sim.network import SimResult


def _quote(text: str) -> str:
    """A DOT string literal; real newlines become DOT's line breaks."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return '"' + escaped + '"'


def to_dot(result: SimResult, label_of: Callable[[SimResult, bytes], str]) -> str:
    """DOT source: one box per message (author, label, tick), edges child -> parent."""
    recorder = result.recorder
    names = result.names
    lines = [
        "digraph messages {",
        "  rankdir=BT;",  # parents (older) at the top, arrows point to parents
        '  node [shape=box, fontname="Helvetica", fontsize=10];',
        '  edge [color="#555555"];',
    ]
    for mid, info in recorder.messages.items():
        label = f"{label_of(result, mid)}\n{names[info.author]}, id {mid[:4].hex()}, t={info.appended_at:g}"
        lines.append(f"  {_quote(mid[:8].hex())} [label={_quote(label)}];")
    for mid, info in recorder.messages.items():
        for parent in info.parents:
            lines.append(f"  {_quote(mid[:8].hex())} -> {_quote(parent[:8].hex())};")
    lines.append("}")
    return "\n".join(lines) + "\n"


def render_png(dot_path: pathlib.Path) -> pathlib.Path | None:
    """Render ``dot_path`` to PNG beside it if Graphviz is installed; None if not."""
    executable = shutil.which("dot")
    if executable is None:
        return None
    png = dot_path.with_suffix(".png")
    completed = subprocess.run(
        [executable, "-Tpng", "-Gdpi=110", str(dot_path), "-o", str(png)],
        capture_output=True,
        timeout=120,
        check=False,
    )
    if completed.returncode != 0:
        return None
    return png
