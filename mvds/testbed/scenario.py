"""The scenario format: one TOML file describes a test network and a run.

Nodes, links (conditions per direction), groups and who shares them,
availability schedules, a workload, faults at given times and a duration.
The testbed (``mvds testbed run``) runs it with real daemons, the
simulator (``mvds sim scenario``) with engines on a virtual network.
docs/TESTBED.md documents every key; :func:`parse_scenario` checks them
all and reports the first problem as one :class:`ScenarioError` line that
names the file and the key.

Pure: no I/O but :func:`load_scenario`'s one read.  Times are seconds
(a number, or a string with a unit: ``"20ms"``, ``"2s"``, ``"1m"``).
"""

from __future__ import annotations

import math
import re
import tomllib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from mvds.daemon.netem import LinkConditions, LinksError
from mvds.daemon.radio import RadioSchedule

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$")
FAULT_ACTIONS = ("partition", "heal", "kill", "restart", "pause", "resume", "move")
LINK_KEYS = ("latency", "jitter", "loss", "duplicate", "reorder", "rate")


_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """'500ms', '2s', '1.5m', '1h' -> seconds."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)\s*", text)
    if not match:
        raise ValueError(f"bad duration {text!r}: use a number with ms, s, m or h")
    return float(match.group(1)) * _UNITS[match.group(2)]


class ScenarioError(ValueError):
    """A scenario that cannot run; the message is one line naming the key."""


@dataclass(frozen=True)
class NodeSpec:
    name: str
    mode: str = "batch"
    delivery: str = "causal"
    schedule: str = ""
    """Availability, e.g. ``"up 2s, down 2s"`` (the radio; empty: always on)."""
    loss: float = 0.0
    """The node's own radio loss, both ways (``mvds run --loss``)."""


@dataclass(frozen=True)
class LinkSpec:
    """A link between ``a`` and ``b``; each direction has its own conditions."""

    a: str
    b: str
    ab: LinkConditions = LinkConditions()
    ba: LinkConditions = LinkConditions()

    @property
    def pair(self) -> tuple[str, str]:
        return (self.a, self.b) if self.a < self.b else (self.b, self.a)


@dataclass(frozen=True)
class GroupSpec:
    """A group; its members share it with every member they have a link to."""

    name: str
    members: tuple[str, ...]


@dataclass(frozen=True)
class Workload:
    rate: float = 1.0
    """Appends per node per second (Poisson arrivals)."""
    size: tuple[int, int] = (64, 64)
    """Body size in bytes, uniform between the two."""
    ephemeral: float = 0.0
    """Share of appends that are ephemeral (no ACK, no retransmission)."""
    start: float = 1.0
    stop: float = 10.0
    nodes: tuple[str, ...] = ()
    """Nodes that append (empty: every member of the group)."""
    group: str = ""
    """Group appended to (empty: the first group)."""


@dataclass(frozen=True)
class Fault:
    at: float
    action: str
    node: str = ""
    links: tuple[tuple[str, str], ...] = ()
    """For partition / heal: the links (pairs of node names) cut or healed."""


@dataclass(frozen=True)
class Scenario:
    name: str
    nodes: tuple[NodeSpec, ...]
    links: tuple[LinkSpec, ...]
    groups: tuple[GroupSpec, ...]
    workload: Workload
    duration: float
    """Longest the run may take; it ends earlier once everything converged."""
    faults: tuple[Fault, ...] = ()
    description: str = ""
    seed: int = 1
    epoch_ms: int = 200

    # -- derived ---------------------------------------------------------------
    @property
    def names(self) -> list[str]:
        return [n.name for n in self.nodes]

    def node(self, name: str) -> NodeSpec:
        return next(n for n in self.nodes if n.name == name)

    def neighbours(self, name: str) -> list[str]:
        out = [l.b for l in self.links if l.a == name] + [l.a for l in self.links if l.b == name]
        return sorted(out)

    def shares(self, name: str) -> dict[str, list[str]]:
        """Peer -> groups this node shares with it."""
        out: dict[str, list[str]] = {peer: [] for peer in self.neighbours(name)}
        for group in self.groups:
            if name in group.members:
                for peer in out:
                    if peer in group.members:
                        out[peer].append(group.name)
        return out

    def workload_group(self) -> GroupSpec:
        name = self.workload.group or self.groups[0].name
        return next(g for g in self.groups if g.name == name)

    def writers(self) -> list[str]:
        return list(self.workload.nodes) or list(self.workload_group().members)

    def conditions(self, src: str, dst: str) -> LinkConditions:
        for link in self.links:
            if (link.a, link.b) == (src, dst):
                return link.ab
            if (link.b, link.a) == (src, dst):
                return link.ba
        raise KeyError((src, dst))


