"""A running MVDS peer: the trio shell around the sans-IO parts.

This module holds only what needs trio and the clock: opening and closing,
the loops (receive, pump, resolve, reachability, radio), the step, the
recovery from a store failure, and the public methods, which check their
arguments and queue a command.  The parts have no I/O and are tested
without sockets: the datagram gate (gate.py), peers (peers.py), commands
(commands.py), config edits (admin.py, configpush.py), subscriptions
(subscriptions.py), event dispatch (dispatch.py), ACK waits (acks.py),
debug tracing (trace.py), status (status.py), diagnostics (diagnose.py).
Pairing's orchestration (pairing_flow.py: invites, acceptances, what a
pairing handshake changes) awaits and reads the wall clock, so it is a
part of its own that reaches the node only through the callables it is
given here.

Everything that changes state happens in :meth:`Node._step`, synchronously
and inside ONE store transaction (datagrams through the gate into the
engine, queued appends and config edits, the payloads due); only after the
commit are payloads sealed and sent (no ACK leaves for a message not on
disk), the config swapped and saved, commands answered and messages handed
to readers.  If the commit fails nothing of the step happened: commands get
the error and a fresh engine is built on the store after a growing pause,
or, on a fatal error, the :class:`~mvds.store.errors.StoreError` comes out
of :meth:`Node.open`.  docs/ARCHITECTURE.md walks through a step;
docs/STORAGE.md has the rules for store errors.
"""

from __future__ import annotations

import dataclasses
import math
import os
import random
import time
from collections import Counter
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator, Callable

import trio

from mvds.daemon import admin, pairing
from mvds.daemon.acks import AckBook, AckWaiter, wanted_peers
from mvds.daemon.commands import Command, NodeError, address_arg, checked_body, known_group
from mvds.daemon.config import ConfigError, NodeConfig, format_address, parse_address
from mvds.daemon.configpush import apply_edits, apply_sharing, engine_config, push_config
from mvds.daemon.delivered import DeliveredMessage, ReceivedMessage  # noqa: F401 (the earlier name)
from mvds.daemon.diagnose import GroupCheck
from mvds.daemon.dispatch import Dispatcher
from mvds.daemon.gate import DatagramGate
from mvds.daemon.logs import get_logger
from mvds.daemon.logthrottle import LogThrottle
from mvds.daemon.nodedir import NodeDir
from mvds.daemon.pairing_flow import PairingFlow
from mvds.daemon.peers import PeerRegistry, PeerState, link_peers, route_resolved
from mvds.daemon.radio import RadioSchedule, run_radio
from mvds.daemon.setup import init_node  # noqa: F401 (mvds.daemon.node.init_node, the earlier home)
from mvds.daemon.status import build_status, live_peer, live_top
from mvds.daemon.subscriptions import Subscriptions
from mvds.daemon.trace import Tracer, debug_enabled  # noqa: F401 (the earlier home)
from mvds.daemon.transport import MAX_DRAIN, SMALL_BUFFER, UdpTransport
from mvds.excgroups import leaves
from mvds.engine import Engine
from mvds.ids import parse_group, short
from mvds.secure import EnvelopeCodec, Identity
from mvds.secure import session as sessions_mod
from mvds.secure.session import SessionManager
from mvds.store.base import Store
from mvds.store.errors import StoreError

STORE_RETRY_MIN = 0.05
STORE_RETRY_MAX = 2.0
"""After a store error that may clear up (a locked database, a full disk),
the next step waits STORE_RETRY_MIN seconds, doubling with each failure in a
row up to STORE_RETRY_MAX: a lasting fault costs a little CPU and a log line
now and then, not a busy loop (a fresh engine always has work due at once)."""

STORE_ERROR_LOG_INTERVAL = 10.0
"""The same store error is logged at once, then at most once per this many
seconds, with how often it happened since the previous line."""



def wall_clock() -> float:
    """The wall clock, read ONCE per node start (:attr:`Node.time_base`).

    Everything the node schedules runs on the monotonic clock; the wall
    clock only places that clock on the Unix time line (message
    timestamps, handshake timestamps, the epochs stored with in-flight
    records), so a wall-clock jump while running moves nothing.
    """
    return time.time()

REACHABILITY_CHECK = 1.0
"""Seconds between checks for peers that went silent (the peer.unreachable log line)."""

