"""A node's config into its engine and store, and edited configs onto disk.

At start the config is the truth: :func:`push_config` makes the store's
groups and sharing match it.  While running, :func:`apply_edits` computes
the config after a step's edits (pure, mvds/daemon/admin.py) and stages its
file; :func:`apply_sharing` moves the engine from the old config's sharing
to the new one's inside the step's transaction; the node publishes the
staged file and swaps the config in memory only after the commit.
"""

from __future__ import annotations

from pathlib import Path

from mvds.daemon import admin
from mvds.daemon.commands import Command, NodeError
from mvds.daemon.config import ConfigError, NodeConfig
from mvds.engine import Delivery, Engine, EngineConfig, ExponentialBackoff, Mode
from mvds.ids import parse_group
from mvds.store.base import Store


def engine_config(config: NodeConfig) -> EngineConfig:
    """The engine's settings from the node's."""
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
    )


def push_config(engine: Engine, store: Store, config: NodeConfig, now: float) -> None:
    """Make the store's membership and sharing match the config (the config
    is the truth), in one transaction."""
    with store.transaction():
        wanted = admin.sharing(config)
        for group in config.all_groups():
            engine.join(parse_group(group))
        for group_id, peers in store.sharing().items():
            for peer_id in peers:
                if (group_id, peer_id) not in wanted:
                    engine.unshare(group_id, peer_id, now)
        for group_id, peer_id in sorted(wanted):
            engine.share(group_id, peer_id, now)


def apply_sharing(engine: Engine, old: NodeConfig, new: NodeConfig, now: float) -> None:
    """Bring the engine from ``old``'s groups and sharing to ``new``'s
    (inside the step's transaction)."""
    member = {parse_group(group) for group in old.all_groups()}
    for group in new.all_groups():
        if parse_group(group) not in member:
            engine.join(parse_group(group))
    before, after = admin.sharing(old), admin.sharing(new)
    for group_id, peer_id in sorted(before - after):
        engine.unshare(group_id, peer_id, now)
    for group_id, peer_id in sorted(after - before):
        engine.share(group_id, peer_id, now)


def apply_edits(
    config: NodeConfig, commands: list[Command], path: Path | None
) -> tuple[NodeConfig, Path | None]:
    """The config after the edits among ``commands``, and its file staged
    next to ``path`` (None: a node without a directory).

    The edits are pure: a refused one fails its command and changes
    nothing.  A file that cannot be written (broken on disk, disk full)
    fails every edit of the step and leaves ``config`` as it was."""
    new = config
    edits = [command for command in commands if command.edit is not None]
    for command in edits:
        assert command.edit is not None
        try:
            new = command.edit(new)
        except ValueError as exc:  # AdminError, ConfigError: pure, nothing changed
            command.error = NodeError(str(exc))
    if new is config or path is None:
        return new, None
    try:
        return new, admin.stage(path, admin.render_edit(path, new))
    except ConfigError as exc:  # the file on disk is broken
        error = NodeError(str(exc))
    except OSError as exc:  # a full disk
        error = NodeError(f"not stored: cannot write {path}: {exc.strerror or exc}")
    for command in edits:
        command.error = command.error or error
    return config, None
