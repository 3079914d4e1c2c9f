"""`serve`'s web app on a port of its own, in a thread of the test, with settings for the
fake Slack Web API: what the tests that send signed Slack requests start from."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from fake_slack import FakeSlack
from slack_signing import SECRET
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from bot.config import Settings
from bot.runtime.server import Wiring, http_server, listen, wire


def slack_settings(fake: FakeSlack, **more: Any) -> Settings:
    """Settings for a bot whose Slack is ``fake``, signed with the tests' secret."""
    return Settings(
        _env_file=None,
        slack_bot_token="xoxb-test-token",
        slack_signing_secret=SECRET,
        slack_api_url=fake.api_url,
        **more,
    )


@contextmanager
def serving(
    settings: Settings, *, engine: Engine, session_factory: sessionmaker[Session]
) -> Iterator[tuple[Wiring, str]]:
    """The wired bot and the base URL it answers on, until the block ends."""
    wiring = wire(settings, engine=engine, session_factory=session_factory)
    server = http_server(wiring.web)
    sock = listen(0, "127.0.0.1")
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "server did not start"
        time.sleep(0.01)
    try:
        yield wiring, f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(10)
        wiring.deps.close()
        sock.close()
