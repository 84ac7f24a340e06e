"""Sessions between real `mvds run` processes (issue 14's "done when" list).

Time is compressed through settings (``keepalive_s`` of a fraction of a
second, 50 ms epochs); scripts/sessions_long.py runs the same scenarios
at full length.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import sys
import time
from pathlib import Path

import pytest

from mvds.daemon.config import PeerConfig, load_config, save_config
from mvds.daemon.setup import init_node_dir
from procs import Daemon, stop_all, wait_until
from udpproxy import UdpProxy, transport_nonce_repeats

SCALE = float(os.environ.get("MVDS_SESSION_TEST_SCALE", "1"))
"""Stretches the compressed times: scripts/sessions_long.py runs these tests
at full length (keepalive_s 15 s, resolve_interval_s 30 s, 5 minutes)."""


def _nodes(base: Path, names=("a", "b"), **settings) -> dict[str, Path]:
    paths = {}
    for name in names:
        path = base / name
        init_node_dir(path)
        config = load_config(path / "mvds.toml")
        config.groups = ["chat"]
        for key, value in settings.items():
            setattr(config, key, value)
        save_config(path / "mvds.toml", config)
        paths[name] = path
    return paths


def _peer(path: Path, name: str, other: Path, address: str | None = None) -> None:
    """``path`` trusts ``other`` as ``name`` at ``address`` (default: its listen address)."""
    config = load_config(path / "mvds.toml")
    other_config = load_config(other / "mvds.toml")
    other_id = (other / "identity.key")
    from mvds.secure import Identity

    peer_id = Identity.load(other_id).peer_id_hex
    config.peers = [p for p in config.peers if p.name != name]
    config.peers.append(PeerConfig(name, peer_id, address or other_config.listen, ["chat"]))
    save_config(path / "mvds.toml", config)


def _listen(path: Path) -> tuple[str, int]:
    host, port = load_config(path / "mvds.toml").listen.rsplit(":", 1)
    return host, int(port)


def _events(daemon: Daemon, event: str) -> list[dict]:
    out = []
    for line in (daemon.path / "daemon.log").read_text(errors="replace").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("event") == event:
            out.append(entry)
    return out


def _peer_status(daemon: Daemon, name: str) -> dict:
    return next(p for p in daemon.status()["peers"] if p["name"] == name)


def _has(daemon: Daemon, message_id: str) -> bool:
    with daemon.client() as client:
        for event in client.stream("subscribe", since=0):
            if event.get("event") == "caught_up":
                return False
            if event["message"]["id"] == message_id:
                return True
    return False


def _send(daemon: Daemon, text: str) -> str:
    return daemon.request("append", group="chat", text=text)["message_id"]


# -- keepalives and reachability --------------------------------------------------------


def test_idle_nodes_stay_reachable_and_a_stopped_one_is_reported(tmp_path):
    keepalive = 0.8 * SCALE  # a window of 2.4 s: a loaded test machine's stalls do not flap it
    paths = _nodes(tmp_path, keepalive_s=keepalive)
    _peer(paths["a"], "b", paths["b"])
    _peer(paths["b"], "a", paths["a"])
    a, b = Daemon(paths["a"]).start(), Daemon(paths["b"]).start()
    try:
        wait_until(lambda: _peer_status(a, "b")["reachable"] and _peer_status(b, "a")["reachable"],
                   10, what="the two to be reachable")
        # Idle for 12 keepalive periods (20, 5 minutes, at full length): still reachable.
        deadline = time.monotonic() + (12 if SCALE == 1 else 20) * keepalive
        while time.monotonic() < deadline:
            for daemon, other in ((a, "b"), (b, "a")):
                peer = _peer_status(daemon, other)
                assert peer["reachable"], peer
                assert peer["session"]["path"]["state"] in ("configured", "validated")
            time.sleep(keepalive / 2)
        assert not _events(a, "peer.unreachable")
        status = _peer_status(a, "b")
        assert status["session"]["established"] and status["session"]["keepalive"]
        assert status["last_heard_s"] < 3 * keepalive

        b.process.send_signal(signal.SIGSTOP)
        stopped = time.monotonic()
        # Documented: unreachable once nothing was heard for 3 x keepalive_s.
        wait_until(lambda: _events(a, "peer.unreachable"), 10, 0.05, what="peer.unreachable")
        took = time.monotonic() - stopped
        assert took <= 3 * keepalive + 1.0, took
        assert not _peer_status(a, "b")["reachable"]
        reachable_before = len(_events(a, "peer.reachable"))
        b.process.send_signal(signal.SIGCONT)
        wait_until(lambda: len(_events(a, "peer.reachable")) > reachable_before, 15, 0.05,
                   what="peer.reachable after SIGCONT")
        assert _peer_status(a, "b")["reachable"]
        metrics_line = f'mvds_peer_reachable{{peer="b"}} 1'
        from mvds.daemon.metrics import render_metrics

        assert metrics_line in render_metrics(a.status())
    finally:
        if b.alive:
            b.process.send_signal(signal.SIGCONT)
        stop_all([a, b])


# -- a forged source cannot redirect or amplify ----------------------------------------------


def test_a_replayed_unseen_datagram_from_a_forged_source_gains_at_most_3x(tmp_path):
    paths = _nodes(tmp_path, keepalive_s=1.0, epoch_ms=50)
    proxy = UdpProxy(_listen(paths["a"]), _listen(paths["b"]))
    _peer(paths["a"], "b", paths["b"], proxy.address_for_a)
    _peer(paths["b"], "a", paths["a"], proxy.address_for_b)
    a, b = Daemon(paths["a"]).start(), Daemon(paths["b"]).start()
    forged = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    forged.bind(("127.0.0.1", 0))
    forged.setblocking(False)
    try:
        first = _send(b, "before")
        wait_until(lambda: _has(a, first), 15, what="the session and a first message")
        # The next B->A data datagram is "lost after a tap": held by the proxy.
        proxy.hold = lambda direction, data: direction == "b->a" and data[0] == 0x06 and len(data) > 100
        lost = _send(b, "tapped")
        wait_until(lambda: proxy.held, 10, what="a datagram held back")
        proxy.hold = None
        (_, datagram), = proxy.held[:1]
        # A copy sent to A from a forged source, before A ever saw it.
        forged.sendto(datagram, _listen(paths["a"]))
        received = 0
        backlog = [_send(b, f"after {i}" * 40) for i in range(30)]  # traffic A might redirect
        deadline = time.monotonic() + 4
        while time.monotonic() < deadline:
            try:
                received += len(forged.recv(65535))
            except BlockingIOError:
                time.sleep(0.02)
        assert received <= 3 * len(datagram), (received, len(datagram))
        peer = _peer_status(a, "b")
        assert peer["session"]["path"]["address"] == proxy.address_for_a
        # Sync with the real peer is unaffected: everything arrives.
        wait_until(lambda: all(_has(a, m) for m in [lost, *backlog]), 20, what="the backlog at A")
        assert not _events(a, "peer.address_changed")
    finally:
        forged.close()
        stop_all([a, b])
        proxy.close()


# -- restore, clock behind, copied directory: no (key, nonce) twice ----------------------------


def _clock_env(tmp_path: Path, offset: float) -> dict[str, str]:
    """Run a daemon with its wall clock moved by ``offset`` seconds (time.time
    only; the monotonic clock is untouched), through a sitecustomize hook."""
    hook = tmp_path / "clockhook"
    hook.mkdir(exist_ok=True)
    (hook / "sitecustomize.py").write_text(
        "import os, time\n"
        "_real = time.time\n"
        "_path = os.environ.get('MVDS_FAKE_CLOCK_FILE')\n"
        "def _shifted():\n"
        "    try:\n"
        "        with open(_path) as f:\n"
        "            return _real() + float(f.read().strip() or 0)\n"
        "    except OSError:\n"
        "        return _real()\n"
        "if _path:\n"
        "    time.time = _shifted\n"
        "    time.time_ns = lambda: int(_shifted() * 1e9)\n"
    )
    clock = tmp_path / f"clock-{os.getpid()}-{time.monotonic_ns()}"
    clock.write_text(str(offset))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(hook), env.get("PYTHONPATH", "")])
    env["MVDS_FAKE_CLOCK_FILE"] = str(clock)
    return env, clock


class ClockDaemon(Daemon):
    def __init__(self, path: Path, env: dict[str, str]) -> None:
        super().__init__(path)
        self.env = env

    def start(self, timeout: float = 20.0) -> "Daemon":
        import subprocess

        real = subprocess.Popen

        def popen(*args, **kwargs):
            kwargs["env"] = self.env
            return real(*args, **kwargs)

        subprocess.Popen = popen
        try:
            return super().start(timeout)
        finally:
            subprocess.Popen = real


def test_restore_with_the_clock_behind_and_a_copied_directory_reuse_no_nonce(tmp_path):
    paths = _nodes(tmp_path, keepalive_s=1.0, epoch_ms=50)
    proxy = UdpProxy(_listen(paths["a"]), _listen(paths["b"]))
    _peer(paths["a"], "b", paths["b"], proxy.address_for_a)
    _peer(paths["b"], "a", paths["a"], proxy.address_for_b)
    b = Daemon(paths["b"]).start()
    daemons = [b]
    try:
        a = Daemon(paths["a"]).start()
        daemons.append(a)
        ids = [_send(a, f"first run {i}") for i in range(10)]
        wait_until(lambda: all(_has(b, m) for m in ids), 15, what="first run synced")
        a.stop()
        backup = tmp_path / "backup"
        shutil.copytree(paths["a"], backup, ignore=shutil.ignore_patterns("mvds.sock", "mvds.lock"))

        env, _ = _clock_env(tmp_path, -86_400)  # a day behind
        a = ClockDaemon(paths["a"], env).start()
        daemons.append(a)
        ids = [_send(a, f"clock behind {i}") for i in range(30)]
        wait_until(lambda: all(_has(b, m) for m in ids), 20, what="the clock-behind run synced")
        a.stop()

        shutil.rmtree(paths["a"])  # restore the backup
        shutil.copytree(backup, paths["a"])
        a = Daemon(paths["a"]).start()
        daemons.append(a)
        ids = [_send(a, f"restored {i}") for i in range(30)]
        wait_until(lambda: all(_has(b, m) for m in ids), 20, what="the restored run synced")

        # The directory copied and run a second time, at once (its own port).
        clone = tmp_path / "clone"
        shutil.copytree(paths["a"], clone, ignore=shutil.ignore_patterns("mvds.sock", "mvds.lock"))
        config = load_config(clone / "mvds.toml")
        config.listen = "127.0.0.1:0"
        save_config(clone / "mvds.toml", config)
        twin = Daemon(clone).start()
        daemons.append(twin)
        for i in range(20):
            _send(a, f"original {i}")
            _send(twin, f"twin {i}")
        time.sleep(3)
    finally:
        stop_all(daemons)
        proxy.close()
    transport = [r for r in proxy.records if r[1][:1] == b"\x06"]
    assert len(transport) > 100
    assert transport_nonce_repeats(proxy.records) == []


# -- wall-clock jumps delay no retransmission ---------------------------------------------------


@pytest.mark.parametrize("jump", [-3600, 3600], ids=["back", "forward"])
def test_a_clock_jump_while_running_delays_no_retransmission(tmp_path, jump):
    epoch = 0.05
    paths = _nodes(tmp_path, keepalive_s=1.0, epoch_ms=int(epoch * 1000))
    proxy = UdpProxy(_listen(paths["a"]), _listen(paths["b"]))
    _peer(paths["a"], "b", paths["b"], proxy.address_for_a)
    _peer(paths["b"], "a", paths["a"], proxy.address_for_b)
    env, clock = _clock_env(tmp_path, 0)
    a = ClockDaemon(paths["a"], env).start()
    b = Daemon(paths["b"]).start()
    try:
        first = _send(a, "hello")
        wait_until(lambda: _has(b, first), 15, what="a first message")
        # A's data datagrams to B are lost for a while: the record backs off.
        proxy.hold = lambda direction, data: direction == "a->b" and data[0] == 0x06 and len(data) > 100
        lost = _send(a, "lost at first")
        wait_until(lambda: len(proxy.held) >= 3, 10, what="a few lost sends")
        clock.write_text(str(jump))  # the wall clock jumps by an hour
        time.sleep(0.3)
        proxy.hold = None
        healed = time.monotonic()
        wait_until(lambda: _has(b, lost), 30, 0.05, what="the retransmission")
        took = time.monotonic() - healed
        # The record waits at most online_backoff (8 epochs) + the RTO ceiling
        # once the peer is heard; an hour's jump would stall it for an hour.
        assert took < 3.0, took
    finally:
        stop_all([a, b])
        proxy.close()


def test_a_restart_with_the_clock_an_hour_behind_resumes_at_once(tmp_path):
    paths = _nodes(tmp_path, keepalive_s=1.0, epoch_ms=300, backoff_max_epochs=64)
    proxy = UdpProxy(_listen(paths["a"]), _listen(paths["b"]))
    _peer(paths["a"], "b", paths["b"], proxy.address_for_a)
    _peer(paths["b"], "a", paths["a"], proxy.address_for_b)
    a = Daemon(paths["a"]).start()
    b = Daemon(paths["b"]).start()
    try:
        first = _send(a, "hello")
        wait_until(lambda: _has(b, first), 15, what="a first message")
        proxy.hold = lambda direction, data: direction == "a->b" and data[0] == 0x06 and len(data) > 100
        lost = _send(a, "in flight across the restart")
        wait_until(lambda: len(proxy.held) >= 2, 10, what="sends lost")
        a.stop()
        proxy.hold = None
        env, _ = _clock_env(tmp_path, -3600)
        a = ClockDaemon(paths["a"], env).start()
        restarted = time.monotonic()
        wait_until(lambda: _has(b, lost), 30, 0.05, what="the record resumed")
        assert time.monotonic() - restarted < 5.0
        assert a.status()["engine"].get("resumed_early", 0) >= 1
    finally:
        stop_all([a, b])
        proxy.close()


# -- a moved peer is not forgotten ------------------------------------------------------------


def test_a_peer_that_moved_port_keeps_getting_one_way_traffic(tmp_path):
    interval = 0.5 * SCALE
    paths = _nodes(tmp_path, keepalive_s=1.0 * SCALE, epoch_ms=50, resolve_interval_s=interval)
    _peer(paths["a"], "b", paths["b"])
    _peer(paths["b"], "a", paths["a"])
    a, b = Daemon(paths["a"]).start(), Daemon(paths["b"]).start()
    daemons = [a, b]
    try:
        first = _send(a, "before the move")
        wait_until(lambda: _has(b, first), 15, what="a first message")
        b.stop()
        config = load_config(paths["b"] / "mvds.toml")
        old = config.listen
        config.listen = "127.0.0.1:0"  # B comes back on another port; A's config still names the old one
        save_config(paths["b"] / "mvds.toml", config)
        b = Daemon(paths["b"]).start()
        daemons.append(b)
        new = b.status()["listen"]
        assert new != old
        wait_until(lambda: _peer_status(a, "b")["session"]["path"] == {"address": new, "state": "validated"},
                   15, what="A to validate B's new address")
        # One-way traffic A -> B for 12 re-resolution intervals (6 minutes at
        # full length): nothing is lost.
        sent = []
        deadline = time.monotonic() + 12 * interval
        while time.monotonic() < deadline:
            sent.append(_send(a, f"after the move {len(sent)}"))
            time.sleep(0.1)
        wait_until(lambda: all(_has(b, m) for m in sent), 20, what="every message after the move")
        assert _peer_status(a, "b")["session"]["path"]["address"] == new
    finally:
        stop_all(daemons)


# -- a spoofed handshake flood --------------------------------------------------------------------


def _cpu_and_rss(pid: int) -> tuple[float, int]:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    cpu = (int(fields[11]) + int(fields[12])) / ticks
    rss = int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
    return cpu, rss


def test_a_handshake_flood_at_ten_times_the_per_source_limit(tmp_path):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from interop import docpeer
    from mvds.secure.cookie import PER_SOURCE_BURST, PER_SOURCE_HPS

    paths = _nodes(tmp_path, keepalive_s=1.0, epoch_ms=50)
    _peer(paths["a"], "b", paths["b"])
    _peer(paths["b"], "a", paths["a"])
    a, b = Daemon(paths["a"]).start(), Daemon(paths["b"]).start()
    flood = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        first = _send(b, "before")
        wait_until(lambda: _has(a, first), 15, what="a first message")
        a_id = bytes.fromhex(a.status()["peer_id"])
        # Initiations that pass mac1 (anyone knows a peer id) from sources A never trusted.
        initiations = [docpeer.DocSession(docpeer.DocIdentity.generate(), a_id).initiation() for _ in range(50)]
        rate = int(10 * PER_SOURCE_HPS)
        cpu_before, rss_before = _cpu_and_rss(a.process.pid)
        started = time.monotonic()
        sent, synced = 0, []
        while time.monotonic() - started < 5.0:
            flood.sendto(initiations[sent % len(initiations)], _listen(paths["a"]))
            sent += 1
            if sent % rate == 0:
                synced.append(_send(b, f"during the flood {sent}"))
            time.sleep(max(0.0, started + sent / rate - time.monotonic()))
        elapsed = time.monotonic() - started
        wait_until(lambda: all(_has(a, m) for m in synced), 15, what="honest sync during the flood")
        cpu_after, rss_after = _cpu_and_rss(a.process.pid)
        sessions = a.status()["sessions"]
        refused = sessions.get("rate_limited", 0) + sessions.get("cookie_sent", 0)
        # At most the per-source rate (plus its burst) reached the DH.
        assert sessions.get("unknown_peer", 0) <= PER_SOURCE_HPS * elapsed + PER_SOURCE_BURST + 5, sessions
        assert refused >= sent // 2, (sent, sessions)
        assert cpu_after - cpu_before < 0.5 * elapsed, (cpu_after - cpu_before, elapsed)
        assert rss_after - rss_before < 20 * 1024 * 1024
        assert a.alive and a.request("ping")["ok"]
    finally:
        flood.close()
        stop_all([a, b])


# -- a full disk: the daemon keeps running and syncs again by itself ----------------------------


def test_a_full_file_system_under_a_syncing_daemon(small_fs, tmp_path):
    """A on a tmpfs filled to 100% while B keeps sending: A keeps running
    and its session alive (nothing on the send path writes to disk),
    refuses appends with the clear error, ACKs nothing it could not store,
    and once space is freed it stores B's retransmissions by itself."""
    keepalive = 0.5 * SCALE
    a_dir = small_fs / "a"
    init_node_dir(a_dir)
    b_dir = _nodes(tmp_path, ("b",), keepalive_s=keepalive, epoch_ms=50)["b"]
    config = load_config(a_dir / "mvds.toml")
    config.groups, config.keepalive_s, config.epoch_ms = ["chat"], keepalive, 50
    save_config(a_dir / "mvds.toml", config)
    _peer(a_dir, "b", b_dir)
    _peer(b_dir, "a", a_dir)
    import subprocess

    from procs import MVDS

    with open(tmp_path / "a.log", "wb") as log:  # the log outside the full file system
        process = subprocess.Popen([*MVDS, "run", str(a_dir), "--log-format", "json"],
                                   stdout=log, stderr=subprocess.STDOUT)
    a = Daemon(a_dir)
    a.process = process
    b = Daemon(b_dir).start()
    filler = small_fs / "filler"
    try:
        wait_until(lambda: _pings(a), 20, what="A to start")
        first = _send(b, "before")
        wait_until(lambda: _has(a, first), 15, what="a first message")
        free = os.statvfs(small_fs).f_bavail * os.statvfs(small_fs).f_frsize
        fd = os.open(filler, os.O_WRONLY | os.O_CREAT)  # to 100%
        try:
            for chunk in (free, 65536, 4096, 512, 1):
                try:
                    while os.write(fd, b"\0" * chunk):
                        pass
                except OSError:
                    pass
        finally:
            os.close(fd)
        assert os.statvfs(small_fs).f_bavail == 0
        error = None
        for i in range(50):
            try:
                a.request("append_many", group="chat", texts=[f"{i}-{j}" * 300 for j in range(10)])
            except Exception as exc:  # ControlError
                error = str(exc)
                break
        assert error is not None and "not stored" in error and "disk full" in error, error
        sent = [_send(b, f"while full {i}" * 50) for i in range(20)]
        # Full for a while (5 minutes at full length): A stays up and reachable.
        deadline = time.monotonic() + (10 if SCALE == 1 else 32) * keepalive
        while time.monotonic() < deadline:
            assert a.alive and a.request("ping")["ok"]
            assert _peer_status(b, "a")["reachable"], "A's keepalives stopped"
            time.sleep(keepalive)
        # B got no ACK for what A could not store.
        assert sum(_peer_status(b, "a")["pending"].values()) >= len(sent)
        filler.unlink()  # space again: A syncs by itself
        wait_until(lambda: all(_has(a, m) for m in sent), 30, what="B's messages stored after the disk freed")
        wait_until(lambda: sum(_peer_status(b, "a")["pending"].values()) == 0, 30, what="B's records settled")
        assert a.alive
    finally:
        filler.unlink(missing_ok=True)
        stop_all([a, b])


