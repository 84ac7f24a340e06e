"""docs/ARCHITECTURE.md cites files and names; each one must exist.

A citation is a backticked ``path/to/file.py`` (the file exists) or
``path/to/file.py:Name.attribute`` (the module imports and has it)."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "ARCHITECTURE.md"
CITATION = re.compile(r"`((?:mvds|tests)/[\w/]+\.py)(?::([\w.]+))?`")


def citations() -> list[tuple[str, str | None]]:
    return [(path, name or None) for path, name in CITATION.findall(DOC.read_text())]


def test_the_doc_cites_files_and_names():
    found = citations()
    assert len(found) > 40
    assert sum(1 for _, name in found if name) > 30


def test_every_cited_file_and_name_exists():
    missing = []
    for path, name in citations():
        if not (ROOT / path).is_file():
            missing.append(path)
            continue
        if name is None or path.startswith("tests/"):
            continue
        module = importlib.import_module(path[:-3].replace("/", "."))
        target = module
        for part in name.split("."):
            if not hasattr(target, part):
                missing.append(f"{path}:{name}")
                break
            target = getattr(target, part)
    assert missing == []


def test_the_readme_links_it():
    assert "](docs/ARCHITECTURE.md)" in (ROOT / "README.md").read_text()
