"""Hostile peers and hostile local clients against a real `mvds run` process.

One daemon N under attack, one honest daemon H syncing with it over real
UDP, and M, a peer N trusts with the group "chat" (not "secret"),
played by tests/interop/docpeer.py (written from docs/PROTOCOL.md alone,
so it can craft any datagram with a real key).  Each attack asserts:

* a clear counter (status ``drops`` or ``engine``) and, where the daemon
  logs it, the log line;
* no state change where none is due (nothing stored, no reply);
* that H and N keep syncing meanwhile (a message each way).

N runs with small limits (max_requests 300, control_max_clients 4,
control_max_line 64 KiB, peer_max_bytes_per_s 1 MiB) so that the bounds
are reached quickly.
"""

from __future__ import annotations

import json
import os
import random
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from interop import docpeer
from mvds.daemon.config import PeerConfig, load_config, save_config
from mvds.daemon.control_client import ControlClient
from mvds.daemon.setup import init_node_dir
from procs import Daemon, cli, stop_all, wait_until

INT64_MAX = 2**63 - 1
INT64_MIN = -(2**63)
CHAT = docpeer.group_id("chat")
SECRET = docpeer.group_id("secret")
MAX_REQUESTS = 300
MAX_CLIENTS = 4
MAX_LINE = 65536
PEER_BUDGET = 1024 * 1024


class Net:
    """The daemons, M's socket and keys, and helpers to watch N."""

    def __init__(self, base: Path) -> None:
        self.base = base
        n_dir, h_dir = base / "N", base / "H"
        _, n_identity = init_node_dir(n_dir)
        _, h_identity = init_node_dir(h_dir)
        self.n_id = n_identity.peer_id
        self.m = docpeer.DocIdentity.generate()
        self.m_sock = docpeer.DocPeer(self.m)
        self.link = docpeer.DocLink(self.m, self.n_id)
        self.stranger = docpeer.DocIdentity.generate()
        self.stranger_sock = docpeer.DocPeer(self.stranger)

        n_config = load_config(n_dir / "mvds.toml")
        h_config = load_config(h_dir / "mvds.toml")
        n_config.groups = ["chat", "secret"]
        n_config.max_requests = MAX_REQUESTS
        n_config.control_max_clients = MAX_CLIENTS
        n_config.control_max_line = MAX_LINE
        n_config.peer_max_bytes_per_s = PEER_BUDGET
        n_config.peers = [
            PeerConfig("h", h_identity.peer_id_hex, h_config.listen, ["chat", "secret"]),
            PeerConfig("m", self.m.public.hex(), "%s:%d" % self.m_sock.address, ["chat"]),
        ]
        h_config.groups = ["chat", "secret"]
        h_config.peers = [PeerConfig("n", n_identity.peer_id_hex, n_config.listen, ["chat", "secret"])]
        save_config(n_dir / "mvds.toml", n_config)
        save_config(h_dir / "mvds.toml", h_config)
        host, port = n_config.listen.rsplit(":", 1)
        self.n_address = (host, int(port))
        self.n = Daemon(n_dir).start()
        self.h = Daemon(h_dir).start()
        self.honest_round = 0

    def close(self) -> None:
        stop_all([self.n, self.h])
        self.m_sock.close()
        self.stranger_sock.close()

    # -- watching N ------------------------------------------------------------
    def status(self) -> dict:
        return self.n.status()

    def counts(self) -> dict[str, int]:
        """N's drop and engine counters in one flat dict."""
        status = self.status()
        return {**status["drops"], **status["engine"], "stored": status["messages_stored"]}

    def wait_counts(self, before: dict[str, int], **expected: int) -> dict[str, int]:
        """Wait until each named counter grew by exactly its expected amount."""

        def reached():
            now = self.counts()
            return now if all(now.get(k, 0) - before.get(k, 0) >= v for k, v in expected.items()) else None

        now = wait_until(reached, 10, 0.05, what=f"counters {expected}")
        time.sleep(0.2)  # nothing more than expected arrives late
        now = self.counts()
        for key, value in expected.items():
            assert now.get(key, 0) - before.get(key, 0) == value, (key, before.get(key), now.get(key))
        return now

    def logged(self, event: str, **fields) -> bool:
        for line in (self.n.path / "daemon.log").read_text(errors="replace").splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if entry.get("event") == event and all(entry.get(k) == v for k, v in fields.items()):
                return True
        return False

    def history(self, daemon: Daemon) -> list[dict]:
        with daemon.client() as client:
            out = []
            for event in client.stream("subscribe", since=0):
                if event.get("event") == "caught_up":
                    return out
                out.append(event["message"])
        return out

    def assert_honest_sync(self) -> None:
        """H and N still exchange messages both ways, whatever M does."""
        self.honest_round += 1
        to_n = self.h.request("append", group="chat", text=f"h->n {self.honest_round}")["message_id"]
        to_h = self.n.request("append", group="chat", text=f"n->h {self.honest_round}")["message_id"]
        wait_until(lambda: to_n in {m["id"] for m in self.history(self.n)}, 10, what="H's message at N")
        wait_until(lambda: to_h in {m["id"] for m in self.history(self.h)}, 10, what="N's message at H")

    # -- M, the hostile peer ---------------------------------------------------------
    def m_send(self, payload: docpeer.DocPayload | bytes) -> bytes:
        return self.m_sock.send(self.link, self.n_address, payload)

    def m_raw(self, datagram: bytes) -> None:
        self.m_sock.sock.sendto(datagram, self.n_address)

    def m_collect(self, seconds: float, ack: bool = True) -> list[docpeer.DocPayload]:
        """Every payload N sends M for ``seconds``; M ACKs messages like an
        honest peer (so N's retransmissions to M do not blur the counts)."""
        out = []
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            try:
                _, payload = self.m_sock.receive({self.n_id: self.link}, timeout=left)
            except TimeoutError:
                break
            out.append(payload)
            if ack and payload.messages:
                self.m_send(docpeer.DocPayload(acks=[m.id for m in payload.messages if not m.ephemeral]))
        return out


