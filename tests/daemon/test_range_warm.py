"""With reconciliation on, a daemon builds its groups' range indexes at
start, a slice at a time between steps (mvds/daemon/node.py
``_warm_range_indexes``), not in the step of the first reconciliation."""

from __future__ import annotations

import trio

import mvds
from mvds.daemon.setup import init_node_dir
from mvds.ids import parse_group
from mvds.store.rangeindex import RangeIndex, make_key

HISTORY = 30_000  # six slices of WARM_ROWS


async def test_a_reconciling_node_builds_its_range_index_at_start_and_keeps_appends(tmp_path):
    path = tmp_path / "a"
    init_node_dir(path)
    config = path / "mvds.toml"
    config.write_text(config.read_text().replace('groups = []', 'groups = ["chat"]'))
    async with mvds.open_node(path) as node:
        for start in range(0, HISTORY, 5000):
            await node.append_many("chat", [b"old %d" % i for i in range(start, start + 5000)])
    config.write_text(config.read_text().replace("reconcile = false", "reconcile = true"))
    group = parse_group("chat")
    async with mvds.open_node(path) as node:
        ranges = node.store._ranges
        # Steps run while it builds: an append lands during or after it.
        new = await node.append("chat", b"written while the index is built")
        with trio.fail_after(20):
            while group not in ranges._indexes:
                await trio.sleep(0.01)
        index = node.store.range_index(group)
        await trio.sleep(1.1)  # a later second: these sort after every key
        await node.append_many("chat", [b"after the build %d" % i for i in range(10)])
        with trio.fail_after(5):
            while index._pending:  # idle: the appends' keys go in without a query
                await trio.sleep(0.01)
        keys = [make_key(m.timestamp, m.id) for m in node.store.get_messages(
            list(node.store.group_message_ids(group))).values()]
        assert len(keys) == HISTORY + 11 and new in {k[8:] for k in keys}
        assert list(index) == list(RangeIndex(keys))
