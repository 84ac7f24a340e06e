"""docker/mvds-node, the container entrypoint, run as the shell script it is.

No Docker needed: the script runs on the host with MVDS_DATA and
MVDS_PEERS_DIR pointing into a temporary directory and a stand-in ``mvds``
first on PATH that hands every command to the real CLI except ``run``,
whose argv it prints.  So the real ``mvds init`` / ``id`` / ``peer add``
run, and the test sees exactly the ``mvds run`` command the container would
become.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mvds.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
ENTRYPOINT = ROOT / "docker" / "mvds-node"

STAND_IN = """#!/bin/sh
if [ "$1" = run ]; then
    exec "{python}" -c 'import json, sys; print(json.dumps(sys.argv[1:]))' "$@"
fi
exec "{python}" -m mvds "$@"
"""


def run_options() -> list[str]:
    """Every long option of `mvds run` (from the real parser)."""
    parser = build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    run = sub.choices["run"]
    options = []
    for action in run._actions:
        for flag in action.option_strings:
            if flag.startswith("--") and flag != "--help":
                options.append(flag)
    return options


def entrypoint(tmp_path: Path, env: dict[str, str]) -> list[str]:
    if shutil.which("sh") is None:
        pytest.skip("needs /bin/sh")
    bindir = tmp_path / "bin"
    bindir.mkdir(exist_ok=True)
    stand_in = bindir / "mvds"
    stand_in.write_text(STAND_IN.format(python=sys.executable))
    stand_in.chmod(0o755)
    (tmp_path / "peers").mkdir(exist_ok=True)
    full = {
        "PATH": f"{bindir}:{os.environ['PATH']}",
        "HOME": str(tmp_path),
        "MVDS_NODE": "a",
        "MVDS_DATA": str(tmp_path / "data"),
        "MVDS_PEERS_DIR": str(tmp_path / "peers"),
        **env,
    }
    result = subprocess.run(
        ["sh", str(ENTRYPOINT)], env=full, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_defaults_give_json_logs_and_nothing_else(tmp_path):
    argv = entrypoint(tmp_path, {})
    assert argv == ["run", str(tmp_path / "data"), "--log-format", "json"]
    peer_id = subprocess.run([sys.executable, "-m", "mvds", "id", str(tmp_path / "data")],
                             capture_output=True, text=True, check=True).stdout.strip()
    assert (tmp_path / "peers" / "a").read_text().strip() == peer_id


def test_every_run_option_has_an_environment_variable(tmp_path):
    values = {
        "--listen": "0.0.0.0:7401", "--loss": "0.25", "--seed": "7",
        "--schedule": "up 2s, down 6s", "--mode": "interactive", "--delivery": "eventual",
        "--epoch-ms": "150", "--log-format": "console", "--log-level": "debug",
        "--metrics": "0.0.0.0:9101",
    }
    options = run_options()
    missing = set(options) - set(values)
    assert not missing, f"new `mvds run` options need a value here and a variable: {missing}"
    env = {"MVDS_" + re.sub("-", "_", option[2:]).upper(): value for option, value in values.items()}
    argv = entrypoint(tmp_path, env)
    passed = dict(zip(argv[2::2], argv[3::2]))
    assert passed == values
    # The command the container becomes is one the real CLI accepts.
    parser = build_parser()
    parsed = parser.parse_args(argv)
    assert parsed.seed == 7 and parsed.epoch_ms == 150 and parsed.metrics == "0.0.0.0:9101"


def test_readme_jq_line_skips_compose_1_29_attach_line():
    """docker-compose 1.29 prints `Attaching to ...` on stdout before the
    log lines; the README's jq example must read past it (and past any
    other non-JSON line) with both compose versions."""
    if shutil.which("jq") is None:
        pytest.skip("needs jq")
    readme = (ROOT / "README.md").read_text()
    line = next(l for l in readme.splitlines() if "| jq" in l and "compose logs" in l)
    command = line.split("#")[0].strip()
    pipeline = command.split("|", 1)[1]  # everything after `docker compose logs ...`
    logs = "\n".join([
        "Attaching to mvds_c_1",
        json.dumps({"event": "node.started", "level": "info"}),
        json.dumps({"event": "peer.reachable", "peer": "a"}),
    ]) + "\n"
    for output in (logs, logs.split("\n", 1)[1]):  # 1.29, then v2 (no attach line)
        result = subprocess.run(["sh", "-c", pipeline], input=output, capture_output=True,
                                text=True, timeout=30)
        assert result.returncode == 0, result.stderr
        assert [json.loads(l) for l in result.stdout.splitlines()] == [
            {"event": "peer.reachable", "peer": "a"}
        ]


def test_links_at_addresses_and_a_links_file_for_the_testbed(tmp_path):
    """`mvds testbed run --compose` names each neighbour's address per link
    (NEIGHBOUR@HOST) and points the daemon at its links file."""
    from mvds.daemon.config import load_config
    from mvds.daemon.setup import init_node_dir

    bindir = tmp_path / "bin"
    bindir.mkdir()
    python3 = bindir / "python3"  # the image's python3 has mvds; the host's may not
    python3.write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    python3.chmod(0o755)
    _, other = init_node_dir(tmp_path / "other")
    (tmp_path / "peers").mkdir()
    (tmp_path / "peers" / "b").write_text(other.peer_id_hex + "\n")
    entrypoint(tmp_path, {"MVDS_LINKS": "b@10.210.0.3", "MVDS_LINKS_FILE": "/data/links.toml"})
    config = load_config(tmp_path / "data" / "mvds.toml")
    assert config.links == "/data/links.toml"
    assert [(p.name, p.id, p.address, p.groups) for p in config.peers] == [
        ("b", other.peer_id_hex, "10.210.0.3:7400", ["chat"])]
