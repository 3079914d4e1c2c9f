"""Slack Web API calls and response_url answers, made by a process of their own.

A call costs 0.5–1 ms of CPU (urllib, headers, JSON). Made by a thread of the serving
process, it held the GIL while the next request waited for it: a change log posted as the
next command arrived made that command about 1 ms (30 %) slower. The serving process only
writes each call down a pipe (a few µs, no thread of its own woken); the child reads the
pipe at once into a queue of its own, so a slow Slack never blocks the writer, and sends back
only failures. Work that reads the database before it calls Slack (reports, App Home, notice
progress) stays on ``Deps.later``.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import signal
import threading
from multiprocessing import get_context
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.webhook import WebhookClient

log = logging.getLogger(__name__)

API, RESPOND = "api", "respond"
# How long `close` waits for the calls handed over; Slack answers or times out within 30 s
# a call, but shutdown must not hang on a Slack that has stopped answering.
CLOSE_TIMEOUT_S = 60.0


class SlackCalls:
    """Hands calls over to the child process, started at the first call; never blocks."""

    def __init__(self, *, base_url: str, token: str | None) -> None:
        self._connect_args = (base_url, token)
        self._lock = threading.Lock()
        self._child: _Child | None = None

    def call(self, method: str, **kwargs: Any) -> None:
        """``WebClient.<method>(**kwargs)``, e.g. ``call("chat_postMessage", channel=…)``."""
        self._send((API, method, kwargs))

    def respond(self, response_url: str, **payload: Any) -> None:
        """Post ``payload`` to a response_url (button results, replies after the ack)."""
        self._send((RESPOND, response_url, payload))

    def close(self) -> None:
        """Wait for the calls handed over so far, then stop the child."""
        with self._lock:
            child, self._child = self._child, None
        if child is not None:
            child.finish()

    def _send(self, job: tuple[str, str, dict[str, Any]]) -> None:
        with self._lock:
            if self._child is None:
                self._child = _Child(*self._connect_args)
            try:
                self._child.send(job)
            except OSError:
                # The child died (killed, out of memory): what it still held is lost; say
                # so, and go on with a new one rather than dropping every later call.
                log.error("the Slack call process had died; calls it still held are lost")
                self._child.discard()
                self._child = _Child(*self._connect_args)
                self._child.send(job)


class _Child:
    """One child process, the pipe to it, and a thread that logs the failures it reports."""

    def __init__(self, base_url: str, token: str | None) -> None:
        context = get_context("spawn")  # not fork: the serving process has threads and locks
        self._pipe, theirs = context.Pipe()
        self._process: BaseProcess = context.Process(
            target=_child_main,
            args=(theirs, base_url, token),
            name="examdesk-slack-calls",
            daemon=True,
        )
        self._process.start()
        theirs.close()  # so that the child's death is an EOF here and EPIPE for `send`
        self._finishing = False
        self._failures = threading.Thread(
            target=self._log_failures, name="slack-call-failures", daemon=True
        )
        self._failures.start()

    def send(self, job: tuple[str, str, dict[str, Any]] | None) -> None:
        self._pipe.send(job)

    def finish(self) -> None:
        self._finishing = True
        with contextlib.suppress(OSError):  # already dead: nothing more will be made
            self.send(None)  # the child makes every call before this one, then exits
        self._process.join(CLOSE_TIMEOUT_S)
        if self._process.is_alive():
            log.error(
                "the Slack call process did not finish its calls within %g s; the rest are dropped",
                CLOSE_TIMEOUT_S,
            )
            self._process.kill()
            self._process.join()
        self._failures.join()
        self._pipe.close()

    def discard(self) -> None:
        self._finishing = True
        self._process.kill()
        self._process.join()
        self._failures.join()
        self._pipe.close()

    def _log_failures(self) -> None:
        while True:
            try:
                failure = self._pipe.recv()
            except (EOFError, OSError):
                if not self._finishing:
                    log.error("the Slack call process has died; a new one starts at the next call")
                return
            log.error("%s", failure)


# ------------------------------------------------------------------ in the child process


def _child_main(pipe: Connection, base_url: str, token: str | None) -> None:
    # Ctrl-C in a terminal reaches the whole process group: the child must live on until
    # `serve` has stopped and handed it its last calls (SlackCalls.close).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    client = WebClient(base_url=base_url, token=token)
    jobs: queue.SimpleQueue[tuple[str, str, dict[str, Any]] | None] = queue.SimpleQueue()
    threading.Thread(target=_read, args=(pipe, jobs), name="read", daemon=True).start()
    while (job := jobs.get()) is not None:
        kind, target, arguments = job
        what = target if kind == API else "response_url"
        try:
            if kind == API:
                _api_call(client, target, arguments)
            else:
                _respond(target, arguments)
        except Exception as error:
            with contextlib.suppress(OSError):  # the serving process is gone: none to tell
                pipe.send(f"Slack call {what} failed: {error}")


def _read(pipe: Connection, jobs: queue.SimpleQueue) -> None:
    """Empties the pipe as calls arrive, so that the serving process never waits to write."""
    try:
        while True:
            job = pipe.recv()
            jobs.put(job)
            if job is None:
                return
    except (EOFError, OSError):
        jobs.put(None)  # the serving process is gone: make what arrived, then stop


def _api_call(client: WebClient, method: str, kwargs: dict[str, Any]) -> None:
    try:
        getattr(client, method)(**kwargs)
    except SlackApiError as error:
        raise RuntimeError(f"Slack answered {error.response.get('error')!r}") from None


def _respond(response_url: str, payload: dict[str, Any]) -> None:
    response = WebhookClient(response_url).send(**payload)
    if response.status_code != 200:
        raise RuntimeError(f"response_url answered HTTP {response.status_code}: {response.body}")
