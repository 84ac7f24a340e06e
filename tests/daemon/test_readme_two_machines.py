"""The README's "Two machines" section runs as written, each column on its
own "machine": two network namespaces whose addresses are the README's
192.168.1.10 (alice) and 192.168.1.20 (bob), joined by a veth pair.  The
only substitution is the one the README asks the reader to make: each
side's id where the other side's command says ALICE_ID / BOB_ID."""

from __future__ import annotations

import os
import pathlib
import re
import subprocess
import sys

import pytest

from netns_pair import NsDaemon, two_namespaces
from procs import cli, stop_all

pytestmark = pytest.mark.netns

ROOT = pathlib.Path(__file__).resolve().parents[2]
BIN = pathlib.Path(sys.executable).parent


def two_columns() -> list[tuple[str, str]]:
    """The section's first shell block as (alice's command, bob's command) rows."""
    section = (ROOT / "README.md").read_text().split("### Two machines\n", 1)[1]
    block = re.search(r"```sh\n(.*?)```", section, re.S).group(1)
    lines = block.splitlines()
    column = lines[0].index("# on 192.168.1.20")
    rows = []
    for line in lines[1:]:
        if line.startswith(" "):  # bob's column only
            rows.append(("", line.strip()))
        elif line[column - 2:column] == "  ":  # both columns
            rows.append((line[:column].strip(), line[column:].strip()))
        else:  # alice's command runs past the column
            rows.append((line.strip(), ""))
    return rows


def test_the_two_machines_section_runs_on_two_network_namespaces(tmp_path):
    rows = two_columns()
    assert [left.split()[:2] for left, _ in rows if left][-1] == ["mvds", "run"]
    env = {**os.environ, "PATH": f"{BIN}:{os.environ.get('PATH', '/usr/bin:/bin')}"}
    ids: dict[str, str] = {}
    daemons = []
    with two_namespaces("192.168.1.10/24", "192.168.1.20/24") as (ns_alice, ns_bob):
        try:
            for row in rows:
                for ns, command in zip((ns_alice, ns_bob), row):
                    if not command:
                        continue
                    words = command.split("#", 1)[0].split()
                    if words[:2] == ["mvds", "run"]:
                        daemons.append(NsDaemon(tmp_path / words[2], ns).start())
                        continue
                    for name, peer_id in ids.items():
                        command = command.replace(f"{name.upper()}_ID", peer_id)
                    result = subprocess.run(
                        ["ip", "netns", "exec", ns, "sh", "-c", command], cwd=tmp_path,
                        env=env, capture_output=True, text=True, timeout=60,
                    )
                    assert result.returncode == 0, (command, result.stderr)
                    if words[:2] == ["mvds", "id"]:
                        ids[words[2]] = result.stdout.strip()
            assert len(daemons) == 2 and set(ids) == {"alice", "bob"}
            alice, bob = (tmp_path / "alice"), (tmp_path / "bob")
            cli("send", str(alice), "chat", "across", "--wait-ack", "--ack-timeout", "20", check=True)
            cli("send", str(bob), "chat", "and back", "--wait-ack", "--ack-timeout", "20", check=True)
            assert "across" in cli("tail", str(bob), check=True).stdout
            assert "and back" in cli("tail", str(alice), check=True).stdout
        finally:
            stop_all(daemons)
