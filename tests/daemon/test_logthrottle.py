"""The log throttle: every event counted, log lines rate-limited per reason."""

from mvds.daemon.logthrottle import LogThrottle


def test_first_drop_logs_then_one_line_per_interval_with_the_suppressed_count():
    log = LogThrottle(interval=10.0)
    assert log.count("auth_failed", 0.0) == 1
    assert [log.count("auth_failed", t) for t in (1.0, 2.0, 9.9)] == [None, None, None]
    assert log.count("auth_failed", 10.0) == 4  # three suppressed plus this one
    assert log.count("auth_failed", 10.5) is None
    assert log.counts["auth_failed"] == 6


def test_reasons_are_limited_independently():
    log = LogThrottle(interval=10.0)
    assert log.count("replay", 0.0) == 1
    assert log.count("unknown_peer", 0.1) == 1
    assert log.count("replay", 0.2) is None
    assert dict(log.counts) == {"replay": 2, "unknown_peer": 1}


def test_a_flood_yields_few_lines_but_exact_counts():
    log = LogThrottle(interval=1.0)
    lines = [n for i in range(100_000) if (n := log.count("auth_failed", i / 10_000)) is not None]
    assert len(lines) <= 11
    assert log.counts["auth_failed"] == 100_000
    assert sum(lines) <= 100_000