def _pings(daemon: Daemon) -> bool:
    if not daemon.alive:
        raise AssertionError(f"the daemon exited: {daemon.log_tail()}")
    try:
        return bool(daemon.request("ping")["ok"])
    except Exception:
        return False


# -- forward secrecy, on traffic recorded between two daemons --------------------------------------


def _attack(init: bytes, resp: bytes, responder_private: bytes, initiator_private: bytes, ee: bytes):
    """Run the responder's side of the handshake the way an attacker holding
    both static private keys can, with ``ee`` standing in for the
    ephemeral-ephemeral DH it cannot compute.  Returns (timestamp, keys)
    where keys is None when the response's tag rejects the guess."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

    from interop import docpeer

    def dh(private: bytes, public: bytes) -> bytes:
        return X25519PrivateKey.from_private_bytes(private).exchange(X25519PublicKey.from_public_bytes(public))

    responder = docpeer.DocIdentity(responder_private)
    state = docpeer._Symmetric(responder.public)
    e_i = init[8:40]
    state.mix_hash(e_i)
    state.mix_key(e_i)
    state.mix_key(dh(responder_private, e_i))  # es
    static = state.decrypt_and_hash(init[40:88])
    state.mix_key(dh(responder_private, static))  # ss
    timestamp = state.decrypt_and_hash(init[88:117])[:12]  # readable, as documented
    e_r = resp[12:44]
    state.mix_hash(e_r)
    state.mix_key(e_r)
    state.mix_key(ee)  # the one DH no static key gives
    state.mix_key(dh(initiator_private, e_r))  # se
    state.mix_key_and_hash(bytes(32))
    try:
        state.decrypt_and_hash(resp[44:60])
    except docpeer.DocPeerError:
        return timestamp, None
    return timestamp, state.split()


def test_recorded_daemon_traffic_cannot_be_opened_with_both_static_keys(tmp_path):
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
    from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

    from interop.docvectors import doc_vectors, session_vectors
    from mvds.secure import Identity
    from mvds.secure.keys import direction_key

    def dh(private: bytes, public: bytes) -> bytes:
        return X25519PrivateKey.from_private_bytes(private).exchange(X25519PublicKey.from_public_bytes(public))

    def opens(key: bytes, datagram: bytes) -> bool:
        try:
            ChaCha20Poly1305(key).decrypt(bytes(4) + datagram[8:16], datagram[16:], datagram[:16])
            return True
        except InvalidTag:
            return False

    # The attack is right: with the ephemeral key it opens the documented traffic.
    S = session_vectors()
    base = doc_vectors()
    _, keys = _attack(S["initiation_alice_to_bob"], S["response_bob_to_alice"], base["bob_private"],
                      base["alice_private"], dh(S["alice_ephemeral_private"], S["response_bob_to_alice"][12:44]))
    assert keys is not None and opens(keys[0], S["transport_alice_to_bob"])

    paths = _nodes(tmp_path, keepalive_s=1.0, epoch_ms=50)
    proxy = UdpProxy(_listen(paths["a"]), _listen(paths["b"]))
    _peer(paths["a"], "b", paths["b"], proxy.address_for_a)
    _peer(paths["b"], "a", paths["a"], proxy.address_for_b)
    a, b = Daemon(paths["a"]).start(), Daemon(paths["b"]).start()
    try:
        to_b = [_send(a, f"secret {i}") for i in range(5)]
        to_a = [_send(b, f"reply {i}") for i in range(5)]
        wait_until(lambda: all(_has(b, m) for m in to_b) and all(_has(a, m) for m in to_a), 15,
                   what="the exchange")
    finally:
        stop_all([a, b])
        proxy.close()
    # The attacker now has every recorded datagram and both static private keys.
    private = {name: (paths[name] / "identity.key") for name in "ab"}
    keys_of = {name: Identity.load(private[name]) for name in "ab"}
    raw = {name: keys_of[name]._private.private_bytes_raw() for name in "ab"}
    inits = [(d, data) for d, data in proxy.records if data[:1] == b"\x03"]
    resps = [(d, data) for d, data in proxy.records if data[:1] == b"\x04"]
    transport = [data for _, data in proxy.records if data[:1] == b"\x06" and len(data) > 32]
    assert inits and resps and transport
    shared = keys_of["a"].shared_secret(keys_of["b"].peer_id)
    static_keys = [direction_key(shared, keys_of[x].peer_id, keys_of[y].peer_id) for x, y in ("ab", "ba")]
    opened = handshakes = 0
    for direction, init in inits:
        initiator, responder = ("a", "b") if direction == "a->b" else ("b", "a")
        for _, resp in resps:
            if resp[8:12] != init[4:8]:
                continue
            handshakes += 1
            e_i, e_r = init[8:40], resp[12:44]
            guesses = [dh(raw[responder], e_i), dh(raw[initiator], e_r), dh(raw[responder], e_r),
                       dh(raw[initiator], e_i), bytes(32)]
            for ee in guesses:
                timestamp, keys = _attack(init, resp, raw[responder], raw[initiator], ee)
                assert len(timestamp) == 12  # the initiation's timestamp is readable (documented)
                if keys is not None:
                    opened += sum(opens(k, d) for k in keys for d in transport)
    opened += sum(opens(k, d) for k in static_keys for d in transport)
    assert handshakes >= 1 and len(transport) >= 10
    assert opened == 0


