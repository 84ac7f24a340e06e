"""The compose network fixture: built and brought up once for the module,
torn down whole (containers, network, volumes, image) even on failure.

Without a Docker engine the compose tests skip with the reason; in CI
(CI=true) a missing engine fails them instead, so CI cannot pass by skipping.
"""

from __future__ import annotations

import pytest

from composenet import Network, compose_version, find_compose_or_reason, in_ci


@pytest.fixture(scope="module")
def network(request, tmp_path_factory):
    command, reason = find_compose_or_reason()
    if command is None:
        if in_ci():
            pytest.fail(f"CI=true but the compose tests cannot run: {reason}", pytrace=False)
        pytest.skip(f"compose tests need a Docker engine and compose: {reason}")
    net = Network(command, tmp_path_factory.mktemp("compose"))
    reporter = request.config.pluginmanager.getplugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(
            f"compose: {compose_version(command)} ({' '.join(command)}), "
            f"project {net.project}, base image {net.base_image}"
        )
    failed_before = request.session.testsfailed
    up = False
    try:
        net.build_and_up()
        up = True
        yield net
    finally:
        if not up or request.session.testsfailed != failed_before:
            logs = net.logs()
            if reporter is not None:
                reporter.write_line(f"\n--- last log lines of {net.project} ---\n{logs}")
        net.down()
