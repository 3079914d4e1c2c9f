"""Pacing: at most ``rate`` sends per second, shared by a process's threads.

A token bucket with a small capacity: slots come every ``1/rate`` seconds; a thread that
wakes late (the GIL, a busy database) may use the slots it missed, but never more than
``burst`` of them, so any one-second window sees at most ``rate + burst`` sends and the
average never exceeds ``rate``.
"""

from __future__ import annotations

import threading
import time

BURST_SHARE = 0.05  # of a second's worth of sends


class RateLimiter:
    def __init__(self, rate: float) -> None:
        self._lock = threading.Lock()
        self._next = 0.0
        self.set_rate(rate)

    @property
    def rate(self) -> float:
        return 1.0 / self._interval

    @property
    def burst(self) -> int:
        return self._burst

    def set_rate(self, rate: float) -> None:
        with self._lock:
            self._interval = 1.0 / rate
            self._burst = max(1, int(rate * BURST_SHARE))

    def acquire(self, stop: threading.Event | None = None) -> bool:
        """Wait for the next slot; False if ``stop`` was set while waiting."""
        with self._lock:
            now = time.monotonic()
            # Missed slots are kept up to the bucket's capacity, no further.
            at = max(self._next, now - (self._burst - 1) * self._interval)
            self._next = at + self._interval
        delay = at - time.monotonic()
        if delay > 0:
            if stop is not None:
                return not stop.wait(delay)
            time.sleep(delay)
        return stop is None or not stop.is_set()
