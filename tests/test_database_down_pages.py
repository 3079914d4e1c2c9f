"""The candidate's page (R13), its read button and `/metrics` while the database fails.

The database fails as SQLite does when its lock wait runs out ("database is locked"), raised
by the DBAPI of whichever database the suite runs on, so SQLAlchemy wraps it as it wraps a
real one. The candidate gets a short page in their language (both where it cannot be known)
with 503 and ``Retry-After``, never a bare 500, never a confirmation that was not saved; the
log gets one line of ours without the page's token; a scrape keeps this process's metrics.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator

import httpx
import pytest
from conftest import run_async
from prometheus_client.parser import text_string_to_metric_families
from served import serving
from sqlalchemy import Engine, event, select

from bot.config import Settings
from bot.web.notices import RETRY_AFTER_SECONDS
from notifications import inapp
from store.models import Candidate, Notice, NoticeReceipt

CODE = "TDT4100-2026H"
PHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1"
)
BROWSER = {"user-agent": PHONE, "sec-fetch-dest": "document"}


@pytest.fixture
def web(engine, session_factory) -> Iterator[str]:
    """The real web app of `examdesk serve` on a loopback socket: its base URL."""
    settings = Settings(_env_file=None, examdesk_timezone="Europe/Oslo")
    with serving(settings, engine=engine, session_factory=session_factory) as (_, url):
        yield url


@pytest.fixture
def exam(world) -> tuple[dict[str, str], int]:
    """Page tokens by candidate number (10001 reads Norwegian, 10002 English) and the notice."""
    world.add_test(CODE)
    world.add_candidates(CODE, ["10001"], language="nb")
    world.add_candidates(CODE, ["10002"], language="en")
    reply = world.run(f"/notice {CODE} Oppgave 2: bruk kg.", confirmed=True)
    assert reply.ok, reply.text
    with world.factory() as s:
        tokens = {c.number: c.notice_token for c in s.scalars(select(Candidate))}
        return tokens, s.scalar(select(Notice.id))


def failing(engine: Engine, table: str) -> Callable[[], None]:
    """Every statement naming ``table`` fails as a lock wait run out does; returns the undo."""
    dbapi = engine.dialect.loaded_dbapi

    def fail(conn, cursor, statement, params, context, executemany) -> None:
        if table in statement:
            raise dbapi.OperationalError("database is locked")

    event.listen(engine, "before_cursor_execute", fail)
    return lambda: event.remove(engine, "before_cursor_execute", fail)


def read_at(world) -> list[object]:
    with world.factory() as s:
        return list(s.scalars(select(NoticeReceipt.read_at).order_by(NoticeReceipt.candidate_id)))


def assert_not_now(response: httpx.Response) -> None:
    assert response.status_code == 503
    assert response.headers["retry-after"] == str(RETRY_AFTER_SECONDS)
    for name, value in inapp.HEADERS.items():
        assert response.headers[name] == value, name
    assert response.headers["content-type"].startswith("text/html")


def assert_logged_ours_only(caplog, line: str, tokens: dict[str, str]) -> None:
    """One warning of ours, no traceback, and no token or page link anywhere in the log."""
    ours = [(r.levelname, r.getMessage()) for r in caplog.records if r.name == "bot.web.notices"]
    assert ours == [("WARNING", line)]
    assert not any(r.exc_info for r in caplog.records), "no traceback"
    assert "Exception in ASGI application" not in caplog.text
    # httpx is the test's own client. uvicorn's access log is off in `serve` (no handler, so
    # it writes nothing); only the test's capture handler, which pytest adds to it, sees it.
    server_side = " ".join(
        r.getMessage() for r in caplog.records if r.name not in ("httpx", "uvicorn.access")
    )
    assert "/notices/" not in server_side
    assert not any(token in server_side for token in tokens.values())


PAGE_LINE = "candidate page not shown: database error (OperationalError); answered 503 to reload"
READ_LINE = (
    "read confirmation not saved: database error (OperationalError); answered 503 to press again"
)


@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_r13_page_is_503_in_both_languages_when_the_database_fails(
    world, exam, web, engine, caplog, method
):
    tokens, _ = exam
    caplog.set_level(logging.INFO)
    undo = failing(engine, "candidates")
    try:
        response = httpx.request(method, f"{web}/notices/{tokens['10001']}", headers=BROWSER)
    finally:
        undo()
    assert_not_now(response)
    if method == "GET":
        # Which language the candidate reads is in the database: both, Norwegian first.
        text = response.text
        assert '<html lang="nb">' in text
        assert inapp.NOT_NOW["nb"]["page"] in text and inapp.NOT_NOW["en"]["page"] in text
        assert '<p lang="en">' + inapp.NOT_NOW["en"]["page"] in text
        assert "Last inn siden på nytt om litt" in text and "Reload the page in a moment" in text
        assert tokens["10001"] not in text
    assert_logged_ours_only(caplog, PAGE_LINE, tokens)
    # The next view, the database back, is the page itself; nothing was marked read or opened.
    assert read_at(world) == [None, None]
    again = httpx.get(f"{web}/notices/{tokens['10001']}", headers=BROWSER)
    assert again.status_code == 200 and "Oppgave 2: bruk kg." in again.text


@pytest.mark.parametrize(("number", "language"), [("10001", "nb"), ("10002", "en")])
def test_r13_read_button_is_503_in_the_pages_language_and_saves_nothing(
    world, exam, web, engine, caplog, number, language
):
    tokens, notice = exam
    token = tokens[number]
    page = httpx.get(f"{web}/notices/{token}", headers=BROWSER)
    # The page's own form carries its language, for an answer that needs no database.
    assert f'<input type="hidden" name="language" value="{language}">' in page.text
    caplog.set_level(logging.INFO)
    form = {"notice": str(notice), "language": language}
    undo = failing(engine, "notice_receipts")
    try:
        response = httpx.post(f"{web}/notices/{token}/read", data=form)
    finally:
        undo()
    assert_not_now(response)
    other = "en" if language == "nb" else "nb"
    assert f'<html lang="{language}">' in response.text
    assert inapp.NOT_NOW[language]["read"] in response.text
    assert inapp.NOT_NOW[other]["read"] not in response.text
    # It names the button to press again, as the page labels it.
    assert inapp.WORDS[language]["confirm"] in response.text
    # Back to the page, at the notice, to press the button again.
    assert f'href="../{token}#n{notice}"' in response.text
    assert_logged_ours_only(caplog, READ_LINE, tokens)
    assert read_at(world) == [None, None]
    # Pressed again with the database back, it is saved.
    saved = httpx.post(f"{web}/notices/{token}/read", data=form, follow_redirects=False)
    assert saved.status_code == 303
    assert (read_at(world)[int(number) - 10001] is not None) and read_at(world).count(None) == 1


def test_r13_read_confirmations_pressed_together_while_the_database_fails_save_none(
    world, exam, web, engine, caplog
):
    """Candidates pressing at the same moment (their confirmations go to the database in one
    batch) are each told to press again, and none is shown as read; a form from before the
    page sent its language gets both languages."""
    tokens, notice = exam

    async def press_together() -> list[httpx.Response]:
        async with httpx.AsyncClient() as client:
            return await asyncio.gather(
                *(
                    client.post(f"{web}/notices/{token}/read", data={"notice": str(notice)})
                    for token in tokens.values()
                )
            )

    undo = failing(engine, "UPDATE notice_receipts")
    try:
        responses = run_async(press_together())
    finally:
        undo()
    for response in responses:
        assert_not_now(response)
        for language in ("nb", "en"):
            assert inapp.NOT_NOW[language]["read"] in response.text
    assert read_at(world) == [None, None]
    assert not any(token in caplog.text for token in tokens.values())


def _samples(text: str) -> dict[str, list[object]]:
    found: dict[str, list[object]] = {}
    for family in text_string_to_metric_families(text):
        found.setdefault(family.name, []).extend(family.samples)
    return found


def test_metrics_keep_this_processs_own_when_the_database_fails(exam, web, engine, caplog):
    tokens, _ = exam
    assert httpx.get(f"{web}/notices/{tokens['10001']}", headers=BROWSER).status_code == 200
    assert _samples(httpx.get(f"{web}/metrics").text)["examdesk_deliveries"]
    caplog.set_level(logging.INFO)
    undo = failing(engine, "deliveries")
    try:
        response = httpx.get(f"{web}/metrics")
    finally:
        undo()
    assert response.status_code == 200
    metrics = _samples(response.text)
    page = [
        s
        for s in metrics["examdesk_http_requests"]
        if s.labels == {"route": "/notices/{token}", "status": "200"}
    ]
    assert page and page[0].value >= 1
    assert "examdesk_scheduler_leader" in metrics
    # Counts not read are left out, never shown as zero.
    assert "examdesk_deliveries" not in response.text
    assert (
        "bot.web.metrics",
        logging.WARNING,
        "metrics: deliveries left out, the database could not be read (OperationalError)",
    ) in caplog.record_tuples
    assert not any(r.exc_info for r in caplog.records)
    assert _samples(httpx.get(f"{web}/metrics").text)["examdesk_deliveries"]
