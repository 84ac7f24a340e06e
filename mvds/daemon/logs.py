"""structlog setup: console lines for people, JSON lines for machines.

Every log line has an event name (``datagram.dropped``, ``peer.reachable``,
...) and key/value fields, never free text alone, so the JSON output can be
filtered by event.  Nothing secret is ever passed to a logger: private keys
live only in mvds.secure and are never formatted.
"""

from __future__ import annotations

import logging
import sys
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
    """The mvds logger.

    When the application has not configured structlog (mvds embedded in
    someone's program), mvds logs only warnings and errors, to stderr, so a
    library never chatters on stdout; `mvds run` configures logging fully.
    """
    if not structlog.is_configured():
        return structlog.wrap_logger(
            structlog.PrintLogger(sys.stderr),
            processors=[
                structlog.processors.add_log_level,
                structlog.processors.TimeStamper(fmt="iso", utc=True),
                structlog.dev.ConsoleRenderer(colors=False),
            ],
            wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
        ).bind(**context)
    return structlog.get_logger("mvds").bind(**context)
