"""`mvds completion`: the generated script completes commands and options
in a real bash (and is valid zsh where zsh is installed)."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

MVDS = [sys.executable, "-m", "mvds"]


def complete_in_bash(script: str, words: list[str]) -> list[str]:
    words_literal = " ".join(f"'{w}'" for w in words)
    program = (
        f"source /dev/stdin <<'EOF_SCRIPT'\n{script}\nEOF_SCRIPT\n"
        f"COMP_WORDS=({words_literal}); COMP_CWORD={len(words) - 1}; "
        f"COMP_LINE='{' '.join(words)}'; COMP_POINT=${{#COMP_LINE}}; "
        '_shtab_mvds; printf "%s\\n" "${COMPREPLY[@]}"'
    )
    result = subprocess.run(["bash", "-c", program], capture_output=True, text=True, check=True)
    return result.stdout.split()


@pytest.fixture(scope="module")
def bash_script() -> str:
    return subprocess.run([*MVDS, "completion", "bash"], capture_output=True, text=True, check=True).stdout


def test_bash_completes_commands_and_options(bash_script):
    assert complete_in_bash(bash_script, ["mvds", "ru"]) == ["run"]
    assert "--mode" in complete_in_bash(bash_script, ["mvds", "run", "alice", "--mo"])
    assert set(complete_in_bash(bash_script, ["mvds", "run", "alice", "--mode", ""])) == {
        "batch", "interactive"}
    assert "completion" in complete_in_bash(bash_script, ["mvds", ""])


def test_zsh_script_is_valid():
    script = subprocess.run([*MVDS, "completion", "zsh"], capture_output=True, text=True, check=True).stdout
    assert script.startswith("#compdef mvds")
    if shutil.which("zsh") is None:
        pytest.skip("zsh is not installed: syntax not checked")
    subprocess.run(["zsh", "-n"], input=script, text=True, check=True)
