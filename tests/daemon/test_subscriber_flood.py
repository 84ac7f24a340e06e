"""A subscriber that never reads, under a flood of ephemeral messages: the
node's memory stays flat (each subscriber has a bounded channel) and what
did not fit is counted in status.  Durable messages are never dropped: a
subscriber re-reads them from the store by seq.

The issue's run was 60 s (132,400 messages, 66 -> 248 MB); the same growth
shows in a few seconds, so the test floods for MVDS_FLOOD_SECONDS (default
8; `MVDS_FLOOD_SECONDS=60 pytest ...` for the full-length run).
"""

from __future__ import annotations

import os

import trio

import mvds

from nodes import collect, pair

SECONDS = float(os.environ.get("MVDS_FLOOD_SECONDS", "8"))
BODY = b"x" * 1000
"""Each body distinct (a counter in front): equal ids are one message."""


def rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


async def test_a_stuck_subscriber_under_an_ephemeral_flood_keeps_memory_flat():
    async with mvds.open_node() as a, mvds.open_node() as b:
        await pair(a, b)
        stuck = trio.Event()

        async def stuck_subscriber():
            async for _ in b.message_batches(follow=True):
                stuck.set()
                await trio.sleep_forever()  # never reads again

        async with trio.open_nursery() as nursery:
            nursery.start_soon(stuck_subscriber)
            await a.append("chat", b"wake the subscriber")
            with trio.fail_after(10):
                await stuck.wait()
            base = rss_mb()
            sent = 0

            async def flood(deadline: float) -> None:
                nonlocal sent
                while trio.current_time() < deadline:
                    await a.append("chat", b"%d " % sent + BODY, ephemeral=True)
                    sent += 1

            deadline = trio.current_time() + SECONDS
            async with trio.open_nursery() as flooders:
                for _ in range(16):
                    flooders.start_soon(flood, deadline)
            await trio.sleep(0.5)
            growth = rss_mb() - base
            dropped = b.status_now()["node"].get("ephemeral_dropped", 0)
            print(f"{sent} ephemeral messages in {SECONDS} s: RSS +{growth:.1f} MB, "
                  f"{dropped} dropped for the stuck subscriber")
            assert sent > 5000
            assert growth < 20, f"RSS grew {growth:.1f} MB"
            assert dropped > 0
            # Durable messages still reach a reader that does read.
            await a.append("chat", b"durable after the flood")
            got = await collect(b, 2)
            assert got[-1].body == b"durable after the flood"
            nursery.cancel_scope.cancel()
