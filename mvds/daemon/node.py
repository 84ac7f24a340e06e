"""A running MVDS peer: the engine, a store, the secure envelope and UDP, on trio.

This is the thin I/O shell around the sans-IO engine.  Everything that
changes state happens in :meth:`Node._step`, synchronously (no ``await``
inside, so no other task can interleave) and inside ONE store transaction:

1. take every datagram the receiver drained since the last step, open the
   envelopes (unknown or forged senders, replays, garbage: dropped and
   counted before any protobuf parsing), decode, feed the engine;
2. apply queued control operations and appends;
3. collect the payloads to send, split them into datagrams and seal them;
4. commit.

Only after the commit succeeds are datagrams sent (so no ACK ever leaves for
a message that is not on disk), appends answered (so an append returns only
once durable) and received messages handed to readers.  If the commit
fails, nothing is sent, appends get an error, the error is logged, and a
fresh engine is built on the store (the engine keeps nothing durable in
memory).  An error that may clear up (locked, disk full) is retried after a
growing pause; a fatal one (corrupt file, I/O error) stops the node: the
:class:`~mvds.store.errors.StoreError` comes out of :meth:`Node.open`, and
``mvds run`` exits with it as its one-line reason.  docs/STORAGE.md has the
rules.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import math
import os
import random
import time
from collections import Counter
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Callable

import trio

from mvds.daemon.config import NodeConfig, PeerConfig, format_address, parse_address, save_config
from mvds.daemon.logs import get_logger
from mvds.daemon.nodedir import NodeDir
from mvds.daemon.schedule import Schedule
from mvds.daemon.transport import SMALL_BUFFER, UdpTransport
from mvds.engine import (
    Delivery,
    Engine,
    EngineConfig,
    ExponentialBackoff,
    GaveUp,
    MessageAcknowledged,
    MessageReceived,
    Mode,
    PeerReachable,
    RecordType,
)
from mvds.ids import ID_SIZE, parse_group, parse_peer_id, short
from mvds.secure import EnvelopeCodec, EnvelopeError, Identity, NonceCounter
from mvds.secure.drops import DropLog
from mvds.secure.ratelimit import TokenBucket
from mvds.store.base import Store, StoredMessage
from mvds.store.errors import StoreError
from mvds.wire import WireError, decode_payload, split_payload

RESOLVE_INTERVAL = 30.0
"""Seconds between re-resolving peer host names (containers move)."""

STORE_RETRY_MIN = 0.05
STORE_RETRY_MAX = 2.0
"""After a store error that may clear up (a locked database, a full disk),
the next step waits STORE_RETRY_MIN seconds, doubling with each failure in a
row up to STORE_RETRY_MAX: a lasting fault costs a little CPU and a log line
now and then, not a busy loop (a fresh engine always has work due at once)."""

STORE_ERROR_LOG_INTERVAL = 10.0
"""The same store error is logged at once, then at most once per this many
seconds, with how often it happened since the previous line."""

REPLAY_META_PREFIX = "replay/"

_json_string = json.encoder.encode_basestring_ascii  # type: ignore[attr-defined]
"""A str as a JSON string literal, as json.dumps writes it (ensure_ascii)."""


class NodeError(Exception):
    """A request the node cannot carry out; the message says why, in one line."""


def _parse_group(group: str) -> bytes:
    """A GROUP argument's id; a user's bad group (empty) is a NodeError, not
    the ValueError of mvds.ids, so every caller (embedding, control API)
    reports it in one line instead of as an internal error."""
    if not isinstance(group, str):
        raise NodeError(f"a group is a name or 64 hex characters, not {type(group).__name__}")
    try:
        return parse_group(group)
    except ValueError as exc:
        raise NodeError(str(exc)) from None


@dataclass(frozen=True)
class ReceivedMessage:
    """A message handed to the application.

    ``seq`` is the node's local delivery number (None for ephemeral
    messages, which are never stored); resume reading after it with
    ``Node.messages(since=seq)``.
    """

    seq: int | None
    group_id: bytes
    id: bytes
    timestamp: int
    body: bytes
    sender: bytes | None
    ephemeral: bool = False

    @property
    def text(self) -> str | None:
        """The body as text if it is valid UTF-8."""
        try:
            return self.body.decode("utf-8")
        except UnicodeDecodeError:
            return None

    def to_json(self) -> dict[str, Any]:
        """The JSON object ``mvds tail --json`` prints."""
        out: dict[str, Any] = {
            "seq": self.seq,
            "group": self.group_id.hex(),
            "id": self.id.hex(),
            "timestamp": self.timestamp,
            "body_b64": base64.b64encode(self.body).decode("ascii"),
        }
        text = self.text
        if text is not None:
            out["text"] = text
        if self.sender is not None:
            out["from"] = self.sender.hex()
        if self.ephemeral:
            out["ephemeral"] = True
        return out

    def event_line(self) -> str:
        """``{"event":"message","message":<to_json()>}`` as one compact JSON
        line, byte for byte what ``json.dumps(..., separators=(",", ":"))``
        gives, built directly: a subscription streams one per message."""
        parts = [
            '{"event":"message","message":{"seq":',
            "null" if self.seq is None else str(self.seq),
            ',"group":"', self.group_id.hex(),
            '","id":"', self.id.hex(),
            '","timestamp":', str(self.timestamp),
            ',"body_b64":"', base64.b64encode(self.body).decode("ascii"), '"',
        ]
        text = self.text
        if text is not None:
            parts += (',"text":', _json_string(text))
        if self.sender is not None:
            parts += (',"from":"', self.sender.hex(), '"')
        if self.ephemeral:
            parts.append(',"ephemeral":true')
        parts.append("}}")
        return "".join(parts)

    @classmethod
    def from_stored(cls, stored: StoredMessage) -> "ReceivedMessage":
        m = stored.message
        return cls(stored.seq, m.group_id, m.id, m.timestamp, m.body, stored.received_from)


@dataclass
class _Pending:
    """Work queued for the next step, answered after its commit."""

    apply: Callable[[float], Any]
    done: trio.Event = field(default_factory=trio.Event)
    result: Any = None
    error: BaseException | None = None


@dataclass
class PeerState:
    """What the node knows about a configured peer at run time."""

    config: PeerConfig
    peer_id: bytes
    address: Any = None  # resolved socket address, or None
    counters: Counter[str] = field(default_factory=Counter)
    budget: TokenBucket | None = None
    """Bytes this peer may still send (``peer_max_bytes_per_s``); None: no limit."""


def engine_config(config: NodeConfig) -> EngineConfig:
    return EngineConfig(
        mode=Mode(config.mode),
        delivery=Delivery(config.delivery),
        epoch_length=config.epoch_ms / 1000.0,
        flush_delay=config.flush_ms / 1000.0,
        policy=ExponentialBackoff(max_delay=config.backoff_max_epochs),
        max_inflight=config.max_inflight,
        max_requests=config.max_requests,
        max_parents=config.max_parents,
        seed=config.seed or 0,
        reconcile=config.reconcile,
        reconcile_interval=config.reconcile_interval_s,
        park_after=config.park_after_s,
    )


class Node:
    """One MVDS peer.  Open it with :meth:`Node.open` (an async context manager)."""

    def __init__(
        self,
        *,
        config: NodeConfig,
        store: Store,
        identity: Identity,
        nonces: NonceCounter,
        nodedir: NodeDir | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self.identity = identity
        self.nodedir = nodedir
        self.codec = EnvelopeCodec(identity, nonces)
        # The node's own id decides which side of a pair runs the periodic
        # reconciliations (mvds/engine/catchup.py).
        self.engine_config = dataclasses.replace(engine_config(config), node_id=identity.peer_id)
        self.log = get_logger(node=identity.peer_id_hex[:8])
        self._rng = random.Random(config.seed)
        self._schedule = Schedule.parse(config.schedule) if config.schedule else None
        self.peers: dict[bytes, PeerState] = {}
        self._drops = DropLog(interval=config.drop_log_interval_s)
        """Datagrams dropped before the engine, by reason (rate-limited logging)."""
        self._warnings = DropLog(interval=60.0)
        self.counters: Counter[str] = Counter()
        self._inbox: list[tuple[bytes, Any]] = []
        self._queue: list[_Pending] = []
        self._wake = trio.Event()
        self._delivered = trio.Event()
        self._ephemeral_listeners: list[list[ReceivedMessage]] = []
        self._started = time.time()
        self._closing = False
        self._running = False
        self._fatal: str | None = None
        self._store_errors = DropLog(interval=STORE_ERROR_LOG_INTERVAL)
        self._store_failures = 0  # failed steps in a row
        self._store_retry_at = 0.0  # time.monotonic() before which no step runs
        self.transport: UdpTransport | None = None
        self.engine = Engine(store, self.engine_config, now=time.time())
        self._apply_config_to_store()
        self._import_replay_state()

    # -- opening -------------------------------------------------------------
    @classmethod
    @asynccontextmanager
    async def open(
        cls,
        directory: str | os.PathLike[str] | None = None,
        *,
        config: NodeConfig | None = None,
        listen: str | None = None,
        identity: Identity | None = None,
    ) -> AsyncIterator["Node"]:
        """Run a node for the duration of the ``async with`` block.

        With a ``directory`` (made by ``mvds init`` or :func:`init_node_dir`)
        the node uses its config, identity and SQLite store and holds its
        lock; without one it runs in memory with a fresh identity.
        ``listen`` overrides the configured address (``"127.0.0.1:0"`` picks
        a free port; see :attr:`address`).
        """
        from mvds.daemon.config import ConfigError
        from mvds.daemon.setup import SetupError, open_parts

        if listen is not None:
            try:
                parse_address(listen)
            except ValueError as exc:
                raise NodeError(f"listen: {exc}") from None
        try:
            parts = open_parts(directory, config=config, identity=identity)
        except (SetupError, ConfigError) as exc:
            raise NodeError(str(exc)) from None
        try:
            if listen is not None:
                parts.config = dataclasses.replace(parts.config, listen=listen)
            node = cls(
                config=parts.config,
                store=parts.store,
                identity=parts.identity,
                nonces=parts.nonces,
                nodedir=parts.nodedir,
            )
        except StoreError as exc:
            parts.release()
            raise NodeError(str(exc)) from None
        except BaseException:
            parts.release()
            raise
        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(node._run)
                try:
                    yield node
                finally:
                    nursery.cancel_scope.cancel()
        except BaseExceptionGroup as group:
            # Trio groups what the block raised with the node's tasks (a
            # startup error of a task inside _run: twice); a caller expects
            # its own exception back, or the NodeError, not groups around it.
            inner: BaseException = group
            while isinstance(inner, BaseExceptionGroup) and len(inner.exceptions) == 1:
                inner = inner.exceptions[0]
            if inner is not group:
                raise inner from None
            raise
        finally:
            node._close()
            parts.release()

    async def _run(self, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        host, port = parse_address(self.config.listen)
        try:
            self.transport = UdpTransport(host, port, loss=self.config.loss, rng=self._rng)
        except OSError as exc:  # the port is taken, the host is not ours, ...
            raise NodeError(exc.strerror or str(exc)) from None
        try:
            await self._resolve_peers()
            async with trio.open_nursery() as nursery:
                if self.config.metrics:
                    from mvds.daemon.metrics import serve_metrics

                    # Started (bound) before node.started: a taken metrics
                    # port is a startup error, not a crash of a running node.
                    await nursery.start(serve_metrics, self, self.config.metrics)
                granted = self.transport.receive_buffer
                self.log.info(
                    "node.started",
                    peer_id=self.identity.peer_id_hex,
                    listen=format_address(*self.address),
                    mode=self.config.mode,
                    peers=len(self.peers),
                    receive_buffer=granted,
                )
                if granted < SMALL_BUFFER:
                    self.log.warning(
                        "transport.small_receive_buffer", granted=granted,
                        hint="bursts of datagrams will be dropped by the kernel and resent; "
                        "raise the limit: sysctl -w net.core.rmem_max=4194304",
                    )
                self._running = True
                now = time.time()
                for peer_id in self.peers:
                    self.engine.announce(peer_id, now)
                nursery.start_soon(self._receive_loop)
                nursery.start_soon(self._pump_loop)
                nursery.start_soon(self.transport.run_sender)
                nursery.start_soon(self._resolve_loop)
                if self._schedule is not None:
                    nursery.start_soon(self._schedule_loop)
                task_status.started()
        finally:
            self.transport.close()

    def _close(self) -> None:
        self._closing = True
        for pending in self._queue:
            pending.error = NodeError("the node is shutting down")
            pending.done.set()
        self._queue.clear()
        if self._running:  # a node that never started has nothing to report stopping
            self.log.info("node.stopped")

    # -- configuration into the store --------------------------------------------
    def _budget(self) -> TokenBucket | None:
        rate = self.config.peer_max_bytes_per_s
        return TokenBucket(rate) if rate else None

    def _apply_config_to_store(self) -> None:
        """Make the store's sharing match the config (the config is the truth)."""
        now = time.time()
        with self.store.transaction():
            wanted: set[tuple[bytes, bytes]] = set()
            for peer in self.config.peers:
                peer_id = peer.peer_id
                self.peers[peer_id] = PeerState(peer, peer_id, budget=self._budget())
                self.codec.add_peer(peer_id, plaintext=peer.plaintext)
                for group in peer.groups:
                    wanted.add((parse_group(group), peer_id))
            for group in self.config.all_groups():
                self.engine.join(parse_group(group))
            for group_id, peers in self.store.sharing().items():
                for peer_id in peers:
                    if (group_id, peer_id) not in wanted:
                        self.engine.unshare(group_id, peer_id, now)
            for group_id, peer_id in sorted(wanted):
                self.engine.share(group_id, peer_id, now)

    def _import_replay_state(self) -> None:
        state = {}
        for peer_id in self.peers:
            blob = self.store.get_meta(REPLAY_META_PREFIX + peer_id.hex())
            if blob is not None:
                state[peer_id] = blob
        if state:
            self.codec.import_replay_state(state)

    # -- properties ------------------------------------------------------------
    @property
    def peer_id(self) -> bytes:
        return self.identity.peer_id

    @property
    def address(self) -> tuple[str, int]:
        """The bound UDP address (host, port)."""
        assert self.transport is not None, "the node is not running"
        return self.transport.address

    @property
    def online(self) -> bool:
        return self.transport is not None and self.transport.online

    # -- the public API (embedding and control API) ------------------------------
    def group_id(self, group: str | bytes) -> bytes:
        """A group's id from its name, 64-hex id or raw 32 bytes; must be known."""
        group_id = group if isinstance(group, bytes) else _parse_group(group)
        if len(group_id) != ID_SIZE:
            raise NodeError(f"a group id is {ID_SIZE} bytes")
        if not self.store.is_member(group_id):
            label = group if isinstance(group, str) else group_id.hex()
            raise NodeError(
                f"unknown group {label!r}: add it with `mvds peer add ... --group {label}` "
                "or join it first"
            )
        return group_id

    async def _submit(self, apply: Callable[[float], Any]) -> Any:
        if self._closing:
            raise NodeError("the node is shutting down")
        if self._fatal:
            raise NodeError(f"the node stopped: {self._fatal}")
        pending = _Pending(apply)
        self._queue.append(pending)
        self._wake.set()
        await pending.done.wait()
        if pending.error is not None:
            raise pending.error
        return pending.result

    def _check_body(self, body: bytes) -> bytes:
        if not isinstance(body, (bytes, bytearray, memoryview)):
            raise TypeError("a message body is bytes")
        if len(body) > self.config.max_body:
            raise NodeError(
                f"message body is {len(body)} bytes; the maximum is {self.config.max_body} "
                "(setting max_body)"
            )
        return bytes(body)

    async def append(self, group: str | bytes, body: bytes, *, ephemeral: bool = False) -> bytes:
        """Append a message; returns its id once it is committed to the store."""
        group_id = self.group_id(group)
        body = self._check_body(body)

        def apply(now: float) -> bytes:
            return self.engine.append(group_id, body, now, ephemeral=ephemeral).id

        return await self._submit(apply)

    async def append_many(self, group: str | bytes, bodies: list[bytes]) -> list[bytes]:
        """Append several messages in one transaction; returns their ids in order."""
        group_id = self.group_id(group)
        checked = [self._check_body(body) for body in bodies]

        def apply(now: float) -> list[bytes]:
            return [message.id for message in self.engine.append_many(group_id, checked, now)]

        return await self._submit(apply)

    async def join(self, group: str) -> bytes:
        """Become a member of a group (append to it, accept it from peers sharing it)."""
        group_id = _parse_group(group)

        def apply(now: float) -> bytes:
            self.engine.join(group_id)
            if group not in self.config.groups:
                self.config.groups.append(group)
            return group_id

        result = await self._submit(apply)
        self._save_config()
        return result

    async def add_peer(
        self,
        name: str,
        peer_id: str | bytes,
        address: str,
        groups: list[str] | tuple[str, ...] = (),
        *,
        plaintext: bool = False,
    ) -> None:
        """Trust a peer and share these groups with it (replaces an entry of that name)."""
        peer_hex = peer_id.hex() if isinstance(peer_id, bytes) else peer_id
        try:
            peer_bytes = parse_peer_id(peer_hex)
        except ValueError as exc:
            raise NodeError(str(exc)) from None
        if peer_bytes == self.peer_id:
            raise NodeError("that is this node's own peer id")
        entry = PeerConfig(name, peer_bytes.hex(), address, list(groups), plaintext)
        candidate = dataclasses.replace(
            self.config, peers=[p for p in self.config.peers if p.name != name] + [entry]
        )
        try:
            candidate.validate("peer")
        except ValueError as exc:
            raise NodeError(str(exc)) from None

        def apply(now: float) -> None:
            old = self.config.peer_named(name)
            if old is not None and old.peer_id != peer_bytes:
                self._forget_peer(old, now)
            self.config.peers = [p for p in self.config.peers if p.name != name] + [entry]
            state = self.peers.get(peer_bytes)
            if state is None:
                state = self.peers[peer_bytes] = PeerState(entry, peer_bytes, budget=self._budget())
            state.config = entry
            state.address = None
            self.codec.add_peer(peer_bytes, plaintext=plaintext)
            self._sync_sharing(peer_bytes, entry.groups, now)
            self.engine.announce(peer_bytes, now)

        await self._submit(apply)
        self._save_config()
        await self._resolve_peer(self.peers[peer_bytes])

    def _forget_peer(self, entry: PeerConfig, now: float) -> None:
        peer_id = entry.peer_id
        self._sync_sharing(peer_id, [], now)
        self.peers.pop(peer_id, None)
        self.codec.remove_peer(peer_id)

    def _sync_sharing(self, peer_id: bytes, groups: list[str], now: float) -> None:
        wanted = {parse_group(g) for g in groups}
        for group_id, peers in self.store.sharing().items():
            if peer_id in peers and group_id not in wanted:
                self.engine.unshare(group_id, peer_id, now)
        for group_id in sorted(wanted):
            self.engine.share(group_id, peer_id, now)

    async def remove_peer(self, name: str) -> None:
        """Stop trusting a peer; its pending sync state is dropped."""

        def apply(now: float) -> None:
            entry = self.config.peer_named(name)
            if entry is None:
                raise NodeError(f"no peer named {name!r}")
            self._forget_peer(entry, now)
            self.config.peers = [p for p in self.config.peers if p.name != name]

        await self._submit(apply)
        self._save_config()

    async def share(self, group: str, peer_name: str) -> None:
        """Share a group with a configured peer (its history syncs too)."""
        await self._change_sharing(group, peer_name, add=True)

    async def unshare(self, group: str, peer_name: str) -> None:
        """Stop sharing a group with a peer."""
        await self._change_sharing(group, peer_name, add=False)

    async def _change_sharing(self, group: str, peer_name: str, *, add: bool) -> None:
        group_id = _parse_group(group)

        def apply(now: float) -> None:
            entry = self.config.peer_named(peer_name)
            if entry is None:
                raise NodeError(f"no peer named {peer_name!r}")
            if add:
                if group not in entry.groups:
                    entry.groups.append(group)
                self.engine.share(group_id, entry.peer_id, now)
            else:
                if group in entry.groups:
                    entry.groups.remove(group)
                elif group_id not in {parse_group(g) for g in entry.groups}:
                    raise NodeError(f"group {group!r} is not shared with {peer_name!r}")
                entry.groups = [g for g in entry.groups if parse_group(g) != group_id]
                self.engine.unshare(group_id, entry.peer_id, now)

        await self._submit(apply)
        self._save_config()

    def _save_config(self) -> None:
        """Write peers and groups back to DIR/mvds.toml.

        Only those: the running config may carry `mvds run` options (loss,
        schedule, ...) that are meant for this run alone.
        """
        if self.nodedir is None:
            return
        from mvds.daemon.config import load_config

        on_disk = load_config(self.nodedir.config)
        on_disk.peers = [dataclasses.replace(p, groups=list(p.groups)) for p in self.config.peers]
        on_disk.groups = list(self.config.groups)
        save_config(self.nodedir.config, on_disk)

    async def messages(
        self, since: int = 0, *, group: str | bytes | None = None, follow: bool = True
    ) -> AsyncIterator[ReceivedMessage]:
        """Received messages with ``seq > since`` in order, then (with ``follow``)
        new ones as they arrive, ephemeral ones included.  Resume after a restart
        with ``since=<last seq you processed>``: nothing is skipped or repeated."""
        async for batch in self.message_batches(since, group=group, follow=follow):
            for message in batch:
                yield message

    async def message_batches(
        self, since: int = 0, *, group: str | bytes | None = None, follow: bool = True
    ) -> AsyncIterator[list[ReceivedMessage]]:
        """Like :meth:`messages`, a list at a time (up to 512): what is ready
        comes in one piece, which is what a busy reader wants."""
        group_id = None if group is None else self.group_id(group)
        cursor = since
        ephemeral: list[ReceivedMessage] = []
        self._ephemeral_listeners.append(ephemeral)
        try:
            while True:
                high = self.store.last_seq()
                stored = self.store.delivered_since(cursor, 512, group_id)
                if len(stored) < 512:
                    # Every message up to ``high`` was read (those of other
                    # groups are skipped): without this a reader of a quiet
                    # group would ask again forever while others get messages.
                    cursor = max(cursor, high)
                if stored:
                    cursor = max(cursor, stored[-1].seq or cursor)
                    yield [ReceivedMessage.from_stored(m) for m in stored]
                    if len(stored) == 512:
                        continue
                if ephemeral:
                    live = [m for m in ephemeral if group_id is None or m.group_id == group_id]
                    ephemeral.clear()
                    if live:
                        yield live
                if not follow:
                    return
                if self.store.last_seq() > cursor:
                    continue
                await self._delivered.wait()
        finally:
            self._ephemeral_listeners.remove(ephemeral)

    # -- the loops -------------------------------------------------------------
    async def _receive_loop(self) -> None:
        transport = self.transport
        assert transport is not None
        while True:
            await transport.wait_readable()
            datagrams = transport.drain()
            if datagrams:
                self._inbox.extend(datagrams)
                self._wake.set()

    async def _pump_loop(self) -> None:
        idle_spins = 0
        while True:
            timeout = self._timeout()
            if timeout <= 0:
                idle_spins += 1
                if idle_spins > 3:
                    timeout = 0.001  # a timer that stays due: do not spin
            else:
                idle_spins = 0
            with trio.move_on_after(timeout):
                await self._wake.wait()
            self._wake = trio.Event()
            if self._store_failures and time.monotonic() < self._store_retry_at:
                continue  # pausing after a store error: let it clear up
            self._step()

    def _timeout(self) -> float:
        if self._store_failures:
            pause = self._store_retry_at - time.monotonic()
            if pause > 0:
                return pause
        if self._inbox or self._queue:
            return 0.0
        due = self.engine.next_timer()
        if due is None:
            return math.inf
        return max(0.0, due - time.time())

    async def _schedule_loop(self) -> None:
        assert self._schedule is not None and self.transport is not None
        start = trio.current_time()
        while True:
            up, remaining = self._schedule.state_at(trio.current_time() - start)
            if up != self.transport.online:
                self.transport.online = up
                self.log.info("radio.up" if up else "radio.down", schedule=self._schedule.describe())
                if up:
                    now = time.time()
                    for peer_id in self.peers:
                        self.engine.announce(peer_id, now)
                    self._wake.set()
            await trio.sleep(remaining)

    async def _resolve_loop(self) -> None:
        while True:
            await trio.sleep(RESOLVE_INTERVAL)
            await self._resolve_peers()

    async def _resolve_peers(self) -> None:
        for state in list(self.peers.values()):
            await self._resolve_peer(state)

    async def _resolve_peer(self, state: PeerState) -> None:
        assert self.transport is not None
        host, port = parse_address(state.config.address)
        try:
            infos = await trio.socket.getaddrinfo(
                host, port, family=self.transport.family, type=trio.socket.SOCK_DGRAM
            )
        except OSError as exc:
            if self._warnings.drop(f"resolve/{state.config.name}", time.monotonic()) is not None:
                self.log.warning(
                    "peer.unresolved", peer=state.config.name, address=state.config.address,
                    error=str(exc),
                )
            return
        if infos:
            address = infos[0][4]
            if state.address is None or state.address[:2] != address[:2]:
                state.address = address

    # -- one step ----------------------------------------------------------------
    def _step(self) -> None:
        """Everything that is ready, in one transaction; outputs only after commit."""
        now = time.time()
        inbox, self._inbox = self._inbox, []
        queue, self._queue = self._queue, []
        outgoing: list[tuple[bytes, Any]] = []
        heard: set[bytes] = set()
        engine = self.engine
        clock = time.monotonic()
        try:
            with self.store.transaction():
                for data, addr in inbox:
                    opened = self._open(data, addr, clock)
                    if opened is not None:
                        peer_id, payload = opened
                        engine.receive(peer_id, payload, now)
                        heard.add(peer_id)
                for pending in queue:
                    try:
                        pending.result = pending.apply(now)
                    except (NodeError, ValueError) as exc:
                        pending.error = exc if isinstance(exc, NodeError) else NodeError(str(exc))
                for peer_id, payload in engine.payloads_to_send(now):
                    outgoing.extend(self._seal(peer_id, payload))
                if heard:
                    changed = self.codec.export_replay_state(changed_only=True)
                    for peer_id, blob in changed.items():
                        self.store.set_meta(REPLAY_META_PREFIX + peer_id.hex(), blob)
        except StoreError as exc:
            self._on_store_error(exc, queue)
            return
        if self._store_failures:
            self.log.info("store.recovered", failed_steps=self._store_failures)
            self._store_failures = 0
        if outgoing and self.transport is not None:
            self.transport.send(outgoing)
        for pending in queue:
            pending.done.set()
        self._dispatch(engine.events())

    def _open(self, data: bytes, addr: Any, clock: float) -> tuple[bytes, Any] | None:
        try:
            peer_id, plain = self.codec.open(data)
        except EnvelopeError as exc:
            self._drop(exc.reason, addr)
            return None
        state = self.peers.get(peer_id)
        if state is None:  # removed while its datagram was queued
            self._drop("unknown_peer", addr)
            return None
        # Spent after authentication, so a forger cannot use up a peer's budget.
        if state.budget is not None and not state.budget.allow(len(data), clock):
            state.counters["rate_limited"] += 1
            self._drop("rate_limited", addr)
            return None
        try:
            payload = decode_payload(plain)
        except WireError as exc:
            self._drop("malformed", addr, detail=str(exc))
            return None
        counters = state.counters
        counters["datagrams_in"] += 1
        counters["bytes_in"] += len(data)
        if state.address is None or state.address[:2] != addr[:2]:
            if state.address is not None:
                self.log.info(
                    "peer.address_changed", peer=state.config.name,
                    old=format_address(*state.address[:2]), new=format_address(*addr[:2]),
                )
            state.address = addr  # roaming: authenticated, so trust the source
        return peer_id, payload

    def _drop(self, reason: str, addr: Any, detail: str | None = None) -> None:
        count = self._drops.drop(reason, time.monotonic())
        if count is not None:
            fields: dict[str, Any] = {"reason": reason, "source": format_address(*addr[:2]), "count": count}
            if detail:
                fields["detail"] = detail
            self.log.warning("datagram.dropped", **fields)

    def _seal(self, peer_id: bytes, payload: Any) -> list[tuple[bytes, Any]]:
        state = self.peers.get(peer_id)
        if state is None or state.address is None:
            self._drops.counts["no_address"] += 1
            return []
        limit = self.config.max_datagram - self.codec.overhead(peer_id)
        out = []
        counters = state.counters
        for chunk in split_payload(payload, limit):
            datagram = self.codec.seal(peer_id, chunk)
            out.append((datagram, state.address))
            counters["datagrams_out"] += 1
            counters["bytes_out"] += len(datagram)
        return out

    def _on_store_error(self, exc: StoreError, queue: list[_Pending]) -> None:
        """The step's transaction was rolled back: nothing of it was sent,
        answered or handed over.  Log it, fail its requests, then either
        carry on with a fresh engine after a pause or (fatal) stop the node
        by raising ``exc`` out of the pump loop."""
        fatal = getattr(exc, "fatal", False)
        self.counters["store_errors"] += 1
        repeats = self._store_errors.drop(str(exc), time.monotonic())
        if fatal or repeats is not None:
            fields: dict[str, Any] = {"error": str(exc), "fatal": fatal}
            if repeats is not None and repeats > 1:
                fields["count"] = repeats
            self.log.error("store.error", **fields)
        for pending in queue:
            pending.error = NodeError(f"not stored: {exc}")
            pending.done.set()
        # The engine's transient state may describe what was rolled back.
        self.engine.events()
        if fatal:
            self._fatal = str(exc)
            raise exc
        self.engine = Engine(self.store, self.engine_config, now=time.time())
        self._store_failures += 1
        pause = min(STORE_RETRY_MAX, STORE_RETRY_MIN * 2 ** (self._store_failures - 1))
        self._store_retry_at = time.monotonic() + pause

    def _dispatch(self, events: list[Any]) -> None:
        delivered = False
        counters = self.counters
        for event in events:
            if isinstance(event, MessageReceived):
                counters["delivered"] += 1
                delivered = True
                if event.seq is None:
                    m = event.message
                    received = ReceivedMessage(
                        None, m.group_id, m.id, m.timestamp, m.body, event.peer, True
                    )
                    for listener in self._ephemeral_listeners:
                        listener.append(received)
            elif isinstance(event, MessageAcknowledged):
                counters["acknowledged"] += 1
            elif isinstance(event, GaveUp):
                counters["gave_up"] += 1
                self.log.warning(
                    "message.gave_up", message=short(event.message_id),
                    peer=self._peer_name(event.peer), reason=event.reason,
                )
            elif isinstance(event, PeerReachable):
                self.log.info("peer.reachable", peer=self._peer_name(event.peer))
        if delivered:
            self._delivered.set()
            self._delivered = trio.Event()

    def _peer_name(self, peer_id: bytes) -> str:
        state = self.peers.get(peer_id)
        return state.config.name if state else short(peer_id)

    # -- status -------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        """Everything `mvds status --json` shows."""
        now = time.time()
        pending = self.store.record_stats()
        peers = []
        for peer_id, state in sorted(self.peers.items(), key=lambda kv: kv[1].config.name):
            heard = self.engine.last_heard(peer_id)
            rtt = self.engine.rtt(peer_id)
            engine_counts = self.engine.peer_stats.get(peer_id, Counter())
            peers.append(
                {
                    "name": state.config.name,
                    "id": peer_id.hex(),
                    "address": state.config.address,
                    "resolved": format_address(*state.address[:2]) if state.address else None,
                    "plaintext": state.config.plaintext,
                    "groups": list(state.config.groups),
                    "reachable": heard is not None
                    and now - heard < self.engine_config.offline_after,
                    "last_heard_s": None if heard is None else round(now - heard, 3),
                    "rtt_ms": None if rtt is None else round(rtt * 1000, 2),
                    "pending": {
                        kind.name.lower(): pending.get((peer_id, kind), 0) for kind in RecordType
                    },
                    "datagrams_in": state.counters["datagrams_in"],
                    "datagrams_out": state.counters["datagrams_out"],
                    "bytes_in": state.counters["bytes_in"],
                    "bytes_out": state.counters["bytes_out"],
                    "retransmissions": engine_counts["retransmissions"],
                    "payloads_in": engine_counts["payloads_in"],
                    "payloads_out": engine_counts["payloads_out"],
                    "requests_capped": engine_counts["requests_capped"],
                    "rate_limited": state.counters["rate_limited"],
                }
            )
        transport = self.transport
        drops = Counter(self._drops.counts)
        if transport is not None:
            drops.update(transport.drops)
        return {
            "peer_id": self.identity.peer_id_hex,
            "listen": format_address(*self.address) if transport else self.config.listen,
            "running": True,
            "online": self.online,
            "mode": self.config.mode,
            "delivery": self.config.delivery,
            "epoch_ms": self.config.epoch_ms,
            "uptime_s": round(now - self._started, 3),
            "messages_stored": self.store.message_count(),
            "last_seq": self.store.last_seq(),
            "groups": sorted(self.config.all_groups()),
            "peers": peers,
            "datagrams_in": transport.stats["datagrams_in"] if transport else 0,
            "datagrams_out": transport.stats["datagrams_out"] if transport else 0,
            "bytes_in": transport.stats["bytes_in"] if transport else 0,
            "bytes_out": transport.stats["bytes_out"] if transport else 0,
            "drops": dict(sorted(drops.items())),
            "engine": dict(sorted(self.engine.stats.items())),
            "node": dict(sorted(self.counters.items())),
        }


open_node = Node.open
"""``async with mvds.open_node(DIR) as node:`` — the embedding API."""

