"""Pacing: one SMS schedule for the whole deployment, shared through the database.

``SMS_PER_SECOND`` is the sender's rate at the provider, whatever number of processes send.
So the processes do not each guess a share of it: they book send slots from one schedule,
the row ``leases.name = 'sms-schedule'``, whose ``expires_at`` is the end of the sending
time booked so far. A booking takes the next ``count`` slots in one short transaction (the
row is locked, so two bookings never overlap) and moves that end on. Each process sends an
SMS at the time of its slot, never earlier, so together they follow one evenly spaced
schedule, and each gets slots as it has work to send.

Why no one-second window holds more than ``rate`` sends: slots are a little more than
``1 / rate`` apart (``HEADROOM``), so any ``rate`` of them in a row span more than a second
by a margin. A send that starts late by less than that margin cannot bring one more into a
window. The slot is kept where the request leaves (the transport's gate, once the request is
built); a slot missed there by more than ``LATE`` (the thread woke late) is given up, never
used late; the rest of the margin covers the last step onto the wire. The hosts' clocks must
agree (NTP): slots are times of day.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from notifications.metrics import SLOTS_MISSED
from store import clock
from store.db import session_scope
from store.models import Lease

log = logging.getLogger(__name__)

SCHEDULE = "sms-schedule"
# Slots are 1 / (rate × (1 − HEADROOM)) apart: the average stays within HEADROOM of the rate.
HEADROOM = 0.03
LATE = 0.010  # seconds; a slot missed by more is given up
PAIRED = 0.0002  # seconds; two clock readings at most this far apart were made together
# Seconds of slots booked at a time. A process books one such chunk whenever it has fewer
# than CHUNKS_AHEAD left (and SMS waiting for them): one booking per chunk used, so processes
# with work get equal shares, and a booking has that many chunks' time to come back. A
# process that dies or runs out of work leaves that many unused.
CHUNK_SECONDS = 0.1
CHUNKS_AHEAD = 3
# A schedule that has run out starts this far ahead, so that the booking's answer arrives
# before its first slot.
LEAD = timedelta(seconds=0.1)
# A schedule booked further ahead than this was written by a clock that was wrong (or moved
# back since): it is started afresh rather than waited for.
STALE_AHEAD = timedelta(seconds=60)


def book(session_factory: sessionmaker[Session], *, count: int, interval: timedelta) -> datetime:
    """Book the deployment's next ``count`` SMS slots, ``interval`` apart: the first one's time."""
    for _ in range(3):
        try:
            with session_scope(session_factory) as db_session:
                booked_until = db_session.scalar(
                    select(Lease.expires_at).where(Lease.name == SCHEDULE).with_for_update()
                )
                # Read after the row lock: time spent waiting for it is not booked.
                now = clock.now()
                start = now + LEAD
                if booked_until is not None and start < booked_until <= now + STALE_AHEAD:
                    start = booked_until
                end = start + count * interval
                if booked_until is None:
                    db_session.add(Lease(name=SCHEDULE, holder="deployment", expires_at=end))
                else:
                    db_session.execute(
                        update(Lease).where(Lease.name == SCHEDULE).values(expires_at=end)
                    )
            return start
        except IntegrityError:
            # Another process created the row at the same moment; book from its row.
            continue
    raise RuntimeError("could not book SMS slots: the schedule row keeps changing")


class SendSchedule:
    """The slots this process has booked, handed out in order.

    Bookings run in a thread of their own, ahead of need, so that taking a slot does not wait
    for the database, and the thread that sends at that slot waits for nothing else.
    """

    def __init__(self, session_factory: sessionmaker[Session], rate: float) -> None:
        self.session_factory = session_factory
        self.interval = 1.0 / (rate * (1.0 - HEADROOM))
        self.chunk = max(1, round(CHUNK_SECONDS / self.interval))
        self._lock = threading.Lock()
        self._slots: collections.deque[float] = collections.deque()  # time.monotonic() values
        self._booker = ThreadPoolExecutor(1, thread_name_prefix="notifier-book")
        self._booking: Future[tuple[float, int]] | None = None

    def take(self, stop: threading.Event, *, wanted: int = 1) -> float | None:
        """This process's next slot not yet missed (a ``time.monotonic()`` value), without
        waiting for it; None if ``stop`` was set meanwhile, or no slot could be booked (the
        database is unreachable). ``wanted``: the SMS this process has waiting, this one
        included; no slots are booked beyond those, which would go unused."""
        with self._lock:
            return None if stop.is_set() else self._next(stop, wanted)

    @staticmethod
    def wait_for(slot: float, stop: threading.Event) -> bool:
        """Wait until ``slot``: True if this thread got there in time to send (within
        ``LATE``), False if it woke later (the slot is given up) or ``stop`` was set."""
        delay = slot - time.monotonic()
        if delay > 0 and stop.wait(delay):
            return False
        if time.monotonic() - slot <= LATE:
            return True
        SLOTS_MISSED.labels("wire").inc()
        return False

    def close(self) -> None:
        self._booker.shutdown(wait=True, cancel_futures=True)

    def _next(self, stop: threading.Event, wanted: int) -> float | None:
        """The next slot not yet missed, keeping up to CHUNKS_AHEAD chunks booked (as many as
        there is something to send with); waits for a booking only with no slot in hand."""
        while True:
            while self._slots and self._slots[0] < time.monotonic() - LATE:
                self._slots.popleft()  # missed: given up, never used late
                SLOTS_MISSED.labels("hand-over").inc()
            if self._booking is not None and (self._booking.done() or not self._slots):
                booking, self._booking = self._booking, None
                try:
                    first, count = booking.result()
                except Exception:
                    log.exception("could not book SMS slots")
                    if not self._slots:
                        stop.wait(1.0)
                        return None
                else:
                    self._slots.extend(first + i * self.interval for i in range(count))
                    continue
            count = min(self.chunk, wanted - len(self._slots))
            if self._booking is None and len(self._slots) < CHUNKS_AHEAD * self.chunk and count > 0:
                self._booking = self._booker.submit(self._book, count)
            if self._slots:
                return self._slots.popleft()

    def _book(self, count: int) -> tuple[float, int]:
        start = book(self.session_factory, count=count, interval=timedelta(seconds=self.interval))
        return monotonic_at(start), count


def monotonic_at(moment: datetime) -> float:
    """``moment`` (a time of day, as ``clock.now()`` gives) on ``time.monotonic()``'s scale.

    Every sender maps the slots it books so: the two clocks are read as a pair no other
    thread came between (else this chunk of slots would be off by that thread's turn).
    """
    for _ in range(5):
        before = time.monotonic()
        now = clock.now()
        after = time.monotonic()
        if after - before <= PAIRED:
            break
    return (before + after) / 2 + (moment - now).total_seconds()