@pytest.fixture(scope="module")
def net(tmp_path_factory):
    network = Net(tmp_path_factory.mktemp("adversarial"))
    try:
        network.m_collect(0.5)  # N's hello and its first records
        yield network
    finally:
        network.close()


def _message(text: str, group: bytes = CHAT, timestamp: int = 1_764_000_000, **kw) -> docpeer.DocMessage:
    return docpeer.DocMessage(group, timestamp, text.encode(), **kw)


def test_datagrams_from_unknown_senders_are_dropped_unanswered(net):
    before = net.counts()
    link = docpeer.DocLink(net.stranger, net.n_id)  # a correct envelope, but N never trusted it
    message = _message("from a stranger")
    net.stranger_sock.send(link, net.n_address, docpeer.DocPayload(messages=[message]))
    net.wait_counts(before, unknown_peer=1)
    assert net.counts()["stored"] == before["stored"]
    with pytest.raises(TimeoutError):  # no reply: N is no reflector
        net.stranger_sock.receive({net.n_id: link}, timeout=0.5)
    assert net.logged("datagram.dropped", reason="unknown_peer")
    net.assert_honest_sync()


def test_forged_sender_keys_fail_authentication(net):
    before = net.counts()
    message = _message("forged")
    payload = docpeer.encode_payload(docpeer.DocPayload(messages=[message]))
    # The stranger writes M's id into the header but can only seal with its own key.
    forged = bytearray(docpeer.DocLink(net.stranger, net.n_id).seal(payload))
    forged[1:33] = net.m.public
    net.m_raw(bytes(forged))
    # M's own datagram, but sealed for H: the key binds the receiver.
    h_id = bytes.fromhex(net.h.status()["peer_id"])
    net.m_raw(docpeer.DocLink(net.m, h_id).seal(payload))
    net.wait_counts(before, auth_failed=2)
    assert net.counts()["stored"] == before["stored"]
    assert net.logged("datagram.dropped", reason="auth_failed")
    net.assert_honest_sync()


