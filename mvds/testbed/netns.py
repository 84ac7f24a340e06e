"""``mvds testbed run SCENARIO --netns``: every node in its own Linux network namespace.

The same run as :mod:`mvds.testbed.runner` (same plan, ledger, sampling and
verdict: a subclass that swaps where nodes live and how links are shaped),
with datagrams crossing real kernel network stacks:

- **the network**: one namespace per node (``mvdsnet-PID-nI``, an ``eth0``
  with an address in 10.88.0.0/16, daemon on port 7400) and one *hub*
  namespace (``mvdsnet-PID-hub``) holding a bridge that every node's veth
  pair ends in.  Nothing is added to the root namespace: no address, no
  route, no interface, no nftables table, so no datagram of the run can
  leave the run's own namespaces, and deleting the namespaces deletes all
  of it.  ``PID`` is the runner's process id: a run's names are unique,
  and a later run sweeps away what a dead runner left (:func:`sweep`);
- **links in the kernel**: nftables in each node's namespace (table
  ``ip mvdsnet``) drops what its neighbours send it on a cut link (a set
  of cut sources) and with a link's ``loss`` (``numgen random``), and
  duplicates what it sends with a link's ``duplicate`` (``dup to``); tc on
  its ``eth0`` (htb, one class per destination picked by a u32 filter on
  the destination address, a 1000-packet fifo) limits a link's ``rate``.
  Drops happen on the *receiving* side on purpose: a drop in the sender's
  output hook makes ``sendto`` fail with EPERM, which a real network
  never does.  ``latency``, ``jitter`` and ``reorder`` need the kernel's
  netem qdisc: where the kernel has it (probed at start) they go into a
  netem leaf under the same htb class; where it does not, they stay in the
  daemon's own link emulation (the links file, :mod:`mvds.daemon.netem`),
  and the report says which (``netns.kernel`` / ``netns.transport``);
- **control**: each daemon's control socket is a Unix socket in its node
  directory, a file: reachable from the root namespace like any file, so
  the runner drives the daemons exactly as in local mode;
- **faults**: partition / heal add / remove the other end's address to /
  from each end's cut set (atomic, counters kept); kill, restart, pause,
  resume are signals as in local mode; move stops the daemon, gives its
  ``eth0`` a new address, restarts it bound there, rewrites its
  neighbours' rules (they name addresses) and tells them the new address.

Kernel randomness (``numgen random``, netem) cannot be seeded: a --netns
run is not bit-reproducible, only statistically so.

Pure parts (addresses, the nftables ruleset, the tc commands, which
condition goes where) are functions without I/O; :func:`sh` is the one
place that runs ``ip``, ``tc`` and ``nft``.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import shutil
import signal
import subprocess
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import trio

from mvds.daemon.netem import QUEUE_LIMIT, LinkConditions, render_links
from mvds.testbed.runner import Testbed, TestbedError, TNode
from mvds.testbed.scenario import Fault, Scenario

PREFIX = "mvdsnet-"
"""Every namespace of every --netns run starts with this (then the runner's pid)."""
NETWORK = ipaddress.IPv4Network("10.88.0.0/16")
PORT = 7400
TABLE = "mvdsnet"
DEVICE = "eth0"
KERNEL_ALWAYS = ("cut", "loss", "duplicate", "rate")
NETEM_ONLY = ("latency", "jitter", "reorder")
SCALE = 1_000_000
"""``numgen random mod SCALE``: probabilities to one part in a million."""


# -- pure: addresses, rules, commands ------------------------------------------


def node_address(index: int) -> str:
    """Node number ``index``'s first address (10.88.1.1 onwards)."""
    return str(NETWORK.network_address + 257 + index)


def moved_address(count: int) -> str:
    """The address of the ``count``-th move of the run (10.88.128.1 onwards)."""
    return str(NETWORK.network_address + 32769 + count)


def namespace(run: str, index: int) -> str:
    return f"{run}-n{index}"


def split(conditions: LinkConditions, netem: bool) -> tuple[LinkConditions, LinkConditions]:
    """(what the kernel applies, what the daemon's transport applies) for one
    direction; with kernel netem, nothing is left for the transport."""
    if netem:
        return replace(conditions, cut=False), LinkConditions()
    kernel = replace(conditions, latency=0.0, jitter=0.0, reorder=0.0, cut=False)
    transport = LinkConditions(latency=conditions.latency, jitter=conditions.jitter,
                               reorder=conditions.reorder)
    return kernel, transport


def _chance(p: float) -> int:
    return min(SCALE, max(1, round(p * SCALE)))


def ruleset(incoming: Mapping[str, LinkConditions], outgoing: Mapping[str, LinkConditions],
            cut: Iterable[str]) -> str:
    """The nftables script of one node's namespace, loaded atomically
    (``nft -f``) over whatever table was there.

    ``incoming``: neighbour address -> the kernel's conditions of the
    direction towards this node (its loss is dropped here, on arrival);
    ``outgoing``: neighbour address -> conditions of this node's direction
    (its duplication happens here, on the way out); ``cut``: neighbour
    addresses whose link is cut (dropped here, on arrival)."""
    lines = [f"table ip {TABLE}", f"delete table ip {TABLE}", f"table ip {TABLE} {{",
             "\tset cut {", "\t\ttype ipv4_addr"]
    cut = sorted(cut)
    if cut:
        lines.append(f"\t\telements = {{ {', '.join(cut)} }}")
    lines += ["\t}", "\tchain in {", "\t\ttype filter hook prerouting priority raw; policy accept;",
              '\t\tip saddr @cut counter drop comment "cut"']
    for addr in sorted(incoming):
        if incoming[addr].loss:
            lines.append(f"\t\tip saddr {addr} numgen random mod {SCALE} < {_chance(incoming[addr].loss)} "
                         'counter drop comment "loss"')
    lines += ["\t}", "\tchain out {", "\t\ttype filter hook output priority filter; policy accept;"]
    for addr in sorted(outgoing):
        if outgoing[addr].duplicate:
            lines.append(f"\t\tip daddr {addr} numgen random mod {SCALE} < {_chance(outgoing[addr].duplicate)} "
                         f'counter dup to {addr} device "{DEVICE}" comment "duplicate"')
    lines += ["\t}", "}"]
    return "\n".join(lines) + "\n"


def _us(seconds: float) -> str:
    return f"{max(0, round(seconds * 1e6))}us"


def tc_commands(outgoing: Mapping[str, LinkConditions], netem: bool) -> list[list[str]]:
    """The tc commands (after ``tc -n NS``) that shape one node's ``eth0``:
    empty when no direction of it needs the kernel's queueing.

    An htb root whose default class is unlimited; per destination that
    needs it, a class (its ``rate``, or unlimited) chosen by a u32 filter on
    the destination address, with a 1000-packet fifo (the transport's
    QUEUE_LIMIT) or, with ``netem``, a netem leaf of the same limit doing
    latency + uniform jitter in [0, jitter) and reorder."""
    unlimited = "10gbit"
    shaped = []
    for addr in sorted(outgoing):
        c = outgoing[addr]
        if c.rate or (netem and (c.latency or c.jitter)):
            shaped.append((addr, c))
    if not shaped:
        return []
    dev = ["dev", DEVICE]
    out = [["qdisc", "add", *dev, "root", "handle", "1:", "htb", "default", "1"],
           ["class", "add", *dev, "parent", "1:", "classid", "1:1", "htb", "rate", unlimited,
            "quantum", "60000"]]
    for number, (addr, c) in enumerate(shaped, start=16):
        klass = f"1:{number:x}"
        rate = f"{max(8, round(c.rate * 8))}bit" if c.rate else unlimited
        out.append(["class", "add", *dev, "parent", "1:", "classid", klass, "htb", "rate", rate,
                    "ceil", rate, "quantum", "1514"])
        leaf = ["qdisc", "add", *dev, "parent", klass, "handle", f"{number:x}:"]
        if netem and (c.latency or c.jitter):
            leaf += ["netem", "limit", str(QUEUE_LIMIT), "delay", _us(c.latency + c.jitter / 2)]
            if c.jitter:
                leaf.append(_us(c.jitter / 2))
            if c.reorder:
                leaf += ["reorder", f"{c.reorder * 100:g}%"]
        else:
            leaf += ["pfifo", "limit", str(QUEUE_LIMIT)]
        out.append(leaf)
        out.append(["filter", "add", *dev, "parent", "1:", "protocol", "ip", "prio", "1", "u32",
                    "match", "ip", "dst", f"{addr}/32", "flowid", klass])
    return out


def rule_counters(listing: Mapping[str, Any]) -> Counter[str]:
    """Packets per rule comment ("cut", "loss", "duplicate") in ``nft -j list table``."""
    out: Counter[str] = Counter()
    for item in listing.get("nftables", []):
        rule = item.get("rule")
        if not rule or "comment" not in rule:
            continue
        for expr in rule.get("expr", []):
            if "counter" in expr:
                out[rule["comment"]] += int(expr["counter"].get("packets", 0))
    return out


def run_of(name: str) -> int | None:
    """The runner pid in a namespace name of ours, None for another name."""
    m = re.fullmatch(re.escape(PREFIX) + r"(\d+)-[a-z0-9]+", name)
    return int(m.group(1)) if m else None


# -- I/O: ip, tc, nft ----------------------------------------------------------


def sh(*argv: str, check: bool = True, input: str | None = None) -> subprocess.CompletedProcess:
    """Run one command; a TestbedError with its last line of stderr if it fails."""
    try:
        result = subprocess.run(list(argv), capture_output=True, text=True, timeout=30, input=input)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise TestbedError(f"--netns: {' '.join(argv[:6])}: {exc}") from None
    if check and result.returncode != 0:
        tail = (result.stderr.strip() or result.stdout.strip() or "failed").splitlines()[-1]
        raise TestbedError(f"--netns: `{' '.join(argv[:8])}` exited {result.returncode}: {tail}")
    return result


def namespaces() -> list[str]:
    result = sh("ip", "netns", "list", check=False)
    return [line.split()[0] for line in result.stdout.splitlines() if line.strip()]


def remove_namespace(name: str) -> None:
    """Kill whatever still runs in it, then delete it (and with it its
    interfaces, addresses, routes, qdiscs and nftables tables)."""
    pids = sh("ip", "netns", "pids", name, check=False).stdout.split()
    for pid in pids:
        try:
            os.kill(int(pid), signal.SIGKILL)
        except (ValueError, ProcessLookupError):
            pass
    sh("ip", "netns", "delete", name, check=False)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep() -> list[str]:
    """Delete every namespace a dead runner left (its pid is in the name),
    and any named for this process (left by an earlier run in it, or by a
    dead process whose pid this one reuses: a run cleans up after itself);
    the names deleted."""
    gone = []
    for name in namespaces():
        pid = run_of(name)
        if pid is not None and (pid == os.getpid() or not alive(pid)):
            remove_namespace(name)
            gone.append(name)
    return gone


def unavailable() -> str | None:
    """Why --netns cannot run here (one line), or None: root, ``ip``, ``tc``
    and ``nft``, and a namespace with a veth and an nftables table made and
    removed as a trial."""
    if os.geteuid() != 0:
        return "--netns needs root (network namespaces, nftables, tc)"
    for tool, package in (("ip", "iproute2"), ("tc", "iproute2"), ("nft", "nftables")):
        if shutil.which(tool) is None:
            return f"--netns needs `{tool}` (Debian package {package})"
    trial = f"{PREFIX}{os.getpid()}-probe"
    remove_namespace(trial)  # a probe of a dead process with this pid
    try:
        sh("ip", "netns", "add", trial)
        sh("ip", "-n", trial, "link", "add", "p0", "type", "veth", "peer", "name", "p1")
        ns_exec(trial, "nft", "-f", "-", input=ruleset({}, {}, []))
    except TestbedError as exc:
        return str(exc)
    finally:
        remove_namespace(trial)
    return None


def has_netem(ns: str) -> bool:
    """Whether the kernel has the netem qdisc (tried on ``ns``'s loopback)."""
    if sh("tc", "-n", ns, "qdisc", "add", "dev", "lo", "root", "netem", "delay", "1ms",
          check=False).returncode != 0:
        return False
    sh("tc", "-n", ns, "qdisc", "del", "dev", "lo", "root", check=False)
    return True


def ns_exec(ns: str, *argv: str, input: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
    return sh("ip", "netns", "exec", ns, *argv, input=input, check=check)


# -- the testbed ------------------------------------------------------------------


class NetnsTestbed(Testbed):
    """A scenario across network namespaces (see the module docstring)."""

    def __init__(self, scenario: Scenario, out: Path, *, progress: Callable[[str], None] | None = None) -> None:
        super().__init__(scenario, out, progress=progress)
        self.run_id = f"{PREFIX}{os.getpid()}"
        self.hub = f"{self.run_id}-hub"
        self.index = {name: i for i, name in enumerate(scenario.names)}
        self.netem = False
        self.moves = 0
        self.made: list[str] = []
        """Namespaces made so far: removed in stop_all, whatever happens."""
        self.kernel: dict[str, Counter[str]] = {name: Counter() for name in scenario.names}
        """Kernel counters of rulesets already replaced (a move reloads them)."""
        self.swept: list[str] = []
        self.timings: dict[str, float] = {}
        """Seconds to build the network and to tear it down."""

    def ns(self, name: str) -> str:
        return namespace(self.run_id, self.index[name])

    # -- setup -----------------------------------------------------------------
    def place(self, index: int, used: set[int]) -> tuple[str, int]:
        return node_address(index), PORT

    def launcher(self, node: TNode) -> list[str]:
        return ["ip", "netns", "exec", self.ns(node.name)]

    def prepare(self) -> None:
        reason = unavailable()
        if reason is not None:
            raise TestbedError(reason)
        self.swept = sweep()
        self.netem = False  # known once the hub exists; the links files are rewritten then
        super().prepare()

    def write_links(self, node: TNode) -> None:
        """The links file holds only what the kernel does not do (cuts never)."""
        links = {peer: split(self.scenario.conditions(node.name, peer), self.netem)[1]
                 for peer in self.scenario.neighbours(node.name)}
        path = node.path / "links.toml"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(render_links(links))
        os.replace(tmp, path)

    def build_network(self) -> None:
        sh("ip", "netns", "add", self.hub)
        self.made.append(self.hub)
        sh("ip", "-n", self.hub, "link", "add", "br0", "type", "bridge", "forward_delay", "0")
        sh("ip", "-n", self.hub, "link", "set", "br0", "up")
        self.netem = has_netem(self.hub)
        for name, node in self.nodes.items():
            ns = self.ns(name)
            port = f"n{self.index[name]}"
            sh("ip", "netns", "add", ns)
            self.made.append(ns)
            sh("ip", "-n", self.hub, "link", "add", port, "type", "veth", "peer", "name", DEVICE,
               "netns", ns)
            sh("ip", "-n", self.hub, "link", "set", port, "master", "br0", "up")
            sh("ip", "-n", ns, "link", "set", "lo", "up")
            sh("ip", "-n", ns, "addr", "add", f"{node.host}/{NETWORK.prefixlen}", "dev", DEVICE)
            sh("ip", "-n", ns, "link", "set", DEVICE, "up")
        for node in self.nodes.values():
            self.write_links(node)
            self.load_rules(node)
            self.load_tc(node)

    def kernel_part(self, src: str, dst: str) -> LinkConditions:
        return split(self.scenario.conditions(src, dst), self.netem)[0]

    def load_rules(self, node: TNode) -> None:
        """(Re)load ``node``'s nftables table from the scenario and its cut set;
        the counters of the table it replaces are kept."""
        ns = self.ns(node.name)
        self.kernel[node.name] += self.nft_counters(node)
        peers = self.scenario.neighbours(node.name)
        text = ruleset(
            {self.nodes[p].host: self.kernel_part(p, node.name) for p in peers},
            {self.nodes[p].host: self.kernel_part(node.name, p) for p in peers},
            [self.nodes[p].host for p in node.cut],
        )
        ns_exec(ns, "nft", "-f", "-", input=text)

    def nft_counters(self, node: TNode) -> Counter[str]:
        """Packets dropped (cut, loss) and duplicated by ``node``'s table now."""
        listing = ns_exec(self.ns(node.name), "nft", "-j", "list", "table", "ip", TABLE, check=False)
        if listing.returncode != 0:
            return Counter()
        return rule_counters(json.loads(listing.stdout))

    def tc_drops(self, node: TNode) -> Counter[str]:
        """Datagrams the per-destination queues of ``node``'s eth0 dropped (full)."""
        qdiscs = sh("tc", "-n", self.ns(node.name), "-s", "-j", "qdisc", "show", "dev", DEVICE,
                    check=False)
        if qdiscs.returncode != 0 or not qdiscs.stdout.strip():
            return Counter()
        drops = sum(int(q.get("drops", 0)) for q in json.loads(qdiscs.stdout)
                    if q.get("kind") in ("pfifo", "netem"))
        return Counter({"queue_full": drops} if drops else {})

    def load_tc(self, node: TNode) -> None:
        """(Re)build the tc tree on ``node``'s eth0 (queued datagrams are lost: a move)."""
        ns = self.ns(node.name)
        self.kernel[node.name] += self.tc_drops(node)
        sh("tc", "-n", ns, "qdisc", "del", "dev", DEVICE, "root", check=False)
        outgoing = {self.nodes[p].host: self.kernel_part(node.name, p)
                    for p in self.scenario.neighbours(node.name)}
        for command in tc_commands(outgoing, self.netem):
            sh("tc", "-n", ns, *command)

    def teardown(self) -> None:
        while self.made:
            remove_namespace(self.made.pop())

    # -- life cycle --------------------------------------------------------------
    async def start_nodes(self) -> None:
        started = time.monotonic()
        await trio.to_thread.run_sync(self.build_network)
        self.timings["network_s"] = round(time.monotonic() - started, 2)
        await super().start_nodes()

    def stop_all(self) -> None:
        try:
            super().stop_all()
        finally:
            if self.made:
                for node in self.nodes.values():
                    try:
                        self.kernel[node.name] += self.nft_counters(node) + self.tc_drops(node)
                    except (TestbedError, ValueError):
                        pass
            started = time.monotonic()
            self.teardown()
            self.timings["teardown_s"] = round(time.monotonic() - started, 2)

    async def relocate(self, node: TNode) -> None:
        """A new address on the stopped node's eth0; its neighbours' rules
        and filters, which name addresses, follow."""
        old = node.host
        node.host = moved_address(self.moves)
        self.moves += 1
        ns = self.ns(node.name)

        def move() -> None:
            # old first: deleting a primary address deletes its subnet's secondaries
            sh("ip", "-n", ns, "addr", "del", f"{old}/{NETWORK.prefixlen}", "dev", DEVICE)
            sh("ip", "-n", ns, "addr", "add", f"{node.host}/{NETWORK.prefixlen}", "dev", DEVICE)
            for peer in self.scenario.neighbours(node.name):
                self.load_rules(self.nodes[peer])
                self.load_tc(self.nodes[peer])

        await trio.to_thread.run_sync(move)

    async def apply(self, fault: Fault) -> None:
        if fault.action not in ("partition", "heal"):
            await super().apply(fault)
            return
        verb = "add" if fault.action == "partition" else "delete"

        def cut() -> None:
            for node, y in self.mark_cuts(fault):
                ns_exec(self.ns(node.name), "nft", verb, "element", "ip", TABLE, "cut",
                        f"{{ {self.nodes[y].host} }}", check=fault.action == "partition")

        await trio.to_thread.run_sync(cut)

    def write_report(self, verdict: dict[str, Any], counters: dict[str, dict[str, int]]) -> None:
        kernel = [*KERNEL_ALWAYS, *(NETEM_ONLY if self.netem else ())]
        transport = [] if self.netem else list(NETEM_ONLY)
        verdict["mode"] = (f"netns ({len(self.nodes)} namespaces + hub; kernel: {', '.join(kernel)}"
                           + (f"; daemon transport: {', '.join(transport)}" if transport else "") + ")")
        self.extra_report["netns"] = {
            "run": self.run_id, "netem": self.netem, "kernel": kernel, "transport": transport,
            "addresses": {n.name: n.host for n in self.nodes.values()},
            "swept": self.swept, **self.timings,
        }
        # read in stop_all, which the run calls before it writes the report
        self.extra_report["kernel_counters"] = {name: dict(c) for name, c in self.kernel.items()}
        verdict["kernel"] = dict(sum(self.kernel.values(), Counter()))
        super().write_report(verdict, counters)
