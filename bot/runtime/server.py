"""`examdesk serve`: Slack (Socket Mode or HTTP), the web endpoints and the background work,
in one process. It starts without any Slack configuration too, and says what is missing."""

from __future__ import annotations

import logging
import socket
import sys
import threading
from dataclasses import dataclass
from types import FrameType

import uvicorn
from slack_bolt import App
from slack_bolt.adapter.socket_mode import SocketModeHandler
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker
from starlette.applications import Starlette

from bot.config import Settings
from bot.deps import Deps
from bot.runtime import background, doctor
from bot.slack.app import build_app
from bot.slack.listeners.question_errors import ProgressReporter
from bot.web.app import build_web_app
from bot.web.head import BoundedHead
from store.db import checkpoint_every

log = logging.getLogger(__name__)

# Slack must reach the HTTP endpoint from outside (through a proxy or tunnel), so listen on
# every interface; with Socket Mode only health and the notice pages are served here.
HOST = "0.0.0.0"
SOCKET_RETRY_SECONDS = 30


@dataclass
class Wiring:
    deps: Deps
    mode: str  # socket | http | off
    bolt_app: App | None
    web: Starlette


def wire(
    settings: Settings,
    *,
    engine: Engine,
    session_factory: sessionmaker[Session],
    slack_refused: bool = False,
) -> Wiring:
    """Everything `serve` runs, built but not started (tests serve it on a socket of theirs).

    ``slack_refused``: Slack has refused the bot token, so Slack is off whatever is set."""
    deps = Deps(settings=settings, engine=engine, session_factory=session_factory)
    mode = "off" if slack_refused else doctor.slack_mode(settings)
    bolt_app = build_app(deps) if mode != "off" else None
    web = build_web_app(deps, bolt_app if mode == "http" else None, slack=mode)
    return Wiring(deps=deps, mode=mode, bolt_app=bolt_app, web=web)


class _Server(uvicorn.Server):
    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        super().handle_exit(sig, frame)
        # uvicorn raises the signal again once it has stopped, which would end the process
        # before serve() stops the background work and sends the last Slack calls.
        self._captured_signals.clear()


def http_server(web: Starlette) -> uvicorn.Server:
    # Our own logging set-up stays (log_config=None); no access log on the hot path. The C
    # HTTP parser (with a bound on a request's head) and event loop, not uvicorn's
    # pure-Python fallbacks: exam day's status callbacks come by the hundred a second.
    return _Server(
        uvicorn.Config(
            web,
            log_config=None,
            access_log=False,
            lifespan="off",
            timeout_notify=5,
            http=BoundedHead,
            loop="uvloop",
        )
    )


class PortUnavailable(Exception):
    """The HTTP port cannot be listened on; the message says what to do."""


def listen(port: int, host: str = HOST) -> socket.socket:
    # proto must be IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on such sockets, and
    # without it every keep-alive response with a body waits for a delayed ACK.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as error:
        sock.close()
        raise PortUnavailable(
            f"cannot listen on port {port} ({error.strerror}); stop what uses it or set PORT "
            "to a free port"
        ) from None
    sock.listen(2048)
    return sock


def serve(settings: Settings, *, engine: Engine, session_factory: sessionmaker[Session]) -> int:
    try:
        sock = listen(settings.port)
    except PortUnavailable as error:
        print(f"examdesk: {error}", file=sys.stderr)
        return 1
    facts = doctor.at_start(settings, engine)
    wiring = wire(
        settings,
        engine=engine,
        session_factory=session_factory,
        slack_refused=facts.slack_refused,
    )
    stop_background = background.start(wiring.deps)
    # Requests never checkpoint SQLite's WAL (cli opens the engine with checkpoint_apart).
    stop_checkpoints = checkpoint_every(engine) if engine.dialect.name == "sqlite" else None
    stop_socket = threading.Event()
    handler = None
    try:
        if wiring.mode == "socket":
            assert wiring.bolt_app is not None
            handler = SocketModeHandler(wiring.bolt_app, Settings.secret(settings.slack_app_token))
            threading.Thread(
                target=_connect_socket_mode,
                args=(handler, stop_socket),
                name="socket-mode-connect",
                daemon=True,
            ).start()
        slack = {"socket": "Socket Mode", "http": "HTTP at /slack/events", "off": "off"}
        headline = (
            f"examdesk is serving on port {settings.port} (Slack: {slack[wiring.mode]}); "
            "health at /healthz. What is live:"
        )
        log.log(facts.level, facts.block(headline))
        http_server(wiring.web).run(sockets=[sock])
    finally:
        stop_socket.set()
        if handler is not None:
            handler.close()
        stop_background()
        if stop_checkpoints is not None:
            stop_checkpoints()
        wiring.deps.close()
        if isinstance(wiring.deps.notice_progress, ProgressReporter):
            wiring.deps.notice_progress.close()
        sock.close()
    return 0


def _connect_socket_mode(handler: SocketModeHandler, stop: threading.Event) -> None:
    # Once connected the client reconnects by itself; the first connection may fail while
    # Slack or the network is away, so keep trying without holding up the rest of serve.
    while not stop.is_set():
        try:
            handler.connect()
            log.info("connected to Slack over Socket Mode")
            return
        except Exception as error:
            log.error(
                "Socket Mode could not connect (%s); check SLACK_APP_TOKEN (xapp-…, scope "
                "connections:write). Trying again in %s s.",
                error,
                SOCKET_RETRY_SECONDS,
            )
            stop.wait(SOCKET_RETRY_SECONDS)