def test_authenticated_garbage_and_unasked_plaintext_are_dropped(net):
    before = net.counts()
    net.m_send(b"\xff\xff\xff garbage, sealed with M's real key")  # authentic, not a Payload
    net.m_send(b"\x0a\x05short")  # an ack id of 5 bytes
    intruder = _message("in plaintext")
    net.m_raw(bytes([docpeer.PLAINTEXT]) + net.m.public
              + docpeer.encode_payload(docpeer.DocPayload(messages=[intruder])))
    net.wait_counts(before, malformed=2, plaintext_refused=1)
    assert net.counts()["stored"] == before["stored"]
    assert net.logged("datagram.dropped", reason="malformed")
    net.assert_honest_sync()


def test_bit_flips_and_truncations_never_get_through(net):
    rng = random.Random(8)
    message = _message("flipped")
    original = net.link.seal(docpeer.encode_payload(docpeer.DocPayload(messages=[message])))
    before = net.counts()
    sent = 0
    for position in sorted(rng.sample(range(len(original)), 40)):
        mutated = bytearray(original)
        mutated[position] ^= 1 << rng.randrange(8)
        net.m_raw(bytes(mutated))
        sent += 1
    for length in (0, 1, 32, 40, 56, len(original) - 1):
        net.m_raw(original[:length])
        sent += 1
    reasons = ("auth_failed", "unknown_peer", "bad_version", "truncated", "replay")

    def all_counted():
        now = net.counts()
        return sum(now.get(r, 0) - before.get(r, 0) for r in reasons) >= sent

    wait_until(all_counted, 10, 0.05, what="every mutated datagram counted")
    now = net.counts()
    assert sum(now.get(r, 0) - before.get(r, 0) for r in reasons) == sent
    assert now["truncated"] - before.get("truncated", 0) >= 5
    assert now["auth_failed"] - before.get("auth_failed", 0) >= 1
    assert now["stored"] == before["stored"]
    assert message.id.hex() not in {m["id"] for m in net.history(net.n)}
    # The untouched datagram still gets through, once.
    net.m_raw(original)
    wait_until(lambda: message.id.hex() in {m["id"] for m in net.history(net.n)}, 10)
    net.assert_honest_sync()


def test_oversized_datagrams_and_bodies(net):
    before = net.counts()
    # The largest datagram UDP carries, as garbage under M's id: authentication fails.
    junk = bytes([docpeer.SEALED]) + net.m.public + os.urandom(65_507 - 33)
    net.m_raw(junk)
    net.wait_counts(before, auth_failed=1)
    # A sealed datagram of 65,1xx bytes with a body over the protocol's 64,000.
    big = _message("", timestamp=1)
    big.body = b"B" * 65_000
    fits = _message("", timestamp=2)
    fits.body = b"F" * 64_000
    net.m_send(docpeer.DocPayload(messages=[big]))
    net.m_send(docpeer.DocPayload(messages=[fits]))
    net.wait_counts(before, auth_failed=1, dropped_oversized_body=1, stored=1)
    acked = {i for p in net.m_collect(1.0) for i in p.acks}
    assert fits.id in acked and big.id not in acked
    with pytest.raises(OSError):  # bigger is impossible over IPv4 UDP
        net.m_raw(b"\x01" * 65_508)
    net.assert_honest_sync()


