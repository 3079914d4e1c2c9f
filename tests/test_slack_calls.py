"""Slack calls made by a process of their own (bot.slack_calls): they arrive, failures are
logged in the serving process, and a child that died is replaced."""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time

import psutil
import pytest
from fake_slack import FakeSlack

from bot import slack_calls
from bot.slack_calls import SlackCalls


@pytest.fixture
def fake():
    fake = FakeSlack()
    yield fake
    fake.close()


@pytest.fixture
def calls(fake):
    calls = SlackCalls(base_url=fake.api_url, token="xoxb-calls")
    yield calls
    calls.close()


def _child_pids() -> set[int]:
    return {p.pid for p in psutil.Process().children() if "spawn_main" in " ".join(p.cmdline())}


def test_calls_and_answers_are_made_by_a_child_process_with_the_token(fake, calls):
    before = _child_pids()
    calls.call("chat_postMessage", channel="C0LOG", text="<@U1> add 5 min")
    calls.respond(fake.response_url(), response_type="ephemeral", text="Done")
    (post,) = fake.wait_for("chat.postMessage")
    (answer,) = fake.wait_for("response_url")
    assert post.body == {"channel": "C0LOG", "text": "<@U1> add 5 min"}
    assert post.headers["Authorization"] == "Bearer xoxb-calls"
    assert answer.body["text"] == "Done"
    assert len(_child_pids() - before) == 1


def test_close_waits_for_what_was_handed_over(fake, calls):
    for i in range(20):
        calls.call("chat_postMessage", channel="C0LOG", text=f"change {i}")
    calls.close()
    assert [c.body["text"] for c in fake.of("chat.postMessage")] == [
        f"change {i}" for i in range(20)
    ]


def test_a_refused_call_is_logged_here_with_slacks_reason(fake, calls, caplog):
    fake.answers["chat.postMessage"] = {"ok": False, "error": "channel_not_found"}
    with caplog.at_level(logging.ERROR, logger="bot.slack_calls"):
        calls.call("chat_postMessage", channel="C0GONE", text="x")
        calls.close()
    assert "Slack call chat_postMessage failed: Slack answered 'channel_not_found'" in caplog.text


def test_a_child_that_died_is_replaced(fake, calls, caplog):
    calls.call("chat_postMessage", channel="C0LOG", text="first")
    fake.wait_for("chat.postMessage")
    (child,) = _child_pids()
    os.kill(child, signal.SIGKILL)
    deadline = time.monotonic() + 30
    with caplog.at_level(logging.ERROR, logger="bot.slack_calls"):
        # Calls handed over before the death is noticed are lost (and logged); later ones
        # go to a new child.
        while len(fake.of("chat.postMessage")) < 2:
            assert time.monotonic() < deadline, "no call arrived after the child died"
            calls.call("chat_postMessage", channel="C0LOG", text="after")
            time.sleep(0.2)
    assert "the Slack call process had died" in caplog.text
    assert child not in _child_pids()


def test_ctrl_c_in_the_terminal_leaves_the_child_to_finish_its_calls(fake, calls):
    calls.call("chat_postMessage", channel="C0LOG", text="first")
    fake.wait_for("chat.postMessage")
    (child,) = _child_pids()
    os.kill(child, signal.SIGINT)  # what the terminal sends the whole process group
    time.sleep(0.2)
    calls.call("chat_postMessage", channel="C0LOG", text="after Ctrl-C")
    assert _child_pids() == {child}  # the same child, not a replacement
    calls.close()
    assert [c.body["text"] for c in fake.of("chat.postMessage")] == ["first", "after Ctrl-C"]


@pytest.fixture
def silent_slack():
    """A Slack that accepts connections and never answers."""
    listener = socket.create_server(("127.0.0.1", 0), backlog=64)
    yield f"http://127.0.0.1:{listener.getsockname()[1]}/api/"
    listener.close()


def test_a_slack_that_never_answers_neither_blocks_requests_nor_shutdown(
    silent_slack, monkeypatch, caplog
):
    """Calls are handed over at once while the child waits for Slack, far beyond what the
    pipe between the processes holds; shutdown gives up on them after its timeout."""
    monkeypatch.setattr(slack_calls, "CLOSE_TIMEOUT_S", 0.5)
    calls = SlackCalls(base_url=silent_slack, token="xoxb-calls")
    text = "x" * 1000  # 5,000 of these are ~5 MB; a pipe holds a few hundred kB

    def hand_over() -> None:
        for _ in range(5000):
            calls.call("chat_postMessage", channel="C0", text=text)

    handing_over = threading.Thread(target=hand_over)
    handing_over.start()
    handing_over.join(timeout=20)
    try:
        assert not handing_over.is_alive(), "handing calls over waited for a silent Slack"
    finally:
        with caplog.at_level(logging.ERROR, logger="bot.slack_calls"):
            calls.close()
    assert "did not finish its calls within 0.5 s" in caplog.text
    assert _child_pids() == set()
