"""Writes that come while one is being committed are committed together, in one transaction.

A burst of small writes (Twilio's status callbacks, two or three for every SMS at the
provider's rate; candidates opening their page after that SMS; the senders' outcomes of
those SMS) would otherwise be as many transactions, each queueing for the database's write
lock (on SQLite the only one) ahead of the commands support staff are waiting for. Here one
thread writes: the first write goes at once; those that arrive while it commits wait and go
together in the next transaction, and so on. No write waits for a timer, and under load each
transaction carries as many as came. Each caller is answered once its own transaction has
committed (or with its error), so an answer still means "stored".

Generic (it knows nothing of what is written), so that the web and the notifier share it.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")

MAX_BATCH = 500


class GroupCommit(Generic[Item, Result]):
    """``await group(item)`` from a coroutine, ``group.submit(item)`` from a thread:
    ``write(items)`` stores a batch in one transaction and returns one result per item, in
    order. ``name`` names the writing thread; ``close()`` writes what was handed over and
    stops it."""

    def __init__(
        self,
        write: Callable[[list[Item]], list[Result]],
        *,
        name: str,
        max_batch: int = MAX_BATCH,
    ) -> None:
        self._write = write
        self._max_batch = max_batch
        # None, put by close(), is the last thing ever put: the writer stops at it.
        self._waiting: queue.SimpleQueue[tuple[Item, Future[Result]] | None] = queue.SimpleQueue()
        # Daemon: an instance nobody closes (the web's) does not keep the process alive.
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._handing_over = threading.Lock()
        self._closed = False

    async def __call__(self, item: Item) -> Result:
        return await asyncio.wrap_future(self.submit(item))

    def submit(self, item: Item) -> Future[Result]:
        """Hand ``item`` over; the future is answered once its transaction has committed."""
        future: Future[Result] = Future()
        with self._handing_over:
            if self._closed:
                raise RuntimeError(f"{self._thread.name} is closed")
            if self._thread.ident is None:
                self._thread.start()
            self._waiting.put((item, future))
        return future

    def close(self) -> None:
        """Write everything handed over so far, then stop the writer; later items are refused."""
        with self._handing_over:
            if not self._closed:
                self._closed = True
                if self._thread.ident is not None:
                    self._waiting.put(None)
        if self._thread.ident is not None:
            self._thread.join()

    def _run(self) -> None:
        last = False
        while not last:
            batch, last = self._next_batch()
            if batch:
                self._commit(batch)

    def _commit(self, batch: list[tuple[Item, Future[Result]]]) -> None:
        try:
            results = self._write([item for item, _ in batch])
            if len(results) != len(batch):
                # Checked before any caller is answered: a mismatch found half-way would
                # end this thread, and every later caller would wait for ever.
                raise RuntimeError(f"{len(results)} results for a batch of {len(batch)}")
        except Exception as error:
            for _, future in batch:
                future.set_exception(error)
        else:
            for (_, future), result in zip(batch, results, strict=True):
                future.set_result(result)

    def _next_batch(self) -> tuple[list[tuple[Item, Future[Result]]], bool]:
        """What waits now, at least one unless closing, and whether the writer is closing
        (nothing comes after this batch). A caller who went away before its turn is left out
        (it got no answer, so it must ask again: nothing was promised)."""
        batch: list[tuple[Item, Future[Result]]] = []
        while not batch:
            waiting: list[tuple[Item, Future[Result]]] = []
            entry = self._waiting.get()
            while entry is not None:
                waiting.append(entry)
                if len(waiting) == self._max_batch:
                    break
                try:
                    entry = self._waiting.get_nowait()
                except queue.Empty:
                    break
            batch = [
                (item, future) for item, future in waiting if future.set_running_or_notify_cancel()
            ]
            if entry is None:
                return batch, True
        return batch, False