# -- parsing ---------------------------------------------------------------------


def _seconds(where: str, value: Any) -> float:
    if isinstance(value, bool):
        raise ScenarioError(f"{where}: expected seconds or a duration like \"20ms\", got {value!r}")
    if isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str):
        try:
            seconds = parse_duration(value)
        except ValueError as exc:
            raise ScenarioError(f"{where}: {exc}") from None
    else:
        raise ScenarioError(f"{where}: expected seconds or a duration like \"20ms\", got {value!r}")
    if not (0 <= seconds < math.inf):
        raise ScenarioError(f"{where}: must be a time of at least 0")
    return seconds


_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(b|kb|mb|gb|bit|kbit|mbit|gbit)(?:/s|ps)?\s*$", re.I)
_RATE_UNITS = {"b": 1, "kb": 1e3, "mb": 1e6, "gb": 1e9, "bit": 1 / 8, "kbit": 1e3 / 8,
               "mbit": 1e6 / 8, "gbit": 1e9 / 8}


def _rate(where: str, value: Any) -> float:
    """Bytes per second: a number, or ``"1mbit"``, ``"64kbit"``, ``"100kb"`` (bytes)."""
    if isinstance(value, bool):
        raise ScenarioError(f"{where}: expected bytes per second or e.g. \"1mbit\", got {value!r}")
    if isinstance(value, (int, float)):
        rate = float(value)
    elif isinstance(value, str) and (match := _RATE.match(value)):
        rate = float(match.group(1)) * _RATE_UNITS[match.group(2).lower()]
    else:
        raise ScenarioError(f"{where}: expected bytes per second or e.g. \"1mbit\", got {value!r}")
    if not 0 <= rate < math.inf:
        raise ScenarioError(f"{where}: must be at least 0")
    return rate


