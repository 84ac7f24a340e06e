"""The README's Python examples run as written."""

import pathlib
import re

import pytest
import structlog

README = pathlib.Path(__file__).resolve().parent.parent / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)


@pytest.fixture
def clean_structlog():
    """The logging example configures structlog for the whole process:
    put the defaults back so later tests see an unconfigured library."""
    yield
    structlog.reset_defaults()


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_python_example_runs(index, tmp_path, monkeypatch, capsys, clean_structlog):
    monkeypatch.chdir(tmp_path)
    exec(compile(BLOCKS[index], f"README.md[python block {index}]", "exec"), {})
    out = capsys.readouterr().out
    # Where a block says what it prints, it prints that.
    for expected in re.findall(r"print\(.*\)\s*#\s*(\[[^\]]*\]|\d+(?: \w+)*)", BLOCKS[index]):
        assert expected in out, f"README.md[python block {index}] does not print {expected!r}: {out}"
