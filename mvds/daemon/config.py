"""A node's settings: ``DIR/mvds.toml``, every setting documented and checked.

The file is the source of truth for a node's peers and groups; the daemon
reads it at start and rewrites it when peers or sharing change through the
control API, so what ``cat DIR/mvds.toml`` shows is what the node does.
Loading reports every problem as one :class:`ConfigError` line naming the
file and the key.
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomlkit

from mvds.daemon.radio import RadioSchedule
from mvds.durable import atomic_write
from mvds.ids import parse_peer_id
from mvds.limits import MAX_BODY_SIZE, MAX_DATAGRAM_SIZE, MAX_PARENTS_ON_WIRE


class ConfigError(ValueError):
    """A setting that cannot be used; the message names the file and key."""


def parse_address(text: str) -> tuple[str, int]:
    """``HOST:PORT`` or ``[IPv6]:PORT`` -> (host, port)."""
    text = text.strip()
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or not rest.startswith(":"):
            raise ValueError(f"bad address {text!r}: expected [IPv6]:PORT")
        port_text = rest[1:]
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep or not host:
            raise ValueError(f"bad address {text!r}: expected HOST:PORT")
    try:
        port = int(port_text)
    except ValueError:
        raise ValueError(f"bad port in {text!r}") from None
    if not 0 <= port <= 65535:
        raise ValueError(f"port {port} out of range in {text!r}")
    return host, port


def format_utc(timestamp: float) -> str:
    """Unix seconds in UTC, marked so (``Z``): the same line reads the same
    on every machine, whatever its time zone."""
    try:
        return datetime.datetime.fromtimestamp(timestamp, datetime.timezone.utc).strftime(
            "%Y-%m-%d %H:%M:%SZ"
        )
    except (OverflowError, OSError, ValueError):
        return str(timestamp)


def format_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@dataclass
class PeerConfig:
    """A trusted peer: its id (X25519 public key), where it listens, what we share."""

    name: str
    id: str
    address: str
    groups: list[str] = field(default_factory=list)
    plaintext: bool = False

    @property
    def peer_id(self) -> bytes:
        return bytes.fromhex(self.id)


@dataclass
class NodeConfig:
    """Every setting of a node, with the defaults a real deployment wants."""

    listen: str = "127.0.0.1:7400"
    """UDP address to listen on (HOST:PORT)."""
    mode: str = "batch"
    """batch (send whole messages) or interactive (offer, then send on request)."""
    delivery: str = "causal"
    """causal (hand over after parents) or eventual (on arrival)."""
    epoch_ms: int = 300
    """Epoch length: paces retransmission; new messages go out at once."""
    durability: str = "crash"
    """crash (WAL, survives process crashes) or power (also survives power loss, slower)."""
    max_datagram: int = 1200
    """Largest datagram sent, envelope included; bigger payloads are split."""
    max_body: int = MAX_BODY_SIZE
    """Largest message body accepted at append (a message travels whole in one datagram)."""
    max_inflight: int = 1024
    """Unacknowledged messages per peer and group before new ones wait."""
    max_parents: int = MAX_PARENTS_ON_WIRE
    """Most parents put on an appended message and waited for on a received one (more: kept in part, counted)."""
    max_requests: int = 4096
    """Most REQUEST records kept towards one peer; beyond it OFFERs are not requested (counted)."""
    control_max_clients: int = 32
    """Most control API connections served at once; more are refused with an error."""
    control_max_line: int = 16 * 1024 * 1024
    """Longest control API request line in bytes; a longer one gets an error and is closed."""
    peer_max_bytes_per_s: int = 16 * 1024 * 1024
    """Most bytes per second taken from one peer (authenticated datagrams, one second's burst); beyond it datagrams are dropped, counted. 0: no limit."""
    drop_log_interval_s: float = 10.0
    """Dropped datagrams are all counted but logged at most once per reason per this many seconds."""
    resolve_interval_s: float = 30.0
    """Seconds between re-resolving peer host names (a validated address learned from the peer still wins)."""
    keepalive_s: float = 15.0
    """Seconds of silence before a peer we share a group with gets a keepalive (0: off); reachable = heard within 3x this (45 s when off)."""
    flush_ms: float = 0.0
    """How long new records may wait to be coalesced into one payload."""
    backoff_max_epochs: int = 64
    """Upper bound of the exponential retransmission backoff, in epochs."""
    reconcile: bool = False
    """Catch up by range-based set reconciliation with peers that announce it (others get plain MVDS)."""
    reconcile_interval_s: float = 300.0
    """Seconds between anti-entropy reconciliations of each group with each peer (with reconcile on)."""
    park_after_s: float = 120.0
    """A peer that speaks reconciliation, silent this long, is parked: no sync records kept for it; reconciled when back."""
    loss: float = 0.0
    """Simulated loss: this fraction of datagrams in and out is dropped."""
    seed: int | None = None
    """Seed of the simulated loss (reproducible runs); random if unset."""
    schedule: str = ""
    """Simulated availability, e.g. "up 2s, down 6s" (radio off: nothing in or out)."""
    links: str = ""
    """Testbed only: a links file (per-peer latency, jitter, loss, duplication, reordering, rate, cuts) shaping what this node sends; see docs/TESTBED.md. Empty: off."""
    log_format: str = "console"
    """console (for people) or json (for machines)."""
    log_level: str = "info"
    """debug, info, warning or error."""
    metrics: str = ""
    """Serve Prometheus metrics on HOST:PORT (empty: off)."""
    groups: list[str] = field(default_factory=list)
    """Groups this node is a member of (names or 64-hex ids), shared or not."""
    peers: list[PeerConfig] = field(default_factory=list)

    # -- validation ---------------------------------------------------------
    def validate(self, where: str = "config") -> None:
        """Raise ConfigError for the first setting that cannot work."""

        def fail(key: str, why: str) -> None:
            raise ConfigError(f"{where}: {key}: {why}")

        for key in ("listen", "metrics"):
            value = getattr(self, key)
            if value or key == "listen":
                try:
                    parse_address(value)
                except ValueError as exc:
                    fail(key, str(exc))
        if self.mode not in ("batch", "interactive"):
            fail("mode", f"must be batch or interactive, not {self.mode!r}")
        if self.delivery not in ("causal", "eventual"):
            fail("delivery", f"must be causal or eventual, not {self.delivery!r}")
        if self.durability not in ("crash", "power"):
            fail("durability", f"must be crash or power, not {self.durability!r}")
        if self.log_format not in ("console", "json"):
            fail("log_format", f"must be console or json, not {self.log_format!r}")
        if self.log_level not in ("debug", "info", "warning", "error"):
            fail("log_level", "must be debug, info, warning or error")
        if not 1 <= self.epoch_ms <= 3_600_000:
            fail("epoch_ms", "must be between 1 and 3600000")
        if not 256 <= self.max_datagram <= MAX_DATAGRAM_SIZE:
            fail("max_datagram", f"must be between 256 and {MAX_DATAGRAM_SIZE}")
        if not 1 <= self.max_body <= MAX_BODY_SIZE:
            fail("max_body", f"must be between 1 and {MAX_BODY_SIZE} (a message travels whole in one datagram)")
        if not 1 <= self.max_inflight <= 1_000_000:
            fail("max_inflight", "must be between 1 and 1000000")
        if not 1 <= self.max_parents <= MAX_PARENTS_ON_WIRE:
            fail("max_parents", f"must be between 1 and {MAX_PARENTS_ON_WIRE} (the protocol's limit)")
        if self.peer_max_bytes_per_s != 0 and not 1024 <= self.peer_max_bytes_per_s <= 1 << 40:
            fail("peer_max_bytes_per_s", f"must be 0 (no limit) or between 1024 and {1 << 40}")
        if not 0 <= self.drop_log_interval_s <= 86_400:
            fail("drop_log_interval_s", "must be between 0 and 86400")
        if not 1 <= self.max_requests <= 1_000_000:
            fail("max_requests", "must be between 1 and 1000000")
        if not 1 <= self.control_max_clients <= 10_000:
            fail("control_max_clients", "must be between 1 and 10000")
        if not 1024 <= self.control_max_line <= 256 * 1024 * 1024:
            fail("control_max_line", f"must be between 1024 and {256 * 1024 * 1024}")
        if not 0.1 <= self.resolve_interval_s <= 86_400:  # also refuses nan
            fail("resolve_interval_s", "must be between 0.1 and 86400")
        if not 0 <= self.keepalive_s <= 86_400:  # also refuses nan
            fail("keepalive_s", "must be between 0 (off) and 86400")
        if not 0 <= self.flush_ms <= 60_000:  # also refuses nan (TOML has it)
            fail("flush_ms", "must be between 0 and 60000")
        if not 1 <= self.backoff_max_epochs <= 1_000_000:
            fail("backoff_max_epochs", "must be between 1 and 1000000")
        if not 1 <= self.reconcile_interval_s <= 86_400 * 7:  # also refuses nan
            fail("reconcile_interval_s", "must be between 1 and 604800")
        if not 0 <= self.park_after_s <= 86_400 * 7:
            fail("park_after_s", "must be between 0 and 604800")
        if not 0.0 <= self.loss < 1.0:
            fail("loss", "must be at least 0 and below 1")
        if self.schedule:
            try:
                RadioSchedule.parse(self.schedule)
            except ValueError as exc:
                fail("schedule", str(exc))
        for index, group in enumerate(self.groups):
            _check_text(fail, f"groups[{index}]", group)
        names: set[str] = set()
        ids: set[str] = set()
        for index, peer in enumerate(self.peers):
            label = f"peers[{index}]"
            if not peer.name or not peer.name.replace("-", "").replace("_", "").isalnum():
                fail(f"{label}.name", "must be letters, digits, - or _")
            if peer.name in names:
                fail(f"{label}.name", f"duplicate peer name {peer.name!r}")
            names.add(peer.name)
            _check_text(fail, f"{label}.name", peer.name)
            _check_text(fail, f"{label}.address", peer.address)
            try:
                check_peer_key(parse_peer_id(peer.id))
            except ValueError as exc:
                fail(f"{label}.id", str(exc))
            if peer.id.lower() in ids:
                fail(f"{label}.id", "the same peer id is configured twice")
            ids.add(peer.id.lower())
            try:
                parse_address(peer.address)
            except ValueError as exc:
                fail(f"{label}.address", str(exc))
            for group in peer.groups:
                if not group:
                    fail(f"{label}.groups", "a group name must not be empty")
                _check_text(fail, f"{label}.groups", group)
        for group in self.groups:
            if not group:
                fail("groups", "a group name must not be empty")

    def peer_named(self, name: str) -> PeerConfig | None:
        return next((p for p in self.peers if p.name == name), None)

    def peer_with_id(self, peer_id: bytes) -> PeerConfig | None:
        return next((p for p in self.peers if p.peer_id == peer_id), None)

    def all_groups(self) -> list[str]:
        """Every group this node is in: its own list plus those shared with peers."""
        seen: dict[str, None] = dict.fromkeys(self.groups)
        for peer in self.peers:
            seen.update(dict.fromkeys(peer.groups))
        return list(seen)


def control_character(text: str) -> str | None:
    """The first control character in ``text`` (C0, DEL, C1, line and
    paragraph separators), or None: such a character ends a line in the
    TOML file, in logs and in tables, so no name or address may hold one."""
    for char in text:
        code = ord(char)
        if code < 0x20 or 0x7F <= code < 0xA0 or char in "\u2028\u2029":
            return char
    return None


def _check_text(fail: Any, key: str, value: str) -> None:
    char = control_character(value)
    if char is not None:
        fail(key, f"{value!r} contains a control character ({ord(char):#04x})")


@functools.cache
def _probe_key() -> Any:
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

    return X25519PrivateKey.generate()


def check_peer_key(peer_id: bytes) -> None:
    """Raise ValueError unless ``peer_id`` is a usable X25519 public key.

    The same test the envelope codec applies when it adds a peer (a
    low-order point gives the all-zero shared secret, which X25519 refuses),
    made here so a config holding such a key is refused before it is
    written, not when the node next starts."""
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey

    try:
        _probe_key().exchange(X25519PublicKey.from_public_bytes(bytes(peer_id)))
    except ValueError:
        raise ValueError(
            f"peer id {bytes(peer_id).hex()} is not a usable X25519 public key"
        ) from None


_FIELDS = {f.name: f for f in dataclasses.fields(NodeConfig)}
_PEER_FIELDS = {f.name: f for f in dataclasses.fields(PeerConfig)}


def _check_type(where: str, key: str, value: Any, expected: Any) -> Any:
    if expected in (int, "int"):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: {key}: expected an integer, got {value!r}")
        return value
    if expected in (float, "float"):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: {key}: expected a number, got {value!r}")
        return float(value)
    if expected in (bool, "bool"):
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: {key}: expected true or false, got {value!r}")
        return value
    if expected in (str, "str"):
        if not isinstance(value, str):
            raise ConfigError(f"{where}: {key}: expected a string, got {value!r}")
        return value
    if expected in ("list[str]",):
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{where}: {key}: expected a list of strings, got {value!r}")
        return list(value)
    return value


def _field_kind(f: dataclasses.Field) -> str:
    return str(f.type).replace("typing.", "").replace(" ", "")


def config_from_dict(data: dict[str, Any], where: str = "config") -> NodeConfig:
    """Build and validate a NodeConfig from parsed TOML; unknown keys are errors."""
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        if key == "peers":
            if not isinstance(value, list) or not all(isinstance(p, dict) for p in value):
                raise ConfigError(f"{where}: peers: expected [[peers]] tables")
            peers = []
            for index, table in enumerate(value):
                pkw: dict[str, Any] = {}
                for pkey, pvalue in table.items():
                    f = _PEER_FIELDS.get(pkey)
                    if f is None:
                        known = ", ".join(_PEER_FIELDS)
                        raise ConfigError(
                            f"{where}: peers[{index}]: unknown key {pkey!r} (known: {known})"
                        )
                    pkw[pkey] = _check_type(where, f"peers[{index}].{pkey}", pvalue, _field_kind(f))
                missing = [k for k in ("name", "id", "address") if k not in pkw]
                if missing:
                    raise ConfigError(f"{where}: peers[{index}]: missing {', '.join(missing)}")
                peers.append(PeerConfig(**pkw))
            kwargs["peers"] = peers
            continue
        f = _FIELDS.get(key)
        if f is None:
            raise ConfigError(f"{where}: unknown setting {key!r} (see docs/CONFIG.md)")
        kind = "int" if key == "seed" else _field_kind(f)
        kwargs[key] = _check_type(where, key, value, kind)
    config = NodeConfig(**kwargs)
    config.validate(where)
    return config


def load_config(path: Path) -> NodeConfig:
    """Read and validate ``DIR/mvds.toml``."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(
            f"{path.parent} is not a node directory (it has no {path.name})"
        ) from None
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
    return parse_config(raw, str(path))


def parse_config(raw: bytes, where: str = "config") -> NodeConfig:
    """Parse and validate the bytes of a config file (``where`` names it in errors).

    Separate from :func:`load_config` so the fuzzer (fuzz/targets.py) can
    feed it millions of inputs without touching the file system; any input
    either gives a NodeConfig or raises :class:`ConfigError`, nothing else.
    """
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{where}: not UTF-8 text") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{where}: invalid TOML: {_one_line(str(exc))}") from None
    except RecursionError:  # deeply nested arrays or tables
        raise ConfigError(f"{where}: invalid TOML: nested too deeply") from None
    return config_from_dict(data, where)


def _one_line(text: str) -> str:
    """An error message on one line (the CLI prints exactly one)."""
    return " ".join(text.split())


# -- writing ------------------------------------------------------------------


def _toml_value(value: Any) -> str:
    """A value as TOML text, written by tomlkit (it escapes what TOML needs)."""
    return tomlkit.item(value).as_string()


@functools.cache
def _field_docs() -> dict[str, str]:
    """Each NodeConfig field's attribute docstring, for the file's comments
    (read from the source once: the docstrings are the documentation)."""
    import ast
    import inspect

    tree = ast.parse(inspect.getsource(NodeConfig))
    body = tree.body[0].body  # type: ignore[attr-defined]
    docs = {}
    for node, following in zip(body, body[1:]):
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and isinstance(following, ast.Expr)
            and isinstance(following.value, ast.Constant)
        ):
            docs[node.target.id] = " ".join(str(following.value.value).split())
    return docs


def _doc(name: str) -> str:
    return _field_docs().get(name, "")


def render_config(config: NodeConfig) -> str:
    """The TOML text of a config, every setting with its comment."""
    lines = ["# mvds node configuration (docs/CONFIG.md describes every setting).", ""]
    for f in dataclasses.fields(NodeConfig):
        if f.name == "peers":
            continue
        value = getattr(config, f.name)
        doc = _doc(f.name)
        if doc:
            lines.append(f"# {doc}")
        if value is None:
            lines.append(f"# {f.name} = (unset)")
        else:
            lines.append(f"{f.name} = {_toml_value(value)}")
        lines.append("")
    for peer in config.peers:
        lines.append("[[peers]]")
        lines.append(f"name = {_toml_value(peer.name)}")
        lines.append(f"id = {_toml_value(peer.id)}")
        lines.append(f"address = {_toml_value(peer.address)}")
        lines.append(f"groups = {_toml_value(peer.groups)}")
        if peer.plaintext:
            lines.append("# Interop testing only: datagrams to and from this peer are NOT encrypted.")
        lines.append(f"plaintext = {_toml_value(peer.plaintext)}")
        lines.append("")
    return "\n".join(lines)


def save_config(path: Path, config: NodeConfig) -> None:
    """Write the config atomically (a crash never leaves half a file)."""
    config.validate(str(path))
    # Owner-only, like everything in a node directory: peer addresses and the
    # sharing graph are nobody else's business.
    atomic_write(path, render_config(config).encode("utf-8"), mode=0o600)