def _fraction(where: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise ScenarioError(f"{where}: must be a number between 0 and 1, got {value!r}")
    return float(value)


def _keys(where: str, table: Any, allowed: tuple[str, ...] | set[str]) -> dict[str, Any]:
    if not isinstance(table, dict):
        raise ScenarioError(f"{where}: expected a table")
    unknown = [k for k in table if k not in allowed]
    if unknown:
        raise ScenarioError(f"{where}: unknown key {unknown[0]!r} (known: {', '.join(allowed)})")
    return table


def _conditions(where: str, table: dict[str, Any], base: LinkConditions) -> LinkConditions:
    values = {}
    for key in LINK_KEYS:
        if key not in table:
            continue
        if key in ("latency", "jitter"):
            values[key] = _seconds(f"{where}.{key}", table[key])
        elif key == "rate":
            values[key] = _rate(f"{where}.{key}", table[key])
        else:
            values[key] = _fraction(f"{where}.{key}", table[key])
    conditions = replace(base, **values)
    try:
        conditions.validate(where)
    except LinksError as exc:
        raise ScenarioError(str(exc)) from None
    return conditions


def _str(where: str, value: Any) -> str:
    if not isinstance(value, str):
        raise ScenarioError(f"{where}: expected a string, got {value!r}")
    return value


def _names(where: str, value: Any, known: set[str]) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ScenarioError(f"{where}: expected a list of node names")
    for name in value:
        if name not in known:
            raise ScenarioError(f"{where}: unknown node {name!r}")
    if len(set(value)) != len(value):
        raise ScenarioError(f"{where}: a node is listed twice")
    return tuple(value)


TOP_KEYS = ("name", "description", "seed", "duration", "epoch_ms", "mode", "link", "nodes",
            "links", "groups", "workload", "faults")
NODE_KEYS = ("name", "mode", "delivery", "schedule", "loss")
LINK_TABLE_KEYS = ("a", "b", *LINK_KEYS, "a_to_b", "b_to_a")
WORKLOAD_KEYS = ("rate", "size", "ephemeral", "start", "stop", "nodes", "group")
FAULT_KEYS = ("at", "action", "node", "links")


def parse_scenario(text: str, where: str = "scenario") -> Scenario:
    """Parse and validate a scenario's TOML text."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"{where}: invalid TOML: {' '.join(str(exc).split())}") from None
    except RecursionError:
        raise ScenarioError(f"{where}: invalid TOML: nested too deeply") from None
    _keys(where, data, TOP_KEYS)

    name = _str(f"{where}: name", data.get("name", Path(where).stem or "scenario"))
    description = _str(f"{where}: description", data.get("description", ""))
    seed = data.get("seed", 1)
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**63:
        raise ScenarioError(f"{where}: seed: expected a non-negative integer, got {seed!r}")
    epoch_ms = data.get("epoch_ms", 200)
    if isinstance(epoch_ms, bool) or not isinstance(epoch_ms, int) or not 1 <= epoch_ms <= 60_000:
        raise ScenarioError(f"{where}: epoch_ms: expected an integer between 1 and 60000")
    if "duration" not in data:
        raise ScenarioError(f"{where}: duration: missing (the longest the run may take, e.g. \"60s\")")
    duration = _seconds(f"{where}: duration", data["duration"])
    if duration <= 0:
        raise ScenarioError(f"{where}: duration: must be more than 0")
    default_mode = data.get("mode", "batch")
    if default_mode not in ("batch", "interactive"):
        raise ScenarioError(f"{where}: mode: must be batch or interactive, not {default_mode!r}")

    # nodes
    raw_nodes = data.get("nodes")
    if not isinstance(raw_nodes, list) or not raw_nodes:
        raise ScenarioError(f"{where}: nodes: expected at least one [[nodes]] table")
    nodes: list[NodeSpec] = []
    for i, table in enumerate(raw_nodes):
        w = f"{where}: nodes[{i}]"
        _keys(w, table, NODE_KEYS)
        if "name" not in table:
            raise ScenarioError(f"{w}: name: missing")
        node_name = _str(f"{w}.name", table["name"])
        if not NAME.match(node_name):
            raise ScenarioError(f"{w}.name: {node_name!r}: use 1-32 letters, digits, - or _")
        if any(n.name == node_name for n in nodes):
            raise ScenarioError(f"{w}.name: duplicate node {node_name!r}")
        mode = table.get("mode", default_mode)
        if mode not in ("batch", "interactive"):
            raise ScenarioError(f"{w}.mode: must be batch or interactive, not {mode!r}")
        delivery = table.get("delivery", "causal")
        if delivery not in ("causal", "eventual"):
            raise ScenarioError(f"{w}.delivery: must be causal or eventual, not {delivery!r}")
        schedule = _str(f"{w}.schedule", table.get("schedule", ""))
        if schedule:
            try:
                RadioSchedule.parse(schedule)
            except ValueError as exc:
                raise ScenarioError(f"{w}.schedule: {exc}") from None
        loss = _fraction(f"{w}.loss", table.get("loss", 0.0))
        if loss >= 1:
            raise ScenarioError(f"{w}.loss: must be below 1")
        nodes.append(NodeSpec(node_name, mode, delivery, schedule, loss))
    known = {n.name for n in nodes}

    # links
    default_link = _conditions(f"{where}: link", _keys(f"{where}: link", data.get("link", {}), LINK_KEYS),
                               LinkConditions())
    links: list[LinkSpec] = []
    pairs: set[tuple[str, str]] = set()
    for i, table in enumerate(data.get("links", [])):
        w = f"{where}: links[{i}]"
        _keys(w, table, LINK_TABLE_KEYS)
        for end in ("a", "b"):
            if end not in table:
                raise ScenarioError(f"{w}.{end}: missing")
            if table[end] not in known:
                raise ScenarioError(f"{w}.{end}: unknown node {table[end]!r}")
        a, b = table["a"], table["b"]
        if a == b:
            raise ScenarioError(f"{w}: links {a!r} to itself")
        pair = (a, b) if a < b else (b, a)
        if pair in pairs:
            raise ScenarioError(f"{w}: link {a}-{b} is listed twice")
        pairs.add(pair)
        both = _conditions(w, table, default_link)
        ab = _conditions(f"{w}.a_to_b", _keys(f"{w}.a_to_b", table.get("a_to_b", {}), LINK_KEYS), both)
        ba = _conditions(f"{w}.b_to_a", _keys(f"{w}.b_to_a", table.get("b_to_a", {}), LINK_KEYS), both)
        links.append(LinkSpec(a, b, ab, ba))

    # groups
    raw_groups = data.get("groups", [{"name": "chat"}])
    if not isinstance(raw_groups, list) or not raw_groups:
        raise ScenarioError(f"{where}: groups: expected at least one [[groups]] table")
    groups: list[GroupSpec] = []
    for i, table in enumerate(raw_groups):
        w = f"{where}: groups[{i}]"
        _keys(w, table, ("name", "members"))
        group_name = _str(f"{w}.name", table.get("name", ""))
        if not group_name:
            raise ScenarioError(f"{w}.name: missing")
        if any(g.name == group_name for g in groups):
            raise ScenarioError(f"{w}.name: duplicate group {group_name!r}")
        members = _names(f"{w}.members", table["members"], known) if "members" in table \
            else tuple(n.name for n in nodes)
        groups.append(GroupSpec(group_name, members))

    # workload
    wl = _keys(f"{where}: workload", data.get("workload", {}), WORKLOAD_KEYS)
    w = f"{where}: workload"
    rate = wl.get("rate", 1.0)
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 <= rate <= 10_000:
        raise ScenarioError(f"{w}.rate: appends per node per second, between 0 and 10000")
    size = wl.get("size", 64)
    if isinstance(size, int) and not isinstance(size, bool):
        size = [size, size]
    if (not isinstance(size, list) or len(size) != 2
            or not all(isinstance(s, int) and not isinstance(s, bool) for s in size)
            or not 1 <= size[0] <= size[1] <= 60_000):
        raise ScenarioError(f"{w}.size: bytes, or [min, max], between 1 and 60000")
    ephemeral = _fraction(f"{w}.ephemeral", wl.get("ephemeral", 0.0))
    start = _seconds(f"{w}.start", wl.get("start", 1.0))
    stop = _seconds(f"{w}.stop", wl.get("stop", min(duration / 2, start + 10.0)))
    if not start <= stop <= duration:
        raise ScenarioError(f"{w}: needs start <= stop <= duration")
    group_names = [g.name for g in groups]
    wl_group = _str(f"{w}.group", wl.get("group", group_names[0]))
    if wl_group not in group_names:
        raise ScenarioError(f"{w}.group: unknown group {wl_group!r}")
    members = next(g for g in groups if g.name == wl_group).members
    writers = _names(f"{w}.nodes", wl["nodes"], known) if "nodes" in wl else ()
    for writer in writers:
        if writer not in members:
            raise ScenarioError(f"{w}.nodes: {writer!r} is not a member of {wl_group!r}")
    workload = Workload(float(rate), (size[0], size[1]), ephemeral, start, stop, writers, wl_group)

    # faults
    faults: list[Fault] = []
    killed: set[str] = set()
    paused: set[str] = set()
    cut: set[tuple[str, str]] = set()
    raw_faults = data.get("faults", [])
    if not isinstance(raw_faults, list):
        raise ScenarioError(f"{where}: faults: expected [[faults]] tables")
    last = 0.0
    for i, table in enumerate(raw_faults):
        w = f"{where}: faults[{i}]"
        _keys(w, table, FAULT_KEYS)
        if "at" not in table or "action" not in table:
            raise ScenarioError(f"{w}: needs at and action")
        at = _seconds(f"{w}.at", table["at"])
        if at < last:
            raise ScenarioError(f"{w}.at: faults must be listed in time order")
        if at >= duration:
            raise ScenarioError(f"{w}.at: must be before the end (duration)")
        last = at
        action = table["action"]
        if action not in FAULT_ACTIONS:
            raise ScenarioError(f"{w}.action: must be one of {', '.join(FAULT_ACTIONS)}, not {action!r}")
        node = ""
        fault_links: tuple[tuple[str, str], ...] = ()
        if action in ("partition", "heal"):
            if "node" in table:
                raise ScenarioError(f"{w}.node: {action} takes links, not a node")
            raw = table.get("links")
            if not isinstance(raw, list) or not raw:
                raise ScenarioError(f"{w}.links: expected a list of [a, b] pairs")
            chosen = []
            for pair_value in raw:
                if (not isinstance(pair_value, list) or len(pair_value) != 2
                        or not all(isinstance(v, str) for v in pair_value)):
                    raise ScenarioError(f"{w}.links: expected [a, b] pairs of node names")
                p = tuple(sorted(pair_value))
                if p not in pairs:
                    raise ScenarioError(f"{w}.links: no link {pair_value[0]}-{pair_value[1]}")
                chosen.append(p)
            fault_links = tuple(chosen)  # type: ignore[arg-type]
            for p in fault_links:
                if action == "partition":
                    if p in cut:
                        raise ScenarioError(f"{w}.links: {p[0]}-{p[1]} is already cut")
                    cut.add(p)
                else:
                    if p not in cut:
                        raise ScenarioError(f"{w}.links: {p[0]}-{p[1]} is not cut")
                    cut.discard(p)
        else:
            if "links" in table:
                raise ScenarioError(f"{w}.links: {action} takes a node, not links")
            node = _str(f"{w}.node", table.get("node", ""))
            if node not in known:
                raise ScenarioError(f"{w}.node: unknown node {node!r}")
            state = "killed" if node in killed else "paused" if node in paused else "running"
            need = {"kill": "running", "restart": "killed", "pause": "running",
                    "resume": "paused", "move": "running"}[action]
            if state != need:
                raise ScenarioError(f"{w}: cannot {action} {node!r}: it is {state} then")
            if action == "kill":
                killed.add(node)
            elif action == "restart":
                killed.discard(node)
            elif action == "pause":
                paused.add(node)
            elif action == "resume":
                paused.discard(node)
        faults.append(Fault(at, action, node, fault_links))
    if killed or paused or cut:
        left = sorted(killed | paused) + [f"{a}-{b}" for a, b in sorted(cut)]
        raise ScenarioError(
            f"{where}: faults: {', '.join(left)} still down at the end: restart, resume or heal "
            "everything (the verdict expects every node to end up with every message)"
        )
    return Scenario(
        name=name, nodes=tuple(nodes), links=tuple(links), groups=tuple(groups), workload=workload,
        duration=duration, faults=tuple(faults), description=description, seed=seed,
        epoch_ms=epoch_ms,
    )


def load_scenario(path: str | Path) -> Scenario:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ScenarioError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ScenarioError(f"{path}: cannot read: {exc}") from None
    return parse_scenario(text, str(path))


# -- writing ----------------------------------------------------------------------


def _time(seconds: float) -> str:
    """``"20ms"`` where that reads back as the same float, else plain seconds."""
    if 0 < seconds < 1:
        ms = round(seconds * 1000)
        if parse_duration(f"{ms}ms") == seconds:
            return f'"{ms}ms"'
    return repr(float(seconds))


def _q(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _cond_items(c: LinkConditions, base: LinkConditions | None = None) -> list[str]:
    out = []
    for key in LINK_KEYS:
        value = getattr(c, key)
        if base is not None and value == getattr(base, key):
            continue
        if base is None and not value:
            continue
        out.append(f"{key} = {_time(value) if key in ('latency', 'jitter') else repr(float(value))}")
    return out


def render_scenario(s: Scenario) -> str:
    """The TOML text of a scenario; :func:`parse_scenario` reads it back equal."""
    lines = [f"name = {_q(s.name)}"]
    if s.description:
        lines.append(f"description = {_q(s.description)}")
    lines += [f"seed = {s.seed}", f"duration = {_time(s.duration)}", f"epoch_ms = {s.epoch_ms}", ""]
    for n in s.nodes:
        lines.append("[[nodes]]")
        lines.append(f"name = {_q(n.name)}")
        if n.mode != "batch":
            lines.append(f"mode = {_q(n.mode)}")
        if n.delivery != "causal":
            lines.append(f"delivery = {_q(n.delivery)}")
        if n.schedule:
            lines.append(f"schedule = {_q(n.schedule)}")
        if n.loss:
            lines.append(f"loss = {n.loss!r}")
    lines.append("")
    for link in s.links:
        lines.append("[[links]]")
        lines.append(f"a = {_q(link.a)}")
        lines.append(f"b = {_q(link.b)}")
        if link.ab == link.ba:
            lines += _cond_items(link.ab)
        else:
            lines += _cond_items(link.ab)
            items = _cond_items(link.ba, link.ab)
            if items:
                lines.append(f"b_to_a = {{ {', '.join(items)} }}")
    lines.append("")
    for g in s.groups:
        lines.append("[[groups]]")
        lines.append(f"name = {_q(g.name)}")
        lines.append("members = [" + ", ".join(_q(m) for m in g.members) + "]")
    wl = s.workload
    lines += ["", "[workload]", f"rate = {wl.rate!r}", f"size = [{wl.size[0]}, {wl.size[1]}]",
              f"ephemeral = {wl.ephemeral!r}", f"start = {_time(wl.start)}", f"stop = {_time(wl.stop)}",
              f"group = {_q(wl.group)}"]
    if wl.nodes:
        lines.append("nodes = [" + ", ".join(_q(m) for m in wl.nodes) + "]")
    for f in s.faults:
        lines += ["", "[[faults]]", f"at = {_time(f.at)}", f"action = {_q(f.action)}"]
        if f.node:
            lines.append(f"node = {_q(f.node)}")
        if f.links:
            lines.append("links = [" + ", ".join(f"[{_q(a)}, {_q(b)}]" for a, b in f.links) + "]")
    return "\n".join(lines) + "\n"