STEP_DATAGRAMS = 128
"""Most received datagrams one step takes (the rest wait for the next step,
which follows at once).  A step ACKs what it took only when it ends: taking
a whole burst (a window of 1,024 messages is about 340 datagrams) made the
sender wait for the whole burst's ACKs while this node worked, then this
node wait while the sender built the next burst.  Smaller steps send ACKs
sooner, so the sender refills its window while this node works through
the rest.  Measured (python -m benchmarks daemon, three repeats, 0 = the
whole inbox): batch 20,364 / 21,079 / 16,729 msg/s, interactive 11,324 /
12,641 / 10,252, p50 1.90 / 1.56 / 2.23 ms at 0 / 128 / 64."""

INBOX_LIMIT = MAX_DRAIN
"""Received datagrams held in memory before the socket is read again: past
it they wait in the kernel's buffer (which drops when full, as any
network does), so a flood cannot grow the inbox without bound."""

WARM_ROWS = 5000
"""Messages read per slice while range indexes are built at start (a few
milliseconds: steps run between slices)."""


class Node:
    """One MVDS peer.  Open it with :meth:`Node.open` (an async context manager)."""

    def __init__(
        self,
        *,
        config: NodeConfig,
        store: Store,
        identity: Identity,
        nodedir: NodeDir | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self.identity = identity
        self.nodedir = nodedir
        self.time_base = wall_clock() - time.monotonic()
        """Engine time = time_base + time.monotonic(): Unix seconds as of
        the start, advancing with the monotonic clock only."""
        self.codec = EnvelopeCodec(identity)
        self.sessions = SessionManager(
            identity, keepalive_s=config.keepalive_s, wall_offset=self.time_base
        )
        # The node's own id decides which side of a pair runs the periodic
        # reconciliations (mvds/engine/catchup.py).
        self.engine_config = dataclasses.replace(engine_config(config), node_id=identity.peer_id)
        self.log = get_logger(node=identity.peer_id_hex[:8])
        self._rng = random.Random(config.seed)
        self._radio = RadioSchedule.parse(config.schedule) if config.schedule else None
        self._window_fresh: set[bytes] = set()
        """Peers not heard yet since our radio last came up (Engine.window_opened)."""
        self.peers = PeerRegistry(config.peer_max_bytes_per_s)
        self.gate = DatagramGate(
            self.codec, self.peers, sessions=self.sessions, max_datagram=config.max_datagram,
            drop_log_interval=config.drop_log_interval_s, log=self.log,
        )
        self._warnings = LogThrottle(interval=60.0)
        self.counters: Counter[str] = Counter()
        self._inbox: list[tuple[bytes, Any]] = []
        self._queue: list[Command] = []
        self._wake = trio.Event()
        self.subscriptions = Subscriptions(self.counters)
        self._started = time.monotonic()
        self._names_cache: tuple[NodeConfig, dict[bytes, str]] | None = None
        self.acks = AckBook()
        self.tracer = Tracer(self.log)
        self.groupcheck = GroupCheck()
        """Messages of groups not shared with their sender, per (peer, group)."""
        self.mismatches = self.groupcheck.mismatches
        self.dispatcher = Dispatcher(
            log=self.log, tracer=self.tracer, counters=self.counters,
            subscriptions=self.subscriptions, acks=self.acks, peers=self.peers,
            unknown=self.gate.unknown, warnings=self._warnings, group_names=self.group_names,
        )
        self._closing = False
        self._running = False
        self._fatal: str | None = None
        self._store_errors = LogThrottle(interval=STORE_ERROR_LOG_INTERVAL)
        self._store_failures = 0  # failed steps in a row
        self._store_retry_at = 0.0  # time.monotonic() before which no step runs
        self.transport: UdpTransport | None = None
        self.engine = Engine(store, self.engine_config, now=self.now())
        self._resume_engine = True  # the first step resumes the stored schedule
        link_peers(config, *self.peers.sync(config), self.codec, self.sessions)
        push_config(self.engine, store, config, self.now())
        try:
            invites = pairing.InviteBook.load(nodedir.path / "invites.json" if nodedir else None)
        except pairing.PairingError as exc:
            raise NodeError(str(exc)) from None
        self.pairing_flow = PairingFlow(
            invites=invites, sessions=self.sessions, own_id=identity.peer_id, log=self.log,
            config=lambda: self.config, port=lambda: self.address[1],
            check_edit=self._edit, submit_edit=lambda edit: self._submit(edit=edit),
            reach=self._reach, last_heard=lambda peer_id: self.engine.last_heard(peer_id),
            now=self.now, peer_name=self._peer_name,
        )
        # Nothing of the retired static-key envelope is read: an old node
        # directory's nonce file and replay/<peer> meta rows are ignored.

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
            inner = leaves(group)
            if len(inner) == 1:
                raise inner[0] from None
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
            if self.config.links:  # testbed link emulation (mvds/daemon/netem.py)
                self.transport.use_links(self.config.links, self.config.seed, self.peers.name_at)
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
                now = self.now()
                for peer_id in self.peers:
                    self.engine.announce(peer_id, now)
                nursery.start_soon(self._receive_loop)
                nursery.start_soon(self._pump_loop)
                nursery.start_soon(self.transport.run_sender)
                nursery.start_soon(self._resolve_loop)
                nursery.start_soon(self._reachability_loop)
                nursery.start_soon(self.pairing_flow.run)
                if self._radio is not None:
                    nursery.start_soon(run_radio, self._radio, self.transport, self._radio_up, self.log)
                if self.engine_config.reconcile:
                    nursery.start_soon(self._warm_range_indexes)
                task_status.started()
        finally:
            self.transport.close()

    async def _warm_range_indexes(self) -> None:
        """With reconciliation on, build each group's range index now, a
        slice of messages at a time with steps between, rather than in the
        step of the group's first reconciliation: at a million messages the
        build reads for seconds, and every peer would wait for that step."""
        groups = self.config.all_groups()
        for name in groups:
            group_id = parse_group(name)
            try:
                while not self.store.warm_range_index(group_id, WARM_ROWS):
                    await trio.sleep(0)
            except StoreError:
                return  # built at first use instead, once the store is back
        self.log.debug("reconcile.indexes_built", groups=len(groups))

    def _close(self) -> None:
        self._closing = True
        for pending in self._queue:
            pending.error = NodeError("the node is shutting down")
            pending.done.set()
        self._queue.clear()
        if self._running:  # a node that never started has nothing to report stopping
            self.log.info("node.stopped")

    # -- clocks and peers -------------------------------------------------------
    def now(self) -> float:
        """The engine's clock: monotonic, on the Unix time line as of the start."""
        return self.time_base + time.monotonic()

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
        return known_group(group, self.store.is_member)

    async def _submit(
        self,
        apply: Callable[[float], Any] | None = None,
        *,
        edit: Callable[[NodeConfig], NodeConfig] | None = None,
    ) -> Any:
        if self._closing:
            raise NodeError("the node is shutting down")
        if self._fatal:
            raise NodeError(f"the node stopped: {self._fatal}")
        pending = Command(apply, edit)
        self._queue.append(pending)
        self._wake.set()
        await pending.done.wait()
        if pending.error is not None:
            raise pending.error
        return pending.result

    async def append(self, group: str | bytes, body: bytes, *, ephemeral: bool = False) -> bytes:
        """Append a message; returns its id once it is committed to the store."""
        group_id = self.group_id(group)
        body = checked_body(body, self.config.max_body)

        def apply(now: float) -> bytes:
            return self.engine.append(group_id, body, now, ephemeral=ephemeral).id

        message_id = await self._submit(apply)
        if self.tracer.enabled:
            self.tracer.line(time.monotonic(), "message.appended", message=short(message_id),
                        group=self.group_names().get(group_id, short(group_id)),
                        ephemeral=ephemeral, bytes=len(body),
                        peers=[self._peer_name(p) for p in self.store.shared_peers(group_id)])
        return message_id

    async def append_many(self, group: str | bytes, bodies: list[bytes]) -> list[bytes]:
        """Append several messages in one transaction; returns their ids in order."""
        group_id = self.group_id(group)
        checked = [checked_body(body, self.config.max_body) for body in bodies]

        def apply(now: float) -> list[bytes]:
            return [message.id for message in self.engine.append_many(group_id, checked, now)]

        ids = await self._submit(apply)
        if self.tracer.enabled and ids:
            self.tracer.line(time.monotonic(), "messages.appended", count=len(ids), first=short(ids[0]),
                        last=short(ids[-1]), group=self.group_names().get(group_id, short(group_id)))
        return ids

    async def wait_acked(
        self,
        message_id: bytes,
        peers: int | list[str] | tuple[str, ...] | None = None,
        *,
        timeout: float | None = 30.0,
    ) -> list[str]:
        """Wait until peers acknowledged a stored message (they hold it):
        ``peers`` None means every peer its group is shared with, an int
        that many of them, a list those peers by name.  Returns the names
        of the peers that acknowledged; raises :class:`NodeError` on
        ``timeout`` (seconds; None: no limit), naming who is missing.

        A peer whose sync record for the message is gone already holds it
        (records end with an ACK), so waiting after the ACK came returns
        at once."""
        stored = self.store.get_message(message_id)
        if stored is None:
            raise NodeError(f"message {message_id.hex()} is not stored here")
        shared = set(self.store.shared_peers(stored.group_id))
        wanted, need = wanted_peers(shared, peers, self.config.peer_named)
        waiter = AckWaiter(wanted, need)
        # Settled already: the record ended with an ACK before we asked.
        for peer_id in wanted:
            if self.store.get_record(message_id, peer_id) is None:
                waiter.acked.add(peer_id)
        return await self.acks.wait(message_id, waiter, timeout, self._peer_name)

    def _edit(self, edit: Callable[[NodeConfig], NodeConfig]) -> Callable[[NodeConfig], NodeConfig]:
        """Check an edit against the current config now (a refused edit is
        answered at once and never queued); the step applies it again to
        the config of its turn, so concurrent edits compose."""
        try:
            edit(self.config)
        except ValueError as exc:  # AdminError, ConfigError: pure, nothing changed
            raise NodeError(str(exc)) from None
        return edit

    async def join(self, group: str) -> bytes:
        """Become a member of a group (append to it, accept it from peers sharing it)."""
        await self._submit(edit=self._edit(lambda config: admin.join(config, group)))
        return parse_group(group)

    async def leave(self, group: str) -> None:
        """Leave a group: it is unshared from every peer and dropped from the
        config, so nothing of it syncs any more.  Its stored messages stay
        readable (and the store still knows the group: sharing it again
        syncs its history)."""
        await self._submit(edit=self._edit(lambda config: admin.leave(config, group)))

    def groups(self) -> list[dict[str, Any]]:
        """The node's groups: name, id (hex) and the peers each is shared with."""
        return admin.group_list(self.config)

    async def add_peer(
        self,
        name: str,
        peer_id: str | bytes,
        address: str | tuple[str, int],
        groups: list[str] | tuple[str, ...] = (),
        *,
        plaintext: bool = False,
    ) -> None:
        """Trust a peer and share these groups with it (replaces an entry of that name).

        ``address`` is ``"HOST:PORT"`` (``"[::1]:7000"`` for IPv6) or a
        ``(host, port)`` tuple such as another node's :attr:`address`."""
        address = address_arg(address)
        edit = self._edit(lambda config: admin.add_peer(
            config, name, peer_id, address, groups, plaintext=plaintext, own_id=self.peer_id))
        await self._submit(edit=edit)
        entry = self.config.peer_named(name)
        state = self.peers.get(entry.peer_id) if entry is not None else None
        if state is not None:
            await self._resolve_peer(state)

    async def remove_peer(self, name: str) -> None:
        """Stop trusting a peer; its pending sync state is dropped."""
        await self._submit(edit=self._edit(lambda config: admin.remove_peer(config, name)))

    async def share(self, group: str, peer_name: str) -> None:
        """Share a group with a configured peer (its history syncs too)."""
        await self._submit(edit=self._edit(lambda config: admin.share(config, group, peer_name)))

    async def unshare(self, group: str, peer_name: str) -> None:
        """Stop sharing a group with a peer."""
        await self._submit(edit=self._edit(lambda config: admin.unshare(config, group, peer_name)))

    # -- pairing (mvds/daemon/pairing_flow.py; docs/PROTOCOL.md "Pairing") -------
    async def invite(
        self,
        groups: list[str] | tuple[str, ...] = (),
        *,
        expires: float = pairing.DEFAULT_EXPIRES_S,
        name: str | None = None,
        addresses: list[str] | tuple[str, ...] | None = None,
    ) -> str:
        """A single-use invite code (valid ``expires`` seconds) that pairs the
        node that accepts it with this one and shares ``groups`` both ways.
        ``name`` names the new peer here (default ``peer-`` and its id's
        first hex digits); ``addresses`` are where the other node can reach
        this one (default: the listen address, every interface address for
        0.0.0.0).  The node must be running until the code is used."""
        return await self.pairing_flow.invite(list(groups), expires, name, addresses)

    async def accept(self, code: str, *, name: str | None = None, timeout: float = 30.0) -> dict[str, Any]:
        """Pair with the node that made ``code`` (:meth:`invite`): trust it,
        share the code's groups with it, and wait (up to ``timeout`` s) until
        it answered with the invite's secret and trusts this node too.
        Returns ``{"peer": name, "peer_id": hex, "groups": [...]}``; a code
        that is mistyped, expired, used, or a node that does not answer is a
        :class:`NodeError` (and nothing of the pairing stays configured)."""
        return await self.pairing_flow.accept(code, name, timeout)

    async def _reach(self, peer_id: bytes) -> None:
        """Resolve a (newly configured) peer's address and announce this node
        to it at once, not at the engine's next timer."""
        state = self.peers.get(peer_id)
        if state is not None:
            await self._resolve_peer(state)
        self.engine.announce(peer_id, self.now())
        self._wake.set()

    async def messages(
        self,
        since: int = 0,
        *,
        group: str | bytes | None = None,
        follow: bool = True,
        own: bool = False,
    ) -> AsyncIterator[DeliveredMessage]:
        """Received messages with ``seq > since`` in order, then (with ``follow``)
        new ones as they arrive, ephemeral ones included.  With ``own`` the
        node's own appends come too, in the same sequence (own and received
        messages share one seq counter), so a group's whole history reads in
        one pass.  Resume after a restart with ``since=<last seq you
        processed>``: nothing is skipped or repeated."""
        async for batch in self.message_batches(since, group=group, follow=follow, own=own):
            for message in batch:
                yield message

    async def message_batches(
        self,
        since: int = 0,
        *,
        group: str | bytes | None = None,
        follow: bool = True,
        own: bool = False,
    ) -> AsyncIterator[list[DeliveredMessage]]:
        """Like :meth:`messages`, a list at a time (up to 512): what is ready
        comes in one piece, which is what a busy reader wants."""
        if not isinstance(since, int) or isinstance(since, bool) or since < 0:
            raise NodeError(f"since is a seq, 0 or more (got {since!r})")
        group_id = None if group is None else self.group_id(group)
        names = self.group_names()
        async for batch in self.subscriptions.batches(
            self.store, since, group_id, follow, own=own, names=names
        ):
            yield batch

    def group_names(self) -> dict[bytes, str]:
        """Group id -> the name this node's config gives it (hex ids map to themselves)."""
        config = self.config
        cached = self._names_cache
        if cached is None or cached[0] is not config:
            cached = self._names_cache = (
                config, {parse_group(name): name for name in config.all_groups()})
        return cached[1]

    # -- the loops -------------------------------------------------------------
    async def _receive_loop(self) -> None:
        transport = self.transport
        assert transport is not None
        while True:
            await transport.wait_readable()
            if len(self._inbox) >= INBOX_LIMIT:
                await trio.sleep(0.001)  # the steps are behind: let them catch up
                continue
            datagrams = transport.drain()
            if datagrams:
                self._inbox.extend(datagrams)
                self._wake.set()

    async def _pump_loop(self) -> None:
        idle_spins = 0
        while True:
            timeout = self._timeout()
            if timeout > 0 and self.engine_config.reconcile and self.store.settle_range_indexes():
                timeout = self._timeout()  # idle: appends' index keys went in meanwhile
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
                # Pausing after a store error: let it clear up, but keep the
                # sessions alive (keepalives, handshakes: nothing of the store).
                self._session_step()
                continue
            self._step()

    def _timeout(self) -> float:
        if self._store_failures:
            pause = self._store_retry_at - time.monotonic()
            if pause > 0:
                session_due = self.sessions.next_timer()
                if session_due is not None:
                    pause = min(pause, max(0.0, session_due - time.monotonic()))
                return 0.0 if self._inbox else pause
        if self._inbox or self._queue:
            return 0.0
        mono = time.monotonic()
        wait = math.inf
        due = self.engine.next_timer()
        if due is not None:
            wait = due - (self.time_base + mono)
        session_due = self.sessions.next_timer()
        if session_due is not None:
            wait = min(wait, session_due - mono)
        return max(0.0, wait)

    def _radio_up(self) -> None:
        now = self.now()
        for peer_id in self.peers:
            self.engine.announce(peer_id, now)
        # Pending handshakes go out again now, not after a backoff that grew
        # while the radio was down (SessionManager.link_up).
        self.sessions.link_up(time.monotonic())
        self._window_fresh = set(self.peers)
        self._send_session_output()
        self._wake.set()

    async def _reachability_loop(self) -> None:
        """Log (info) each plaintext peer that stops being reachable: nothing heard
        from it for ``offline_after`` seconds (the engine's PeerReachable
        event logs the way back)."""
        while True:
            await trio.sleep(REACHABILITY_CHECK)
            now = self.now()
            for peer_id, state in list(self.peers.items()):
                heard = self.engine.last_heard(peer_id)  # sessions report the others
                if state.config.plaintext and state.went_silent(
                        heard, now, self.engine_config.offline_after):
                    self.log.info("peer.unreachable", peer=self._peer_name(peer_id),
                                  last_heard_s=round(now - heard, 1))

    async def _resolve_loop(self) -> None:
        while True:
            await trio.sleep(self.config.resolve_interval_s)
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
            state.resolve_failed(exc.strerror or str(exc), self.now())
            if self._warnings.count(f"resolve/{state.config.name}", time.monotonic()) is not None:
                self.log.warning(
                    "peer.unresolved", peer=state.config.name, address=state.config.address,
                    error=str(exc),
                )
            return
        state.resolve_error = state.resolve_failed_since = None
        if infos and self.peers.get(state.peer_id) is state:
            route_resolved(state, infos[0][4], self.sessions, time.monotonic())
            self._send_session_output()

    def _send_session_output(self) -> None:
        """Send what the session layer queued outside a step (nothing of the store)."""
        out = self.gate.session_output()
        if out and self.transport is not None:
            self.transport.send(out)

    # -- one step ----------------------------------------------------------------
    def _step(self) -> None:
        """Everything that is ready, in one transaction; outputs only after commit."""
        clock = time.monotonic()
        now = self.time_base + clock
        inbox = self._inbox[:STEP_DATAGRAMS]
        del self._inbox[:STEP_DATAGRAMS]
        queue, self._queue = self._queue, []
        retrans: dict[bytes, int] = {}
        engine = self.engine
        gate = self.gate
        # The session layer first, outside the transaction: it keeps its
        # state in memory only (handshakes, keepalives and path probes go
        # out even while the store fails: they carry nothing of it).
        opened_all = gate.open_all(inbox, clock)
        gate.run_timers(clock)
        sessions = self.sessions
        outgoing: list[tuple[bytes, Any]] = gate.session_output()
        session_events = sessions.events()
        for event in session_events:
            if isinstance(event, sessions_mod.SessionEstablished) and not event.rekey:
                # A new session: say so at once with a payload, so the peer's
                # engine hears from us and pulls its backed-off records forward.
                engine.announce(event.peer_id, now)
            elif isinstance(event, (sessions_mod.InviteAccepted, sessions_mod.InviteAnswered)):
                paired = self.pairing_flow.paired(event)
                if paired is not None:
                    queue.append(paired)
        old_config = self.config
        config, staged = apply_edits(old_config, queue, self.nodedir.config if self.nodedir else None)
        try:
            with self.store.transaction():
                if self._resume_engine:
                    engine.resume(now)
                for peer_id, payload in opened_all:
                    if peer_id in self._window_fresh:  # first heard in this radio window
                        self._window_fresh.discard(peer_id)
                        engine.window_opened(peer_id, now)
                    if payload.messages:
                        self.groupcheck.check(
                            old_config, peer_id, payload.messages,
                            loose=self.engine_config.accept_unshared, known=self.group_names())
                    engine.receive(peer_id, payload, now)
                for pending in queue:
                    if pending.apply is not None:
                        pending.result = pending.apply(now)
                if config is not old_config:
                    apply_sharing(engine, old_config, config, now)
                if self.tracer.enabled:
                    retrans = self.tracer.retransmissions_before(engine.peer_stats)
                payloads = engine.payloads_to_send(now)
        except StoreError as exc:
            if staged is not None:
                admin.discard(staged)
            if outgoing and self.transport is not None:
                self.transport.send(outgoing)
            self.dispatcher.session_events(session_events, clock, time.time())
            self._on_store_error(exc, queue)
            return
        self._resume_engine = False
        # Committed: only now is anything of the step sealed (in memory).
        seal = gate.seal
        for peer_id, payload in payloads:
            outgoing.extend(seal(peer_id, payload, clock))
        session_events.extend(sessions.events())
        if staged is not None:
            assert self.nodedir is not None
            admin.publish(staged, self.nodedir.config)
        if config is not old_config:
            self._swap_config(config, now)
        if self._store_failures:
            self.log.info("store.recovered", failed_steps=self._store_failures)
            self._store_failures = 0
        if self.tracer.enabled:
            self.tracer.retransmissions(clock, retrans, engine.peer_stats, self._peer_name)
        if outgoing and self.transport is not None:
            self.transport.send(outgoing)
        for pending in queue:
            pending.done.set()
        self.dispatcher.session_events(session_events, clock, time.time())
        if any(pending.apply is not None for pending in queue):
            self.subscriptions.notify()  # own appends: readers with own=True
        self.dispatcher.engine_events(engine.events(), self.now(), time.monotonic())

    def _session_step(self) -> None:
        """While the store pauses after an error: datagrams through the session
        layer (handshakes and keepalives answered; payloads dropped, counted:
        MVDS retransmits them) and the session timers, so peers stay reachable."""
        clock = time.monotonic()
        inbox, self._inbox = self._inbox, []
        dropped = len(self.gate.open_all(inbox, clock))  # payloads: MVDS retransmits them
        if dropped:
            self.counters["dropped_store_paused"] += dropped
        self.gate.run_timers(clock)
        self._send_session_output()
        self.dispatcher.session_events(self.sessions.events(), clock, time.time())

    def _swap_config(self, new: NodeConfig, now: float) -> None:
        """After the commit and the file: the new config in memory, and the
        peers it adds, moves or removes in the registry and the codec."""
        self.config = new
        changed, removed = self.peers.sync(new)
        link_peers(new, changed, removed, self.codec, self.sessions,
                   keep=self.pairing_flow.adopted())
        for peer_id in changed:  # new, moved or switched envelope: a fresh start
            self.engine.announce(peer_id, now)
            self.gate.unknown.forget(peer_id)
        self.groupcheck.config_changed(new)

    def _on_store_error(self, exc: StoreError, queue: list[Command]) -> None:
        """The step's transaction was rolled back: nothing of it was sent,
        answered or handed over.  Log it, fail its requests, then either
        carry on with a fresh engine after a pause or (fatal) stop the node
        by raising ``exc`` out of the pump loop."""
        fatal = getattr(exc, "fatal", False)
        self.counters["store_errors"] += 1
        repeats = self._store_errors.count(str(exc), time.monotonic())
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
        self.engine = Engine(self.store, self.engine_config, now=self.now())
        self._resume_engine = True
        self._store_failures += 1
        pause = min(STORE_RETRY_MAX, STORE_RETRY_MIN * 2 ** (self._store_failures - 1))
        self._store_retry_at = time.monotonic() + pause

    def _peer_name(self, peer_id: bytes) -> str:
        return self.peers.name(peer_id, short(peer_id))

    # -- status -------------------------------------------------------------------
    async def status(self) -> dict[str, Any]:
        """Everything `mvds status --json` shows (mvds/daemon/status.py).

        Async like the rest of the API (``await node.status()``); the same
        snapshot without ``await`` is :meth:`status_now`."""
        return self.status_now()

    def status_now(self) -> dict[str, Any]:
        """:meth:`status` for synchronous callers (a metrics handler, a
        callback): the same dict, taken at once."""
        clock = time.monotonic()
        now = self.time_base + clock
        names = self.group_names()
        peers_live = {
            peer_id: live_peer(
                state, engine=self.engine, sessions=self.sessions,
                offline_after=self.engine_config.offline_after, acks=self.acks,
                group_mismatches=self.groupcheck.for_peer(peer_id, names), now=now, clock=clock,
            )
            for peer_id, state in self.peers.items()
        }
        status = build_status(
            self.config,
            self.identity.peer_id_hex,
            pending=self.store.record_stats(),
            messages_stored=self.store.message_count(),
            last_seq=self.store.last_seq(),
            peers_live=peers_live,
            live=live_top(
                self.config, transport=self.transport, engine=self.engine,
                sessions=self.sessions, gate=self.gate, known_peers=self.peers,
                counters=self.counters, uptime_s=clock - self._started, now=now,
            ),
        )
        status["invites"] = self.pairing_flow.invites.summary(time.time())
        return status


open_node = Node.open
"""``async with mvds.open_node(DIR) as node:`` — the embedding API."""

