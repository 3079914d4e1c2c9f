"""Pacing: at most ``rate`` sends per second, evenly spaced, shared by a process's threads."""

from __future__ import annotations

import threading
import time


class RateLimiter:
    """Hands out one slot every ``1/rate`` seconds and never a burst to catch up.

    Falling behind (a slow provider) does not bank slots, so no one-second window ever sees
    more than ``rate`` (+1 for the window's edge) sends.
    """

    def __init__(self, rate: float) -> None:
        self._lock = threading.Lock()
        self._interval = 1.0 / rate
        self._next = 0.0

    @property
    def rate(self) -> float:
        return 1.0 / self._interval

    def set_rate(self, rate: float) -> None:
        with self._lock:
            self._interval = 1.0 / rate

    def acquire(self, stop: threading.Event | None = None) -> bool:
        """Wait for the next slot; False if ``stop`` was set while waiting."""
        with self._lock:
            now = time.monotonic()
            at = max(self._next, now)
            self._next = at + self._interval
        delay = at - time.monotonic()
        if delay > 0:
            if stop is not None:
                return not stop.wait(delay)
            time.sleep(delay)
        return stop is None or not stop.is_set()
