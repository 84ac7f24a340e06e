"""`mvds invite` / `mvds accept` between real daemons made by `mvds init` on
loopback: expired, tampered and mistyped codes, a stopped daemon, a restart."""

from __future__ import annotations

import json

import pytest

from mvds.daemon.pairing import decode_code, encode_code
from procs import Daemon, cli, stop_all, wait_until
from walkthroughs import free_udp_ports

REFUSED = "the inviting node refused or did not answer: the code may be expired or used"


@pytest.fixture
def two(tmp_path):
    daemons = []
    for name, port in zip(("carol", "dave"), free_udp_ports(2)):  # fixed: carol restarts
        cli("init", str(tmp_path / name), "--listen", f"127.0.0.1:{port}", check=True)
        daemons.append(Daemon(tmp_path / name).start())
    yield daemons
    stop_all(daemons)


def config_text(daemon) -> str:
    return (daemon.path / "mvds.toml").read_text()


def log_events(daemon) -> list[dict]:
    out = []
    for line in (daemon.path / "daemon.log").read_text().splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            pass
    return out


def test_pairing_survives_an_inviter_restart_and_messages_flow_both_ways(two):
    carol, dave = two
    code = cli("invite", str(carol.path), "--group", "chat", "--json", check=True).stdout
    code = json.loads(code)["code"]
    carol.stop()
    carol.start()  # the invite is in DIR/invites.json: still offered
    got = cli("accept", str(dave.path), code, "--json", "--timeout", "15s", check=True)
    result = json.loads(got.stdout)
    assert result["groups"] == ["chat"] and result["peer"].startswith("peer-")
    cli("send", str(carol.path), "chat", "to dave", "--wait-ack", "--ack-timeout", "15", check=True)
    cli("send", str(dave.path), "chat", "to carol", "--wait-ack", "--ack-timeout", "15", check=True)
    assert "to carol" in cli("tail", str(carol.path), check=True).stdout
    assert "to dave" in cli("tail", str(dave.path), check=True).stdout
    assert any(e.get("event") == "invite.used" for e in log_events(carol))


def test_an_expired_code_is_refused_with_one_line(two):
    carol, dave = two
    code = cli("invite", str(carol.path), "--group", "chat", "--expires", "1s", check=True).stdout.strip()
    wait_until(lambda: any(e.get("event") == "invite.expired" for e in log_events(carol)), 10,
               what="invite.expired in the inviter's log")
    result = cli("accept", str(dave.path), code, "--timeout", "3s")
    assert result.returncode == 1
    assert REFUSED in result.stderr and "expired" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "[[peers]]" not in config_text(carol) and "[[peers]]" not in config_text(dave)
    assert carol.status()["invites"] == {"pending": 0, "used": 0, "expired": 1}


def test_a_wrong_secret_is_refused_and_a_typo_is_caught_by_the_checksum(two):
    carol, dave = two
    code = cli("invite", str(carol.path), "--group", "chat", check=True).stdout.strip()
    fields = decode_code(code)
    forged = encode_code(type(fields)(fields.peer_id, bytes(16), fields.slot, fields.expires,
                                      fields.addresses, fields.groups))
    result = cli("accept", str(dave.path), forged, "--timeout", "3s")
    assert result.returncode == 1 and REFUSED in result.stderr
    assert "[[peers]]" not in config_text(carol) and "[[peers]]" not in config_text(dave)
    typo = code[:20] + ("b" if code[20] != "b" else "c") + code[21:]
    result = cli("accept", str(dave.path), typo)
    assert result.returncode == 1
    assert result.stderr.strip() == "mvds: the invite code is mistyped or incomplete (its checksum does not match)"
    # The real code still works after both.
    cli("accept", str(dave.path), code, "--timeout", "15s", check=True)


def test_invite_needs_the_running_daemon(tmp_path):
    cli("init", str(tmp_path / "x"), "--listen", "127.0.0.1:0", check=True)
    result = cli("invite", str(tmp_path / "x"))
    assert result.returncode == 1
    assert "mvds invite needs the running daemon: start it with: mvds run" in result.stderr
