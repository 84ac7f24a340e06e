"""Waiting for a node to start (mvds/testbed/runner.py:Testbed.wait_ready):
one ping loop for every runner; how a dead start shows is each runner's
hook (a local process that exited, a compose container that is not
running: here without Docker, its state given by the test).  On trio's
autojump clock, so the 60 s start timeout passes in no time."""

from __future__ import annotations

import subprocess
import sys

import pytest
import trio

from mvds.testbed.compose import ComposeTestbed
from mvds.testbed.generate import Params, generate
from mvds.testbed.runner import START_TIMEOUT, TNode
from mvds.testbed.runner import Testbed as LocalTestbed  # (not a test class)
from mvds.testbed.runner import TestbedError as RunError  # (not a test class)


def a_node(tmp_path, last_line: str) -> TNode:
    """A node whose control socket never answers (there is none)."""
    node = TNode("a", tmp_path, 7000)
    (tmp_path / "daemon.log").write_text(f"starting\n{last_line}\n")
    return node


@pytest.fixture
def scenario():
    return generate("line", Params(nodes=2))


async def test_a_local_daemon_that_exits_at_start_is_reported_with_its_last_log_line(
        tmp_path, scenario, autojump_clock):
    node = a_node(tmp_path, "config error: bad listen")
    node.process = subprocess.Popen([sys.executable, "-c", "pass"])
    node.process.wait()
    started = trio.current_time()
    with pytest.raises(RunError, match=r"^node a exited at start: config error: bad listen$"):
        await LocalTestbed(scenario, tmp_path).wait_ready(node)
    assert trio.current_time() - started < 1


async def test_a_local_daemon_that_never_answers_times_out(tmp_path, scenario, autojump_clock):
    node = a_node(tmp_path, "still starting")
    node.process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        with pytest.raises(RunError, match=rf"^node a did not start within {START_TIMEOUT:g} s$"):
            await LocalTestbed(scenario, tmp_path).wait_ready(node)
    finally:
        node.process.kill()
        node.process.wait()


class FakeContainers(ComposeTestbed):
    """Compose mode with the container's state and logs given, not asked of Docker."""

    def __init__(self, scenario, out, states):
        super().__init__(scenario, out)
        self.states = iter(states)
        self.asked: list[float] = []

    def container_state(self, node: str) -> str:
        self.asked.append(trio.from_thread.run_sync(trio.current_time))  # (a worker thread)
        return next(self.states)

    def log_tail(self, node: str) -> str:
        return "entrypoint: exec failed"


async def test_a_container_that_stopped_is_found_by_its_state_every_3_s(
        tmp_path, scenario, autojump_clock):
    testbed = FakeContainers(scenario, tmp_path, ["running", "exited"])
    started = trio.current_time()
    with pytest.raises(RunError, match=r"^node a's container is exited: entrypoint: exec failed$"):
        await testbed.wait_ready(a_node(tmp_path, "unused"))
    assert len(testbed.asked) == 2
    first, second = (t - started for t in testbed.asked)
    assert 3 <= first < 3.5 and 3 <= second - first < 3.5


async def test_a_running_container_that_never_answers_times_out_with_its_log(
        tmp_path, scenario, autojump_clock):
    testbed = FakeContainers(scenario, tmp_path, ["running"] * 100)
    with pytest.raises(RunError, match=rf"^node a did not start within {START_TIMEOUT:g} s: "
                                       "entrypoint: exec failed$"):
        await testbed.wait_ready(a_node(tmp_path, "unused"))
    assert 15 <= len(testbed.asked) <= 20
