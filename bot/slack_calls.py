"""Slack Web API calls and response_url answers, made by a process of their own.

A call costs 0.5–1 ms of CPU (urllib, headers, JSON). Made by a thread of the serving
process, it held the GIL while the next request waited for it: a change log posted as the
next command arrived made that command about 1 ms (30 %) slower. Handing a call over to a
child process costs the serving process about 0.1 ms. Work that reads the database before
it calls Slack (reports, App Home, notice progress) stays on ``Deps.later``.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from functools import partial
from multiprocessing import get_context
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.webhook import WebhookClient

log = logging.getLogger(__name__)


class SlackCalls:
    """Hands calls over to the child process, started at the first call; never blocks."""

    def __init__(self, *, base_url: str, token: str | None) -> None:
        self._connect_args = (base_url, token)
        self._lock = threading.Lock()
        self._pool: ProcessPoolExecutor | None = None

    def call(self, method: str, **kwargs: Any) -> None:
        """``WebClient.<method>(**kwargs)``, e.g. ``call("chat_postMessage", channel=…)``."""
        self._submit(method, _api_call, method, kwargs)

    def respond(self, response_url: str, **payload: Any) -> None:
        """Post ``payload`` to a response_url (button results, replies after the ack)."""
        self._submit("response_url", _respond, response_url, payload)

    def close(self) -> None:
        """Wait for the calls handed over so far, then stop the child."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)

    def _submit(self, what: str, work: Callable[..., None], *args: Any) -> None:
        with self._lock:
            try:
                future = self._started().submit(work, *args)
            except BrokenProcessPool:
                # The child died (killed, out of memory): what it still held is lost; say
                # so, and go on with a new one rather than dropping every later call.
                log.error("the Slack call process had died; calls it still held are lost")
                self._pool = None
                future = self._started().submit(work, *args)
        future.add_done_callback(partial(_log_failure, what))

    def _started(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                max_workers=1,
                # Not fork: the serving process has threads, and a forked child would
                # inherit their locks in whatever state they were.
                mp_context=get_context("spawn"),
                initializer=_connect,
                initargs=self._connect_args,
            )
        return self._pool


def _log_failure(what: str, future: Future[None]) -> None:
    error = future.exception()
    if error is not None:
        log.error("Slack call %s failed: %s", what, error)


# ------------------------------------------------------------------ in the child process

_client: WebClient | None = None


def _connect(base_url: str, token: str | None) -> None:
    global _client
    # Ctrl-C in a terminal reaches the whole process group: the child must live on until
    # `serve` has stopped and handed it its last calls (SlackCalls.close).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _client = WebClient(base_url=base_url, token=token)


def _api_call(method: str, kwargs: dict[str, Any]) -> None:
    assert _client is not None
    try:
        getattr(_client, method)(**kwargs)
    except SlackApiError as error:
        # Its response holds the client, which does not travel back to the parent.
        raise RuntimeError(f"Slack answered {error.response.get('error')!r}") from None


def _respond(response_url: str, payload: dict[str, Any]) -> None:
    response = WebhookClient(response_url).send(**payload)
    if response.status_code != 200:
        raise RuntimeError(f"response_url answered HTTP {response.status_code}: {response.body}")