def test_an_offer_flood_holds_bounded_state(net):
    net.m_collect(0.3)
    before = net.counts()
    pending_before = _pending(net, "m")["request"]
    rng = random.Random(11)
    offered = [rng.randbytes(32) for _ in range(40 * 33)]
    for start in range(0, len(offered), 33):
        net.m_send(docpeer.DocPayload(offers=offered[start : start + 33]))
        time.sleep(0.002)
    room = MAX_REQUESTS - pending_before
    net.wait_counts(before, offers_in=len(offered), requests_capped=len(offered) - room)
    assert _pending(net, "m")["request"] == MAX_REQUESTS
    peer = net.status()["peers"][_index(net, "m")]
    assert peer["pending"]["request"] == MAX_REQUESTS
    assert peer["requests_capped"] == net.counts()["requests_capped"]  # all M's doing
    # What N asks M for is bounded by the cap too.
    requested = {i for p in net.m_collect(1.5) for i in p.requests}
    assert requested <= set(offered)
    assert 0 < len(requested) <= MAX_REQUESTS
    net.assert_honest_sync()


def test_a_request_flood_is_not_amplified(net):
    target = net.n.request("append", group="chat", text="Z" * 1000)["message_id"]
    target_id = bytes.fromhex(target)
    wait_until(lambda: any(m.id == target_id for p in net.m_collect(0.3) for m in p.messages), 10,
               what="N sends the message to M")  # and M ACKs it
    before = net.counts()
    rng = random.Random(12)
    unknown = [rng.randbytes(32) for _ in range(200)]
    sent_bytes = 0
    for i in range(60):
        sent_bytes += len(net.m_send(docpeer.DocPayload(requests=[target_id] * 33)))
    for start in range(0, 200, 25):
        sent_bytes += len(net.m_send(docpeer.DocPayload(requests=unknown[start : start + 25])))
    net.wait_counts(before, requests_in=60 * 33 + 200, requests_unknown=200)
    payloads = net.m_collect(2.0, ack=False)
    copies = sum(1 for p in payloads for m in p.messages if m.id == target_id)
    received_bytes = sum(len(docpeer.encode_payload(p)) + 57 for p in payloads)
    assert 1 <= copies <= 6, copies  # once, plus retransmissions until M ACKs
    assert received_bytes < sent_bytes / 5, (received_bytes, sent_bytes)
    net.m_send(docpeer.DocPayload(acks=[target_id]))
    net.assert_honest_sync()


def test_groups_not_shared_with_the_peer_stay_closed(net):
    secret = bytes.fromhex(net.n.request("append", group="secret", text="only for H")["message_id"])
    wait_until(lambda: secret.hex() in {m["id"] for m in net.history(net.h)}, 10, what="H gets it")
    net.m_collect(0.3)
    before = net.counts()
    intruder = _message("into secret", group=SECRET)
    net.m_send(docpeer.DocPayload(requests=[secret]))
    net.m_send(docpeer.DocPayload(offers=[secret]))
    net.m_send(docpeer.DocPayload(messages=[intruder]))
    net.wait_counts(before, requests_refused=1, offers_refused=1, dropped_unshared_group=1)
    payloads = net.m_collect(1.0)
    assert not any(m.id == secret for p in payloads for m in p.messages)
    acked = {i for p in payloads for i in p.acks}
    # The MESSAGE is ACKed so M stops resending it (docs/PROTOCOL.md 12.1),
    # but not kept; what N holds in the group is not revealed.
    assert intruder.id in acked and secret not in acked
    assert net.counts()["stored"] == before["stored"]
    net.assert_honest_sync()


def test_many_parents_are_kept_in_part_and_a_message_naming_itself_is_dropped(net):
    """More than 32 distinct parents: stored, ACKed and delivered, waiting
    only for the first 32 (docs/PROTOCOL.md 12.1); naming itself: dropped."""
    rng = random.Random(13)
    known = [_message(f"known {i}", timestamp=1_764_000_100 + i) for i in range(33)]
    net.m_send(docpeer.DocPayload(messages=known[:16]))
    net.m_send(docpeer.DocPayload(messages=known[16:]))
    wait_until(lambda: {m.id.hex() for m in known} <= {m["id"] for m in net.history(net.n)}, 10)
    net.m_collect(0.3)
    before = net.counts()
    too_many = _message("33 parents", parents=[m.id for m in known])
    huge = _message("1500 parents", parents=[m.id for m in known[:32]]
                    + [rng.randbytes(32) for _ in range(1468)])
    selfish = _message("my own parent")
    selfish.parents = [selfish.id]
    for message in (too_many, huge, selfish):
        net.m_send(docpeer.DocPayload(messages=[message]))
    net.wait_counts(before, parents_beyond_limit=2, dropped_self_parent=1)
    acked = {i for p in net.m_collect(0.8) for i in p.acks}
    assert {too_many.id, huge.id} <= acked and selfish.id not in acked
    assert net.counts()["stored"] == before["stored"] + 2
    delivered = {m["id"] for m in net.history(net.n)}
    assert {too_many.id.hex(), huge.id.hex()} <= delivered
    net.assert_honest_sync()


