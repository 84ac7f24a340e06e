"""structlog setup: console lines for people, JSON lines for machines.

Every log line has an event name (``datagram.dropped``, ``peer.reachable``,
...) and key/value fields, never free text alone, so the JSON output can be
filtered by event.  Nothing secret is ever passed to a logger: private keys
live only in mvds.secure and are never formatted.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any, TextIO

import structlog

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


def configure_logging(fmt: str = "console", level: str = "info", stream: TextIO | None = None) -> None:
    """Route structlog to ``stream`` (stderr) as console text or JSON lines."""
    stream = stream or sys.stderr
    processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    if fmt == "json":
        processors += [structlog.processors.dict_tracebacks, structlog.processors.JSONRenderer()]
    else:
        colors = stream.isatty() if hasattr(stream, "isatty") else False
        processors.append(structlog.dev.ConsoleRenderer(colors=colors))
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[level]),
        logger_factory=structlog.PrintLoggerFactory(file=stream),
        cache_logger_on_first_use=False,
    )


def get_logger(**context: Any) -> Any:
    return structlog.get_logger("mvds").bind(**context)


class RateLimiter:
    """Allows one log line per key per ``interval`` seconds, counting the rest.

    Hostile traffic must not turn into a log flood: a peer sending garbage
    at line rate yields one line per reason per interval, with how many
    were suppressed since the last one.
    """

    def __init__(self, interval: float = 10.0) -> None:
        self.interval = interval
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def allow(self, key: str, now: float | None = None) -> int | None:
        """None if the line should be suppressed; else how many were suppressed."""
        now = time.monotonic() if now is None else now
        last = self._last.get(key)
        if last is not None and now - last < self.interval:
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            return None
        self._last[key] = now
        return self._suppressed.pop(key, 0)
