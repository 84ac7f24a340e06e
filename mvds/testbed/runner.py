"""``mvds testbed run``: a scenario with real daemons on loopback.

One ``mvds run`` process per node, each in its own directory under the
output folder, listening on 127.0.0.1; each node's ``links`` file shapes
what it sends to each peer (:mod:`mvds.daemon.netem`).  The runner drives
the plan (:mod:`mvds.testbed.plan`) through each daemon's control API:

- appends at their times; every append a daemon acknowledges goes into
  the ledger with its author's causal past (what the runner saw the author
  deliver before asking);
- faults at their times: partition / heal rewrite the links files of both
  ends of each link, kill is SIGKILL, restart starts the process again,
  pause / resume are SIGSTOP / SIGCONT, move restarts a node on a new port
  and tells its neighbours the new address (as DNS would in a real network);
- one live subscription per node records when each message arrived; a
  status poll samples traffic counters and sync state.

It ends once every expected delivery was seen after the workload and the
faults are over, or at the scenario's duration, reads every node's history
back from its store and hands everything to :func:`mvds.testbed.verdict.judge`.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Callable

import trio

from mvds.daemon.async_client import AsyncControlClient
from mvds.daemon.config import PeerConfig, load_config, save_config
from mvds.daemon.control_client import ControlError
from mvds.daemon.netem import LinkConditions, render_links
from mvds.daemon.setup import free_udp_port, init_node_dir
from mvds.testbed.plan import PlannedAppend, plan_appends
from mvds.testbed.scenario import Fault, Scenario
from mvds.testbed.verdict import LedgerEntry, judge, markdown

START_TIMEOUT = 60.0
"""Seconds a daemon may take to answer its first ping (50 start at once on 2 cores)."""
STATUS_INTERVAL = 1.0
CONTROL_ERRORS = (ControlError, OSError, trio.BrokenResourceError, trio.ClosedResourceError,
                  ValueError)


class TestbedError(Exception):
    """The run could not be carried out (a daemon did not start, ...): one line."""


@dataclass
class TNode:
    name: str
    path: Path
    port: int
    peer_id: str = ""
    host: str = "127.0.0.1"
    process: subprocess.Popen | None = None
    log: IO[bytes] | None = None
    state: str = "stopped"
    last_seq: int = 0
    seen_at: dict[str, float] = field(default_factory=dict)
    delivered_from: Counter[str] = field(default_factory=Counter)
    durable_appends: int = 0
    cut: set[str] = field(default_factory=set)
    done: Counter[str] = field(default_factory=Counter)
    """Counters of earlier incarnations (before a kill or a move)."""
    current: Counter[str] = field(default_factory=Counter)
    peak_records: int = 0
    scope: trio.CancelScope | None = None

    @property
    def socket(self) -> Path:
        return self.path / "mvds.sock"

    @property
    def address(self) -> str:
        """Where its daemon listens and its neighbours send (``host:port``)."""
        return f"{self.host}:{self.port}"


def author_of(text: str | None, scenario: str) -> str | None:
    """The writer named in a planned body (``scenario:node:index:...``)."""
    if not text or not text.startswith(scenario + ":"):
        return None
    parts = text[len(scenario) + 1:].split(":", 2)
    return parts[0] if len(parts) == 3 else None


class Testbed:
    def __init__(self, scenario: Scenario, out: Path, *, progress: Callable[[str], None] | None = None,
                 python: str = sys.executable) -> None:
        self.scenario = scenario
        self.out = out
        self.python = python
        self.progress = progress
        self.nodes: dict[str, TNode] = {}
        self.ledger: list[LedgerEntry] = []
        self.refused = 0
        self.t0 = 0.0
        self.plan = plan_appends(scenario)
        self.faults_done = 0
        self.appends_done = 0
        self.nursery: trio.Nursery | None = None
        self.latencies: list[float] = []
        self.fault_log: list[dict[str, Any]] = []
        """Each fault as applied: when it started and when it was done (s)."""
        self.extra_report: dict[str, Any] = {}
        """What a mode adds to report.json (netns: the kernel's counters)."""

    # -- setup -----------------------------------------------------------------
    def prepare(self) -> None:
        """Node directories, identities, configs and links files."""
        s = self.scenario
        self.out.mkdir(parents=True, exist_ok=True)
        used: set[int] = set()
        nodes_dir = self.out / "nodes"
        if nodes_dir.exists() and any(nodes_dir.iterdir()):
            raise TestbedError(f"{nodes_dir} already holds nodes: use a fresh --out directory")
        for index, name in enumerate(s.names):
            path = nodes_dir / name
            host, port = self.place(index, used)
            _, identity = init_node_dir(path, listen=f"{host}:{port}")
            self.nodes[name] = TNode(name, path, port, identity.peer_id_hex, host=host)
        for index, name in enumerate(s.names):
            node = self.nodes[name]
            spec = s.node(name)
            config = load_config(node.path / "mvds.toml")
            config.mode = spec.mode
            config.delivery = spec.delivery
            config.schedule = spec.schedule
            config.loss = spec.loss
            config.seed = s.seed * 1000 + index
            config.epoch_ms = s.epoch_ms
            config.log_format = "json"
            config.groups = [g.name for g in s.groups if name in g.members]
            config.links = str((node.path / "links.toml").resolve())
            config.peers = [
                PeerConfig(peer, self.nodes[peer].peer_id, self.nodes[peer].address, groups)
                for peer, groups in s.shares(name).items()
            ]
            save_config(node.path / "mvds.toml", config)
            self.write_links(node)

    def place(self, index: int, used: set[int]) -> tuple[str, int]:
        """The address node number ``index`` starts on: loopback, a free port."""
        return "127.0.0.1", self._free_port(used)

    async def relocate(self, node: TNode) -> None:
        """A new address for a stopped node (a move): a new loopback port."""
        node.port = self._free_port({n.port for n in self.nodes.values()})

    def launcher(self, node: TNode) -> list[str]:
        """What the daemon's command line is run under (netns: ``ip netns exec``)."""
        return []

    @staticmethod
    def _free_port(used: set[int]) -> int:
        while True:
            port = free_udp_port()
            if port not in used:
                used.add(port)
                return port

    def write_links(self, node: TNode) -> None:
        links: dict[str, LinkConditions] = {}
        for peer in self.scenario.neighbours(node.name):
            conditions = self.scenario.conditions(node.name, peer)
            if peer in node.cut:
                conditions = LinkConditions(**{**conditions.to_dict(), "cut": True})
            links[peer] = conditions
        path = node.path / "links.toml"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(render_links(links))
        os.replace(tmp, path)

    # -- processes -------------------------------------------------------------
    def spawn(self, node: TNode) -> None:
        from mvds.cli.demo import die_with_parent

        if node.log is None:
            node.log = open(node.path / "daemon.log", "ab")
        node.process = subprocess.Popen(
            [*self.launcher(node), self.python, "-m", "mvds", "run", str(node.path)],
            stdout=node.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            process_group=0, preexec_fn=die_with_parent(),
        )
        node.state = "starting"

    START_POLL = 0.1
    """Seconds between pings of a starting daemon."""
    START_CHECK_EVERY = 0.0
    """Seconds between :meth:`start_failure` checks (0: after every ping)."""

    async def wait_ready(self, node: TNode) -> None:
        """Ping the node's control socket until it answers.  One loop for
        every runner; what differs is how a dead start shows, so a start
        that failed (:meth:`start_failure`, every :attr:`START_CHECK_EVERY`
        seconds) or took longer than START_TIMEOUT
        (:meth:`start_timeout_message`) is a TestbedError at once."""
        deadline = trio.current_time() + START_TIMEOUT
        checked = trio.current_time()
        while True:
            try:
                async with await AsyncControlClient.connect(node.socket) as client:
                    await client.request("ping")
                node.state = "running"
                return
            except CONTROL_ERRORS:
                pass
            now = trio.current_time()
            if now > deadline:
                raise TestbedError(self.start_timeout_message(node))
            if now - checked >= self.START_CHECK_EVERY:
                checked = now
                failure = await self.start_failure(node)
                if failure is not None:
                    raise TestbedError(failure)
            await trio.sleep(self.START_POLL)

    async def start_failure(self, node: TNode) -> str | None:
        """Why the node cannot come up any more (its process exited), or None."""
        assert node.process is not None
        if node.process.poll() is not None:
            return f"node {node.name} exited at start: {self.last_log_line(node)}"
        return None

    def start_timeout_message(self, node: TNode) -> str:
        return f"node {node.name} did not start within {START_TIMEOUT:g} s"

    @staticmethod
    def last_log_line(node: TNode) -> str:
        try:
            lines = (node.path / "daemon.log").read_text(errors="replace").strip().splitlines()
            return lines[-1] if lines else "no output"
        except OSError:
            return "no log"

    async def start_nodes(self) -> None:
        """Every node's daemon, started and answering its control socket."""
        for node in self.nodes.values():
            self.spawn(node)
        for node in self.nodes.values():
            await self.wait_ready(node)

    def stop_all(self) -> None:
        running = [n for n in self.nodes.values() if n.process is not None and n.process.poll() is None]
        for node in running:
            assert node.process is not None
            if node.state == "paused":
                node.process.send_signal(signal.SIGCONT)
            node.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 10
        for node in running:
            assert node.process is not None
            try:
                node.process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                node.process.kill()
                node.process.wait()
        for node in self.nodes.values():
            if node.log is not None:
                node.log.close()
                node.log = None

    # -- the run -----------------------------------------------------------------
    def now(self) -> float:
        return trio.current_time() - self.t0

    async def run(self) -> dict[str, Any]:
        self.prepare()
        started = time.monotonic()
        try:
            await self.start_nodes()
            startup = time.monotonic() - started
            self.t0 = trio.current_time()
            async with trio.open_nursery() as nursery:
                self.nursery = nursery
                for node in self.nodes.values():
                    self.follow(nursery, node)
                nursery.start_soon(self.sample_loop)
                nursery.start_soon(self.progress_loop)
                nursery.start_soon(self.fault_loop)
                await self.append_loop(nursery)
                await self.wait_converged()
                if self.progress is not None:
                    self.progress(self.progress_line())  # where it ended
                await self.sample_all()
                histories = await self.read_histories()
                nursery.cancel_scope.cancel()
            elapsed = self.now()
        finally:
            self.stop_all()
        members = {g.name: list(g.members) for g in self.scenario.groups}
        counters = {n.name: {**(n.done + n.current), "peak_records": n.peak_records}
                    for n in self.nodes.values()}
        verdict = judge(self.ledger, members, histories,
                        {n.name: n.seen_at for n in self.nodes.values()}, counters,
                        refused=self.refused, elapsed=elapsed,
                        unordered=frozenset(n.name for n in self.scenario.nodes
                                            if n.delivery == "eventual"))
        with open(self.out / "ledger.jsonl", "w") as f:
            for e in self.ledger:
                f.write(json.dumps({"id": e.message_id, "author": e.author, "index": e.index,
                                    "group": e.group, "acked_at": round(e.acked_at, 4),
                                    "ephemeral": e.ephemeral, "seen": e.seen}) + "\n")
        (self.out / "histories.json").write_text(json.dumps(histories) + "\n")
        self.latencies = sorted(
            max(0.0, at - e.acked_at)
            for e in self.ledger if not e.ephemeral
            for holder in members[e.group] if holder != e.author
            if (at := self.nodes[holder].seen_at.get(e.message_id)) is not None
        )
        verdict["startup_s"] = round(startup, 2)
        verdict["nodes"] = len(self.nodes)
        self.write_report(verdict, counters)
        return verdict

    def follow(self, nursery: trio.Nursery, node: TNode) -> None:
        """Start the live subscription of one incarnation of ``node``."""
        scope = trio.CancelScope()
        node.scope = scope

        async def task() -> None:
            with scope:
                try:
                    async with await AsyncControlClient.connect(node.socket) as client:
                        async for event in client.subscribe(since=node.last_seq, follow=True):
                            if event.get("event") != "message":
                                continue
                            message = event["message"]
                            if message.get("seq") is None:
                                continue  # ephemeral: not judged
                            node.last_seq = message["seq"]
                            node.seen_at.setdefault(message["id"], self.now())
                            author = author_of(message.get("text"), self.scenario.name)
                            if author is not None and author != node.name:
                                node.delivered_from[author] += 1
                except CONTROL_ERRORS:
                    pass  # the node went away (a kill, a move): restarted by the fault

        nursery.start_soon(task)

    async def append_loop(self, nursery: trio.Nursery) -> None:
        for planned in self.plan:
            delay = planned.at - self.now()
            if delay > 0:
                await trio.sleep(delay)
            nursery.start_soon(self.append, planned)
        await trio.sleep(max(0.0, self.scenario.workload.stop - self.now()))

    async def append(self, planned: PlannedAppend) -> None:
        node = self.nodes[planned.node]
        if node.state != "running":
            self.refused += 1
            return
        seen = dict(node.delivered_from)
        seen[node.name] = node.durable_appends
        body = planned.body(self.scenario.name).decode()
        try:
            with trio.fail_after(30):
                async with await AsyncControlClient.connect(node.socket) as client:
                    reply = await client.request("append", group=self.scenario.workload.group,
                                                 text=body, ephemeral=planned.ephemeral)
        except (trio.TooSlowError, *CONTROL_ERRORS):
            self.refused += 1
            return
        if not planned.ephemeral:
            node.durable_appends += 1
        self.appends_done += 1
        self.ledger.append(LedgerEntry(reply["message_id"], node.name, planned.index,
                                       self.scenario.workload.group, self.now(),
                                       planned.ephemeral, seen))

    async def fault_loop(self) -> None:
        for fault in self.scenario.faults:
            delay = fault.at - self.now()
            if delay > 0:
                await trio.sleep(delay)
            started = self.now()
            await self.apply(fault)
            self.faults_done += 1
            self.fault_log.append({"at": fault.at, "action": fault.action, "node": fault.node,
                                   "links": [list(pair) for pair in fault.links],
                                   "started": round(started, 3), "done": round(self.now(), 3)})

    def mark_cuts(self, fault: Fault) -> list[tuple["TNode", str]]:
        """Record a partition or heal in each end's ``cut`` set; the (node,
        neighbour) pairs it changed, both directions of every link, for the
        mode to apply (a links file here, nftables in --netns)."""
        changed = []
        for a, b in fault.links:
            for x, y in ((a, b), (b, a)):
                node = self.nodes[x]
                if fault.action == "partition":
                    node.cut.add(y)
                else:
                    node.cut.discard(y)
                changed.append((node, y))
        return changed

    async def apply(self, fault: Fault) -> None:
        if fault.action in ("partition", "heal"):
            for node, _ in self.mark_cuts(fault):
                self.write_links(node)
            return
        node = self.nodes[fault.node]
        assert node.process is not None
        if fault.action == "kill":
            node.process.send_signal(signal.SIGKILL)
            await trio.to_thread.run_sync(node.process.wait)
            self.retire(node, "killed")
        elif fault.action == "pause":
            node.process.send_signal(signal.SIGSTOP)
            node.state = "paused"
        elif fault.action == "resume":
            node.process.send_signal(signal.SIGCONT)
            node.state = "running"
        elif fault.action in ("restart", "move"):
            if fault.action == "move":
                node.process.send_signal(signal.SIGTERM)
                await trio.to_thread.run_sync(node.process.wait)
                self.retire(node, "moving")
                await self.relocate(node)
                config = load_config(node.path / "mvds.toml")
                config.listen = node.address
                save_config(node.path / "mvds.toml", config)
            self.spawn(node)
            await self.wait_ready(node)
            if fault.action == "move":
                await self.tell_neighbours(node)
            assert self.nursery is not None
            self.follow(self.nursery, node)

    def retire(self, node: TNode, state: str) -> None:
        node.state = state
        if node.scope is not None:
            node.scope.cancel()
        node.done += node.current
        node.current = Counter()

    async def tell_neighbours(self, node: TNode) -> None:
        for peer in self.scenario.neighbours(node.name):
            other = self.nodes[peer]
            if other.state != "running":
                continue
            groups = self.scenario.shares(peer).get(node.name, [])
            try:
                async with await AsyncControlClient.connect(other.socket) as client:
                    await client.request("add_peer", name=node.name, peer_id=node.peer_id,
                                         address=node.address, groups=groups)
            except CONTROL_ERRORS:
                pass

    # -- observation ------------------------------------------------------------
    async def sample_loop(self) -> None:
        interval = STATUS_INTERVAL if len(self.nodes) <= 10 else 2 * STATUS_INTERVAL
        while True:
            await trio.sleep(interval)
            await self.sample_all()

    async def sample_all(self) -> None:
        for node in self.nodes.values():
            if node.state == "running":
                await self.sample(node)

    async def sample(self, node: TNode) -> None:
        status: dict[str, Any] | None = None
        try:
            with trio.move_on_after(5):
                async with await AsyncControlClient.connect(node.socket) as client:
                    status = (await client.request("status"))["status"]
        except CONTROL_ERRORS:
            return
        if status is None:
            return
        peers = status.get("peers", [])
        records = sum(sum(p.get("pending", {}).values()) for p in peers)
        node.peak_records = max(node.peak_records, records)
        node.current = Counter({
            "bytes_out": status.get("bytes_out", 0),
            "datagrams_out": status.get("datagrams_out", 0),
            "retransmissions": sum(p.get("retransmissions", 0) for p in peers),
        })

    def expected_pairs(self) -> int:
        members = {g.name: set(g.members) for g in self.scenario.groups}
        return sum(len(members[e.group] - {e.author}) for e in self.ledger if not e.ephemeral)

    def delivered_count(self) -> int:
        members = {g.name: set(g.members) for g in self.scenario.groups}
        count = 0
        for e in self.ledger:
            if e.ephemeral:
                continue
            for holder in members[e.group] - {e.author}:
                if e.message_id in self.nodes[holder].seen_at:
                    count += 1
        return count

    async def wait_converged(self) -> None:
        last_fault = max((f.at for f in self.scenario.faults), default=0.0)
        await trio.sleep(max(0.0, last_fault - self.now()))
        while self.now() < self.scenario.duration:
            if self.faults_done == len(self.scenario.faults) and \
                    self.delivered_count() == self.expected_pairs():
                return
            await trio.sleep(0.25)

    async def read_histories(self) -> dict[str, list[tuple[str, str | None]]]:
        out: dict[str, list[tuple[str, str | None]]] = {}
        for node in self.nodes.values():
            history: list[tuple[str, str | None]] = []
            if node.state == "paused":
                await self.apply(Fault(at=self.now(), action="resume", node=node.name))
            try:
                with trio.fail_after(60):
                    async with await AsyncControlClient.connect(node.socket) as client:
                        async for event in client.subscribe(since=0, follow=False):
                            if event.get("event") == "caught_up":
                                break
                            if event.get("event") == "message" and event["message"].get("seq") is not None:
                                m = event["message"]
                                history.append((m["id"], author_of(m.get("text"), self.scenario.name)))
            except (trio.TooSlowError, *CONTROL_ERRORS) as exc:
                raise TestbedError(f"cannot read node {node.name}'s history: {exc}") from None
            out[node.name] = history
        return out

    def progress_line(self) -> str:
        s = self.scenario
        up = sum(n.state == "running" for n in self.nodes.values())
        expected = self.expected_pairs()
        delivered = self.delivered_count()
        share = 100.0 * delivered / expected if expected else 0.0
        return (
            f"{s.name}: t={self.now():6.1f}s  appends {self.appends_done}/{len(self.plan)}  "
            f"delivered {delivered}/{expected} ({share:5.1f}%)  nodes up {up}/{len(self.nodes)}  "
            f"faults {self.faults_done}/{len(s.faults)}"
        )

    async def progress_loop(self) -> None:
        if self.progress is None:
            return
        while True:
            self.progress(self.progress_line())
            await trio.sleep(1.0)

    # -- output -----------------------------------------------------------------
    def write_report(self, verdict: dict[str, Any], counters: dict[str, dict[str, int]]) -> None:
        report = {
            "scenario": self.scenario.name,
            "seed": self.scenario.seed,
            "verdict": verdict,
            "per_node": counters,
            "delivery_curve": self.delivery_curve(),
            "latencies_s": [round(t, 4) for t in self.latencies],
            "faults": self.fault_log,
            "arrivals": {n.name: {mid: round(at, 3) for mid, at in n.seen_at.items()}
                         for n in self.nodes.values()},
            **self.extra_report,
        }
        (self.out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
        (self.out / "summary.md").write_text(markdown(self.scenario.name, verdict))
        try:
            self.plot()
        except ImportError:
            pass

    def delivery_curve(self) -> dict[str, list[float]]:
        """When each expected delivery was seen, and when each became expected
        (its append's acknowledgement, once per holder), in seconds."""
        members = {g.name: [m for m in g.members] for g in self.scenario.groups}
        seen: list[float] = []
        expected: list[float] = []
        for e in self.ledger:
            if e.ephemeral:
                continue
            for holder in members[e.group]:
                if holder == e.author:
                    continue
                expected.append(round(e.acked_at, 3))
                at = self.nodes[holder].seen_at.get(e.message_id)
                if at is not None:
                    seen.append(round(at, 3))
        return {"delivered_at": sorted(seen), "expected_at": sorted(expected)}

    def plot(self) -> None:
        """delivery.png: deliveries seen and expected over time (needs matplotlib)."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        curve = self.delivery_curve()
        fig, ax = plt.subplots(figsize=(7, 3.5))
        for label, times in (("expected (acknowledged appends x holders)", curve["expected_at"]),
                             ("delivered", curve["delivered_at"])):
            ax.plot([0.0, *times], range(len(times) + 1), drawstyle="steps-post", label=label)
        for fault in self.scenario.faults:
            ax.axvline(fault.at, color="grey", linestyle=":", linewidth=0.8)
        ax.set_xlabel("seconds since start")
        ax.set_ylabel("deliveries")
        ax.set_title(f"testbed: {self.scenario.name} (dotted: faults)")
        ax.legend(loc="upper left")
        fig.tight_layout()
        fig.savefig(self.out / "delivery.png", dpi=100)
        plt.close(fig)


async def run_testbed(scenario: Scenario, out: Path, progress: Callable[[str], None] | None = None,
                      *, compose: bool = False, image: str | None = None,
                      netns: bool = False) -> dict[str, Any]:
    """Run ``scenario`` as local processes, or (``compose``) as a docker
    compose project (:mod:`mvds.testbed.compose`; ``image``: a prebuilt one),
    or (``netns``) with each node in its own Linux network namespace
    (:mod:`mvds.testbed.netns`)."""
    if netns:
        from mvds.testbed.netns import NetnsTestbed

        testbed: Testbed = NetnsTestbed(scenario, out, progress=progress)
    elif compose:
        from mvds.testbed.compose import ComposeTestbed

        testbed = ComposeTestbed(scenario, out, progress=progress, image=image)
    else:
        testbed = Testbed(scenario, out, progress=progress)
    return await testbed.run()