def test_absurd_timestamps_are_stored_and_shown(net):
    stamps = [INT64_MAX, INT64_MIN, -1, 0, 2**62, INT64_MIN + 1]
    messages = [_message(f"t={t}", timestamp=t) for t in stamps]
    net.m_send(docpeer.DocPayload(messages=messages))
    wanted = {m.id.hex(): t for m, t in zip(messages, stamps)}
    wait_until(lambda: set(wanted) <= {m["id"] for m in net.history(net.n)}, 10)
    seen = {m["id"]: m["timestamp"] for m in net.history(net.n) if m["id"] in wanted}
    assert seen == wanted
    acked = {i for p in net.m_collect(0.5) for i in p.acks}  # ACKed like any message
    assert {m.id for m in messages} <= acked
    for args in (["tail", str(net.n.path)], ["tail", str(net.n.path), "--json"],
                 ["status", str(net.n.path)], ["status", str(net.n.path), "--json"]):
        result = cli(*args)
        assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    lines = [json.loads(line) for line in cli("tail", str(net.n.path), "--json").stdout.splitlines()]
    assert {line["timestamp"] for line in lines} >= set(stamps)
    net.assert_honest_sync()


BAD_LINES = [
    b"not json",
    b"[1, 2]",
    b'{"op": 5}',
    b'{"op": "nope"}',
    b'{"op": "append"}',
    b'{"op": "append", "group": "chat", "body_b64": "!!"}',
    b'{"op": "append", "group": "nochat", "text": "x"}',
    b'{"op": "append", "group": "", "text": "x"}',
    b'{"op": "append", "group": "chat", "text": "x", "ephemeral": "yes"}',
    b'{"op": "append_many", "group": "chat", "texts": [1]}',
    b'{"op": "subscribe", "since": -1}',
    b'{"op": "subscribe", "since": 1e400}',
    b'{"op": "subscribe", "since": 9223372036854775808}',
    b'{"op": "add_peer", "name": "x y", "peer_id": "00", "address": "nowhere"}',
    b'{"op": "share", "group": "chat", "peer": "nobody"}',
    b"[" * 20000,
    b'{"op": "ping", "id": ' + b"9" * 5000 + b"}",
    b"\xff\xfe\x00",
]


def test_malformed_control_requests_get_clear_errors(net):
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(10)
        sock.connect(str(net.n.path / "mvds.sock"))
        reader = sock.makefile("rb")
        for line in BAD_LINES:
            sock.sendall(line + b"\n")
            reply = json.loads(reader.readline())
            assert reply["ok"] is False, (line[:40], reply)
            assert isinstance(reply["error"], str) and "\n" not in reply["error"]
            assert not reply["error"].startswith("internal error"), (line[:40], reply)
        sock.sendall(b'{"op": "ping", "id": 7}\n')  # the connection is still usable
        assert json.loads(reader.readline())["id"] == 7
        # A line over control_max_line: an error, then the connection closes.
        sock.sendall(b'{"op": "append", "group": "chat", "text": "' + b"x" * (MAX_LINE + 10))
        reply = json.loads(reader.readline())
        assert reply["ok"] is False and "control_max_line" in reply["error"]
        assert reader.readline() == b""
    assert net.status()["node"]["control_refused_line_too_long"] == 1
    assert net.logged("control.refused", reason="line_too_long")
    net.assert_honest_sync()


