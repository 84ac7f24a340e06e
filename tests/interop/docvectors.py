"""Read the test vectors out of docs/PROTOCOL.md (section 14), as plain bytes."""

from __future__ import annotations

import pathlib
import re

DOC_PATH = pathlib.Path(__file__).resolve().parents[2] / "docs" / "PROTOCOL.md"


def doc_vectors(text: str | None = None) -> dict[str, bytes]:
    """Section 14's vectors: ``name = hex`` lines, long values continued on
    indented lines."""
    text = DOC_PATH.read_text() if text is None else text
    section = text[text.index("## 14. Test vectors") :]
    return parse_block(re.search(r"```text\n(.*?)```", section, re.S).group(1))


def session_vectors(text: str | None = None) -> dict[str, bytes]:
    """The vectors of the "Sessions" section ("### Session test vectors")."""
    text = DOC_PATH.read_text() if text is None else text
    return parse_block(re.search(r"### Session test vectors.*?```text\n(.*?)```", text, re.S).group(1))


def parse_block(block: str) -> dict[str, bytes]:
    """A vectors block: ``name = hex`` lines, continued on indented lines."""
    values: dict[str, str] = {}
    name = None
    for line in block.splitlines():
        if not line.strip():
            continue
        if line.startswith(" "):
            assert name is not None, f"continuation without a name: {line!r}"
            values[name] += line.strip()
        else:
            name, _, value = (part.strip() for part in line.partition("="))
            assert name not in values, f"vector {name} given twice"
            values[name] = value
    return {key: bytes.fromhex(value) for key, value in values.items()}
