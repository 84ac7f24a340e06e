"""The compose network fixture: built and brought up once for the module,
torn down whole (containers, network, volumes, image) even on failure.

Without a Docker engine the compose tests skip with the reason; in CI
(CI=true) a missing engine fails them instead, so CI cannot pass by skipping.
"""

from __future__ import annotations

import pytest

from composenet import Network, compose_version, find_compose_or_reason, in_ci, reap_abandoned


def _say(request, text: str) -> None:
    """A line on the terminal, outside pytest's capture (setup output of a
    passing test is otherwise dropped)."""
    reporter = request.config.pluginmanager.getplugin("terminalreporter")
    capture = request.config.pluginmanager.getplugin("capturemanager")
    if reporter is None or capture is None:
        return
    with capture.global_and_fixture_disabled():
        reporter.ensure_newline()
        reporter.write_line(text)


@pytest.fixture(scope="module")
def network(request, tmp_path_factory):
    command, reason = find_compose_or_reason()
    if command is None:
        if in_ci():
            pytest.fail(f"CI=true but the compose tests cannot run: {reason}", pytrace=False)
        pytest.skip(f"compose tests need a Docker engine and compose: {reason}")
    for project in reap_abandoned(command):
        _say(request, f"compose: took down {project}, left behind by a test session that died")
    net = Network(command, tmp_path_factory.mktemp("compose"))
    _say(request, f"compose: {compose_version(command)} ({' '.join(command)}), "
         f"project {net.project}, base image {net.base_image}")
    failed_before = request.session.testsfailed
    up = False
    try:
        build_s, up_s = net.build_and_up()
        up = True
        _say(request, f"compose: image built in {build_s:.0f} s, four nodes healthy {up_s:.0f} s later")
        yield net
    finally:
        if not up or request.session.testsfailed != failed_before:
            _say(request, f"--- last log lines of {net.project} ---\n{net.logs()}")
        net.down()
