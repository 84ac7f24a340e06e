"""Helpers shared by the CLI commands: node directories, the daemon, output."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Callable

from mvds.cli.errors import CliError
from mvds.daemon.config import ConfigError, NodeConfig, format_utc as format_time, load_config
from mvds.daemon.control_client import ControlClient, ControlError, NotRunning
from mvds.daemon.nodedir import NodeDir, is_running
from mvds.ids import parse_group


def add_dir_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dir", metavar="DIR", help="the node's data directory")


def node_dir(path: str) -> NodeDir:
    nodedir = NodeDir.at(path)
    if not nodedir.path.exists():
        raise CliError(f"{path} does not exist (create a node with: mvds init {path})")
    if not nodedir.exists():
        raise CliError(f"{path} is not a node directory (create one with: mvds init {path})")
    return nodedir


def load(nodedir: NodeDir) -> NodeConfig:
    try:
        return load_config(nodedir.config)
    except ConfigError as exc:
        raise CliError(str(exc)) from None


def edit(config: NodeConfig, change: Callable[..., NodeConfig], *args: Any, **kwargs: Any) -> NodeConfig:
    """``change(config, ...)`` (an edit of mvds.daemon.admin), its refusal as a CliError."""
    try:
        return change(config, *args, **kwargs)
    except ValueError as exc:  # AdminError, ConfigError
        raise CliError(str(exc)) from None


def change_config(
    nodedir: NodeDir, request: dict[str, Any], change: Callable[..., NodeConfig], *args: Any,
    **kwargs: Any,
) -> None:
    """One peer/group edit: through the running daemon's control API
    (``request``: its op and fields), or on DIR/mvds.toml with ``change``
    (an edit of mvds.daemon.admin) when the daemon is stopped.  Either way
    the same rules apply (the daemon calls the same edit)."""
    if daemon_running(nodedir):
        with connect(nodedir) as client:
            call(client, **request)
        return
    save(nodedir, edit(load(nodedir), change, *args, **kwargs))


def save(nodedir: NodeDir, config: NodeConfig) -> None:
    """Write an edited config's peers and groups to DIR/mvds.toml (comments kept)."""
    from mvds.daemon import admin

    try:
        admin.save(nodedir.config, config)
    except ConfigError as exc:
        raise CliError(str(exc)) from None
    except OSError as exc:
        raise CliError(f"cannot write {nodedir.config}: {exc.strerror or exc}") from None


def connect(nodedir: NodeDir, timeout: float | None = 30.0) -> ControlClient:
    """A control connection, or a clear error if the daemon is not running."""
    try:
        return ControlClient(nodedir.socket, timeout=timeout)
    except NotRunning:
        raise CliError(
            f"the daemon for {nodedir.path} is not running (start it with: mvds run {nodedir.path})"
        ) from None
    except ControlError as exc:
        raise CliError(str(exc)) from None


def daemon_running(nodedir: NodeDir) -> bool:
    return is_running(nodedir) and nodedir.socket.exists()


def call(client: ControlClient, op: str, **fields: Any) -> dict[str, Any]:
    try:
        return client.request(op, **fields)
    except ControlError as exc:
        raise CliError(str(exc)) from None


def group_arg(group: str) -> bytes:
    """A GROUP argument's id, or a one-line error for one that cannot be a
    group (the empty name); checked before anything else is done."""
    try:
        return parse_group(group)
    except ValueError as exc:
        raise CliError(f"bad group {group!r}: {exc}") from None


def check_group(config: NodeConfig, group: str) -> bytes:
    """The group's id; an unknown group is an error that says how to add it."""
    group_id = group_arg(group)
    known = {parse_group(g) for g in config.all_groups()}
    if group_id not in known:
        names = ", ".join(config.all_groups()) or "none yet"
        raise CliError(
            f"unknown group {group!r} (this node's groups: {names}; "
            f"share one with: mvds peer add DIR NAME PEER_ID HOST:PORT --group {group})"
        )
    return group_id


def group_names(config: NodeConfig) -> dict[str, str]:
    """Group id (hex) -> the name this node's config uses for it."""
    return {parse_group(g).hex(): g for g in config.all_groups()}


def peer_names(config: NodeConfig) -> dict[str, str]:
    return {p.id.lower(): p.name for p in config.peers}


def print_json(obj: Any) -> None:
    print(json.dumps(obj, separators=(",", ":"), allow_nan=False), flush=True)  # standard JSON only


def resolve_file(path: str) -> Path:
    p = Path(path).expanduser()
    if not p.exists():
        raise CliError(f"{path} does not exist")
    if not p.is_file():
        raise CliError(f"{path} is not a file")
    return p