NON_STANDARD_JSON = [
    b'{"op": "ping", "id": NaN}',
    b'{"op": "ping", "id": Infinity}',
    b'{"op": "ping", "id": -Infinity}',
    b'{"op": "ping", "id": 1e400}',
    b'{"op": "ping", "id": [-1e999]}',
    b'{"op": "subscribe", "since": NaN}',
]


def _strict(line: bytes) -> dict:
    def refuse(name):
        raise ValueError(f"non-standard JSON {name} in a reply")

    def finite(text):
        assert text.lower() not in ("inf", "-inf", "nan")
        return float(text)

    return json.loads(line, parse_constant=refuse, parse_float=finite)


def test_non_standard_json_is_refused_never_echoed(net):
    """Regression: NaN, Infinity and 1e400 (which Python reads as inf) were
    accepted, and an ``id`` holding one came back as ``"id":NaN``, a line
    that standard JSON parsers (JavaScript's, Go's) reject."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(10)
        sock.connect(str(net.n.path / "mvds.sock"))
        reader = sock.makefile("rb")
        for line in NON_STANDARD_JSON:
            sock.sendall(line + b"\n")
            reply = _strict(reader.readline())
            assert reply["ok"] is False, (line, reply)
            error = reply["error"]
            assert "standard JSON" in error or "out of range" in error, (line, reply)
        sock.sendall(b'{"op": "ping", "id": 1.5e300}\n')  # large but finite: fine
        assert _strict(reader.readline())["id"] == 1.5e300


def test_too_many_control_clients_are_refused_not_queued(net):
    idle = []
    try:
        for _ in range(MAX_CLIENTS):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.connect(str(net.n.path / "mvds.sock"))
            idle.append(sock)
        time.sleep(0.2)
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as extra:
            extra.settimeout(10)
            extra.connect(str(net.n.path / "mvds.sock"))
            reply = json.loads(extra.makefile("rb").readline())
        assert reply["ok"] is False and "control_max_clients" in reply["error"]
    finally:
        for sock in idle:
            sock.close()
    wait_until(lambda: _ping(net), 10, what="a free control slot")
    assert net.status()["node"]["control_refused_too_many_clients"] >= 1
    net.assert_honest_sync()


def test_the_control_socket_is_private(net):
    path = net.n.path / "mvds.sock"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(net.n.path.stat().st_mode) == 0o700
    if os.geteuid() != 0:
        pytest.skip("needs root to try connecting as another user")
    assert _connect_as_nobody(path) == "PermissionError"


def test_the_socket_mode_alone_keeps_other_users_out(tmp_path):
    """Even in a directory anyone may enter, another user cannot connect."""
    if os.geteuid() != 0:
        pytest.skip("needs root to try connecting as another user")
    import trio

    import mvds
    from mvds.daemon.control import ControlServer

    open_dir = Path("/tmp") / f"mvds-open-{os.getpid()}"
    open_dir.mkdir(mode=0o755, exist_ok=True)
    os.chmod(open_dir, 0o755)
    path = open_dir / "mvds.sock"
    results = []

    async def main():
        async with mvds.open_node() as node:
            async with trio.open_nursery() as nursery:
                await nursery.start(ControlServer(node, path).serve)
                results.append(stat.S_IMODE(path.stat().st_mode))
                results.append(await trio.to_thread.run_sync(_connect_as_nobody, path))
                results.append(await trio.to_thread.run_sync(_ping_path, path))
                nursery.cancel_scope.cancel()

    try:
        trio.run(main)
    finally:
        path.unlink(missing_ok=True)
        open_dir.rmdir()
    assert results == [0o600, "PermissionError", True]


def test_replays_are_refused_also_after_a_restart(net):
    message = _message("once only")
    datagram = net.m_send(docpeer.DocPayload(messages=[message]))
    wait_until(lambda: message.id.hex() in {m["id"] for m in net.history(net.n)}, 10)
    before = net.counts()
    for _ in range(5):
        net.m_raw(datagram)
    net.wait_counts(before, replay=5, stored=0)
    net.n.stop()
    net.n.start()
    net.m_raw(datagram)
    wait_until(lambda: net.counts().get("replay") == 1, 10, what="the replay counted after restart")
    assert [m["id"] for m in net.history(net.n)].count(message.id.hex()) == 1
    assert net.logged("datagram.dropped", reason="replay")
    net.assert_honest_sync()


def test_a_trusted_peer_is_held_to_its_byte_budget(net):
    time.sleep(1.0)  # M's budget refills after the earlier tests
    before = net.counts()
    peer_before = net.status()["peers"][_index(net, "m")]["rate_limited"]
    rng = random.Random(13)
    # Authentic datagrams that change no state: ACKs of ids N never sent.
    datagrams = [
        net.link.seal(docpeer.encode_payload(docpeer.DocPayload(acks=[rng.randbytes(32) for _ in range(33)])))
        for _ in range(5100)
    ]
    size = len(datagrams[0])
    started = time.monotonic()
    for index, datagram in enumerate(datagrams):  # about 6 MiB/s for one second
        net.m_raw(datagram)
        if index % 50 == 49:
            time.sleep(max(0.0, started + (index + 1) * size / (6 * PEER_BUDGET) - time.monotonic()))
    elapsed = time.monotonic() - started

    def settled():
        first = net.counts()
        time.sleep(0.3)
        second = net.counts()
        return second if first == second else None

    after = wait_until(settled, 10, 0.0, what="N has read the flood")
    passed = (after["acks_in"] - before.get("acks_in", 0)) // 33
    limited = after.get("rate_limited", 0) - before.get("rate_limited", 0)
    assert passed + limited <= len(datagrams)
    # What N took: at most the burst (one second's budget) plus the refill
    # (N may read the last datagrams up to 1.5 s after they were sent).
    assert passed * size <= PEER_BUDGET + PEER_BUDGET * (elapsed + 1.5), (passed, elapsed)
    assert limited >= len(datagrams) // 4, (passed, limited)  # the rest arrived but was refused
    assert net.status()["peers"][_index(net, "m")]["rate_limited"] - peer_before == limited
    assert after["stored"] == before["stored"]
    assert net.logged("datagram.dropped", reason="rate_limited")
    net.assert_honest_sync()  # H has a budget of its own
    # The budget refills: M gets through again.
    time.sleep(0.5)
    before = net.counts()
    net.m_send(docpeer.DocPayload(acks=[rng.randbytes(32)]))
    net.wait_counts(before, acks_in=1, rate_limited=0)


# -- helpers --------------------------------------------------------------------------


def _index(net: Net, name: str) -> int:
    return [p["name"] for p in net.status()["peers"]].index(name)


def _pending(net: Net, name: str) -> dict[str, int]:
    return net.status()["peers"][_index(net, name)]["pending"]


def _ping(net: Net) -> bool:
    try:
        net.n.request("ping")
        return True
    except Exception:
        return False


def _ping_path(path: Path) -> bool:
    with ControlClient(path, timeout=5) as client:
        return bool(client.request("ping")["ok"])


def _connect_as_nobody(path: Path) -> str:
    """Try to connect to ``path`` as user nobody; the exception's name, or 'connected'."""
    code = (
        "import socket, sys\n"
        "s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)\n"
        "try:\n"
        "    s.connect(sys.argv[1]); print('connected')\n"
        "except OSError as e:\n"
        "    print(type(e).__name__)\n"
    )
    python = "/usr/bin/python3" if Path("/usr/bin/python3").exists() else sys.executable

    def drop() -> None:
        os.setgid(65534)
        os.setuid(65534)

    result = subprocess.run([python, "-I", "-c", code, str(path)], capture_output=True, text=True,
                            preexec_fn=drop, timeout=30, cwd="/")
    return result.stdout.strip() or result.stderr.strip()
