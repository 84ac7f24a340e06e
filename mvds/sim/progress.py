"""A minimal progress bar on stderr for long runs (no dependency).

Redraws at most every ``interval`` seconds of wall time, so calling it often
from the event loop costs next to nothing.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO


class ProgressBar:
    """``bar(fraction)`` redraws; ``bar.close()`` ends the line."""

    def __init__(self, label: str, stream: TextIO | None = None, width: int = 30, interval: float = 0.2) -> None:
        self.label = label
        self.stream = stream or sys.stderr
        self.width = width
        self.interval = interval
        self.started = time.monotonic()
        self._last = 0.0
        self._drawn = False

    def __call__(self, fraction: float) -> None:
        now = time.monotonic()
        if fraction < 1.0 and now - self._last < self.interval:
            return
        self._last = now
        fraction = max(0.0, min(1.0, fraction))
        filled = int(fraction * self.width)
        bar = "#" * filled + "-" * (self.width - filled)
        elapsed = now - self.started
        self.stream.write(f"\r{self.label} [{bar}] {fraction:4.0%} {elapsed:6.1f}s")
        self.stream.flush()
        self._drawn = True

    def close(self) -> None:
        if self._drawn:
            self.stream.write("\n")
            self.stream.flush()
