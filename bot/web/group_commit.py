"""Writes that come while one is being committed are committed together, in one transaction.

A burst of small writes (Twilio's status callbacks, two or three for every SMS at the
provider's rate; candidates opening their page after that SMS) would otherwise be as many
transactions, each queueing for the database's write lock (on SQLite the only one) ahead
of the commands support staff are waiting for. Here one thread writes: the first write goes
at once; those that arrive while it commits wait and go together in the next transaction,
and so on. No write waits for a timer, and under load each transaction carries as many as
came. Each caller is answered once its own transaction has committed (or with its error),
so an answer still means "stored".
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
    """``await group(item)``: ``write(items)`` stores a batch in one transaction and returns
    one result per item, in order. ``name`` names the writing thread."""

    def __init__(
        self,
        write: Callable[[list[Item]], list[Result]],
        *,
        name: str,
        max_batch: int = MAX_BATCH,
    ) -> None:
        self._write = write
        self._max_batch = max_batch
        self._waiting: queue.SimpleQueue[tuple[Item, Future[Result]]] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._started = threading.Lock()

    async def __call__(self, item: Item) -> Result:
        with self._started:
            if self._thread.ident is None:
                self._thread.start()
        future: Future[Result] = Future()
        self._waiting.put((item, future))
        return await asyncio.wrap_future(future)

    def _run(self) -> None:
        while True:
            batch = self._next_batch()
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

    def _next_batch(self) -> list[tuple[Item, Future[Result]]]:
        """What waits now, at least one; a caller who went away before its turn is left out
        (it got no answer, so it must ask again: nothing was promised)."""
        batch: list[tuple[Item, Future[Result]]] = []
        while not batch:
            waiting = [self._waiting.get()]
            while len(waiting) < self._max_batch:
                try:
                    waiting.append(self._waiting.get_nowait())
                except queue.Empty:
                    break
            batch = [entry for entry in waiting if entry[1].set_running_or_notify_cancel()]
        return batch
