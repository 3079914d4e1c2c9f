"""The in-app notice page `GET /notices/{token}` (R13), in real headless Chromium against the
real server: the candidate's notices newest first, in their language, readable on a phone,
without JavaScript; opening it records read_at; an unknown token gets a plain 404."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from datetime import timedelta

import httpx
import pytest
import uvicorn
from conftest import OSLO
from sqlalchemy import select
from starlette.applications import Starlette

from bot import web_notices
from bot.deps import Deps
from bot.settings import Settings
from store.models import Candidate, NoticeReceipt

CHROMIUM = os.environ.get("CHROMIUM_BIN") or shutil.which("chromium") or "/usr/bin/chromium"


class Server:
    def __init__(self, deps: Deps) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self.sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        app = Starlette(routes=web_notices.routes(deps))
        self.server = uvicorn.Server(
            uvicorn.Config(app, log_config=None, access_log=False, lifespan="off")
        )
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True
        )

    def __enter__(self) -> Server:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(5)
        self.sock.close()


@pytest.fixture
def server(engine, session_factory) -> Iterator[Server]:
    deps = Deps(
        settings=Settings(examdesk_timezone="Europe/Oslo"),
        engine=engine,
        session_factory=session_factory,
    )
    with Server(deps) as running:
        yield running


def chromium(tmp_path, url: str, *extra: str) -> str:
    if not os.path.exists(CHROMIUM):
        if os.environ.get("CI"):
            pytest.fail("chromium is missing in CI")
        pytest.skip("chromium is not installed")
    profile = tmp_path / f"profile-{time.monotonic_ns()}"
    done = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--disable-dev-shm-usage",
            f"--user-data-dir={profile}",
            *extra,
            url,
        ],
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def _two_notices(world) -> tuple[str, str, str]:
    code = world.add_test()
    world.add_candidates(code, ["10001"], language="nb")
    world.add_candidates(code, ["10002"], language="en")
    world.add_candidates(code, ["10003"], language="nb")
    first = world.run(f"/notice {code} Første beskjed: oppgave 1 <b>er</b> endret.", confirmed=True)
    assert first.ok, first.text
    world.now += timedelta(minutes=20)
    with world.factory() as s:
        # The report carries both languages.
        from commands.context import Ctx
        from commands.notice import send
        from commands.question_error import report

        ctx = Ctx(db_session=s, actor="U0TEACHER1", tz=OSLO, now=world.now)
        made = report(
            ctx,
            test_code=code,
            text_nb="Oppgave 3b: n = 10, ikke n = 100.",
            text_en="Task 3b: n = 10, not n = 100.",
        )
        s.commit()
        ctx = Ctx(db_session=s, actor="U0SUPPORT1", tz=OSLO, now=world.now)
        send(ctx, report_id=made.data["report_id"])
        s.commit()
        tokens = {c.number: c.notice_token for c in s.scalars(select(Candidate))}
    return tokens["10001"], tokens["10002"], tokens["10003"]


def _read_at(world, token: str) -> list:
    with world.factory() as s:
        return list(
            s.scalars(
                select(NoticeReceipt.read_at)
                .join(Candidate, Candidate.id == NoticeReceipt.candidate_id)
                .where(Candidate.notice_token == token)
            )
        )


def test_r13_candidate_page_in_chromium_marks_read(world, server, tmp_path):
    nb_token, en_token, _ = _two_notices(world)
    assert _read_at(world, nb_token) == [None, None]

    dom = chromium(tmp_path, f"{server.url}/notices/{nb_token}", "--dump-dom")

    assert '<html lang="nb">' in dom
    assert 'name="viewport" content="width=device-width, initial-scale=1"' in dom
    assert "<script" not in dom
    assert "Beskjeder for eksamen TDT4100-2026H" in dom
    articles = re.findall(r'<article id="n(\d+)"[^>]*>(.*?)</article>', dom, re.S)
    assert len(articles) == 2
    (newest_id, newest), (older_id, older) = articles
    assert int(newest_id) > int(older_id)  # newest first
    assert "Oppgave 3b: n = 10, ikke n = 100." in newest
    assert "Første beskjed" in older and "&lt;b&gt;er&lt;/b&gt;" in older  # escaped, not HTML
    assert newest.count('class="badge">Ny<') == 1
    read = _read_at(world, nb_token)
    assert len(read) == 2 and all(r is not None for r in read)
    assert _read_at(world, en_token) == [None, None]  # only the opener's receipts

    # A second visit: nothing is new any more.
    again = chromium(tmp_path, f"{server.url}/notices/{nb_token}", "--dump-dom")
    assert 'class="badge"' not in again


def test_r13_english_candidate_reads_english(world, server, tmp_path):
    _, en_token, _ = _two_notices(world)
    dom = chromium(tmp_path, f"{server.url}/notices/{en_token}", "--dump-dom")
    assert '<html lang="en">' in dom and "Notices for exam TDT4100-2026H" in dom
    assert "Task 3b: n = 10, not n = 100." in dom
    # The /notice text was written once; it is shown as written.
    assert "Første beskjed" in dom


def test_page_is_readable_on_a_phone(world, server, tmp_path):
    nb_token, _, _ = _two_notices(world)
    shot = tmp_path / "phone.png"
    chromium(
        tmp_path,
        f"{server.url}/notices/{nb_token}",
        "--window-size=390,844",
        "--hide-scrollbars",
        f"--screenshot={shot}",
    )
    assert shot.exists() and shot.stat().st_size > 5000
    # Large type and no sideways scrolling: checked on the markup the browser got.
    html = httpx.get(f"{server.url}/notices/{nb_token}").text
    assert "font-size:1.25rem" in html and "max-width:40rem" in html
    assert "overflow-wrap:anywhere" in html


def test_unknown_token_is_a_plain_404_that_leaks_nothing(world, server, tmp_path):
    _two_notices(world)
    for token in ("nope", "x" * 43, "x" * 500):
        response = httpx.get(f"{server.url}/notices/{token}")
        assert response.status_code == 404
        assert "TDT4100" not in response.text and "beskjed:" not in response.text.lower()
    dom = chromium(tmp_path, f"{server.url}/notices/{'y' * 43}", "--dump-dom")
    assert 'id="not-found"' in dom and "TDT4100" not in dom


def test_page_headers_keep_the_token_private(world, server):
    nb_token, _, _ = _two_notices(world)
    response = httpx.get(f"{server.url}/notices/{nb_token}")
    assert response.status_code == 200
    assert response.headers["referrer-policy"] == "no-referrer"
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["content-type"].startswith("text/html")


def test_candidate_without_notices_sees_an_empty_list(world, server):
    code = world.add_test()
    world.add_candidates(code, ["10001"], language="en")
    with world.factory() as s:
        token = s.scalar(select(Candidate.notice_token))
    response = httpx.get(f"{server.url}/notices/{token}")
    assert response.status_code == 200 and "No notices yet." in response.text
