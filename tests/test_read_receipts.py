"""Read receipts that mean "read" (R13): "opened" (the candidate's browser showed the page) is
kept apart from "read" (the candidate pressed "I have read this"), in the progress shown in
Slack, in `examdesk status TEST --json` and across the 0006 migration."""

from __future__ import annotations

import json

import httpx
import pytest
from conftest import OSLO, run_async
from sqlalchemy import event, inspect, select, text
from sqlalchemy.exc import OperationalError
from starlette.applications import Starlette
from starlette.datastructures import Headers

from bot.config import Settings
from bot.deps import Deps
from bot.slack.views.notices import progress_line
from bot.web import notices as web_notices
from bot.web.notices import opened_by_a_person
from notifications import inapp
from notifications.progress import progress
from store import migrate
from store.models import Candidate, Notice

CODE = "TDT4100-2026H"
PHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1"
)


@pytest.mark.parametrize(
    ("method", "headers", "counts"),
    [
        ("GET", {"user-agent": PHONE, "sec-fetch-dest": "document"}, True),
        ("GET", {"user-agent": PHONE}, True),  # a browser too old to say what it fetches
        ("HEAD", {"user-agent": PHONE}, False),
        ("GET", {"user-agent": PHONE, "sec-purpose": "prefetch;prerender"}, False),
        ("GET", {"user-agent": PHONE, "purpose": "prefetch"}, False),
        ("GET", {"user-agent": PHONE, "sec-fetch-dest": "iframe"}, False),
        ("GET", {}, False),
        (
            "GET",
            {"user-agent": "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)"},
            False,
        ),
        ("GET", {"user-agent": "facebookexternalhit/1.1"}, False),
        ("GET", {"user-agent": "WhatsApp/2.23.20.0 A"}, False),
        ("GET", {"user-agent": "Twitterbot/1.0"}, False),
        ("GET", {"user-agent": "TelegramBot (like TwitterBot)"}, False),
        ("GET", {"user-agent": "Mozilla/5.0 (Windows NT 6.1; WOW64) SkypeUriPreview"}, False),
        ("GET", {"user-agent": "Mozilla/5.0 (compatible; Googlebot/2.1)"}, False),
        ("GET", {"user-agent": "Mozilla/5.0 (compatible; bingbot/2.0)"}, False),
        ("GET", {"user-agent": "iMessageLinkPreview"}, False),
        ("GET", {"user-agent": "Microsoft Office/16.0 (Microsoft Outlook 16.0.12026)"}, False),
    ],
)
def test_r13_only_a_persons_browser_counts_as_opening_the_page(method, headers, counts):
    assert opened_by_a_person(method, Headers(headers)) is counts


def _sent(world) -> tuple[int, dict[str, str]]:
    world.add_test(CODE)
    world.add_candidates(CODE, ["10001", "10002", "10003"])
    reply = world.run(f"/notice {CODE} Oppgave 2: bruk kg.", confirmed=True)
    assert reply.ok, reply.text
    with world.factory() as s:
        tokens = {c.number: c.notice_token for c in s.scalars(select(Candidate))}
        ids = {c.number: c.id for c in s.scalars(select(Candidate))}
        for number in ("10001", "10002"):
            inapp.record_opened(db_session=s, candidate_id=ids[number], now=world.now)
        assert inapp.confirm_read(
            db_session=s, token=tokens["10001"], notice_id=reply.data["notice_id"], now=world.now
        )
        s.commit()
    return reply.data["notice_id"], tokens


def test_r13_a_notice_no_row_can_have_is_not_found_without_asking_the_database(
    engine, session_factory, monkeypatch
):
    """R13's read button: a notice id that is not ASCII digits, too long for int(), or past
    PostgreSQL's INTEGER is a plain 404 and never joins a batch of read confirmations,
    where PostgreSQL's "integer out of range" would fail every other candidate's too."""
    asked: list[int] = []

    def confirm_read(*, db_session, token: str, notice_id: int, now) -> bool:
        asked.append(notice_id)
        return False

    monkeypatch.setattr(inapp, "confirm_read", confirm_read)
    deps = Deps(settings=Settings(), engine=engine, session_factory=session_factory)
    app = Starlette(routes=web_notices.routes(deps))
    url = f"http://examdesk/notices/{'t' * 43}/read"

    async def press(notices: list[str]) -> list[int]:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app)) as client:
            return [
                (await client.post(url, data={"notice": notice})).status_code for notice in notices
            ]

    unusable = ["2147483648", "99999999999", "\u00b2", "\u0663", "9" * 5000]
    assert run_async(press(unusable)) == [404] * len(unusable)
    assert asked == []
    assert run_async(press(["2147483647"])) == [404]
    assert asked == [2147483647]


def test_r13_progress_in_slack_shows_opened_apart_from_read(world):
    notice_id, _ = _sent(world)
    with world.factory() as s:
        found = progress(db_session=s, notice_id=notice_id)
    assert (found.inapp, found.opened, found.read) == (3, 2, 1)
    assert progress_line(found).startswith("in-app 3, read 1 (opened 2)")


def test_r13_status_json_lists_each_notice_with_opened_and_read(world, cli):
    notice_id, _ = _sent(world)
    result = cli("status", CODE, "--json")
    assert result.returncode == 0, result.stderr
    (notice,) = json.loads(result.stdout)["notices"]
    with world.factory() as s:
        sent_at = s.get(Notice, notice_id).created_at
    assert notice == {
        "id": notice_id,
        "sent_at": sent_at.astimezone(OSLO).isoformat(),
        "inapp": 3,
        "opened": 2,
        "read": 1,
        "sms": {"pending": 3},
        "email": {},
    }
    assert notice["sent_at"] == "2026-12-01T10:00:00+01:00"


def test_0006_moves_what_a_page_view_marked_read_to_opened_and_downgrades_back(tmp_path):
    """Before 0006 a page view set read_at; that was an opening, not a confirmation."""

    from store.db import make_engine

    engine = make_engine(f"sqlite:///{tmp_path / 'old.db'}")
    migrate.alembic_config(engine)

    def to(revision: str, step=migrate.upgrade) -> None:
        step(engine, revision)

    to("0003")
    with engine.begin() as conn:
        conn.execute(
            text(
                'INSERT INTO tests (id, code, title, kind, start, "end", has_upload, '
                "auto_deliver, updated_at) VALUES (1, 'T-1', 'T', 'school', "
                "'2026-12-01 08:00:00', '2026-12-01 12:00:00', 1, 1, '2026-11-01 00:00:00')"
            )
        )
        conn.execute(
            text(
                "INSERT INTO candidates (id, test_id, number, language, extra_minutes, "
                "incident_minutes, status, notice_token) VALUES "
                "(1, 1, '1', 'nb', 0, 0, 'started', 'a'), (2, 1, '2', 'nb', 0, 0, 'started', 'b')"
            )
        )
        conn.execute(
            text(
                "INSERT INTO notices (id, test_id, text_nb, text_en, created_by, created_at) "
                "VALUES (1, 1, 'x', '', 'U1', '2026-12-01 09:00:00')"
            )
        )
        conn.execute(
            text(
                "INSERT INTO notice_receipts (notice_id, candidate_id, read_at) VALUES "
                "(1, 1, '2026-12-01 09:05:00'), (1, 2, NULL)"
            )
        )
    migrate.upgrade(engine)
    assert migrate.is_up_to_date(engine)
    rows = "SELECT candidate_id, opened_at, read_at FROM notice_receipts ORDER BY candidate_id"
    with engine.connect() as conn:
        assert conn.execute(text(rows)).all() == [(1, "2026-12-01 09:05:00", None), (2, None, None)]
    to("0003", migrate.downgrade)
    assert "opened_at" not in {c["name"] for c in inspect(engine).get_columns("notice_receipts")}
    with engine.connect() as conn:
        back = "SELECT candidate_id, read_at FROM notice_receipts ORDER BY candidate_id"
        assert conn.execute(text(back)).all() == [(1, "2026-12-01 09:05:00"), (2, None)]
    engine.dispose()


def test_r13_the_page_is_shown_when_its_opening_cannot_be_recorded(
    world, engine, session_factory, monkeypatch, caplog
):
    """Openings are written together after the page is rendered; a database error there
    costs the statistic, never the candidate's page (the next view records it)."""
    _, tokens = _sent(world)

    def record_opened(**_: object) -> None:
        raise OperationalError("UPDATE notice_receipts", {}, Exception("database is locked"))

    monkeypatch.setattr(inapp, "record_opened", record_opened)
    deps = Deps(settings=Settings(), engine=engine, session_factory=session_factory)
    app = Starlette(routes=web_notices.routes(deps))

    async def view() -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app)) as client:
            return await client.get(
                f"http://examdesk/notices/{tokens['10003']}",
                headers={"user-agent": PHONE, "sec-fetch-dest": "document"},
            )

    response = run_async(view())
    assert response.status_code == 200 and "Oppgave 2: bruk kg." in response.text
    assert "first opening of a page not recorded (OperationalError)" in caplog.text
    with world.factory() as s:
        candidate_id = s.scalar(select(Candidate.id).where(Candidate.number == "10003"))
        assert inapp.unopened(db_session=s, candidate_id=candidate_id) == 1


def test_r13_a_token_no_candidate_can_have_is_not_found_without_asking_the_database(
    engine, session_factory
):
    """Page tokens are URL-safe base64 of at most 64 characters (the column's size): any
    other is a plain 404 before a query. PostgreSQL refuses a NUL in a text parameter, and
    a NUL token's read confirmation would fail the batch it went with, not only itself."""
    asked: list[str] = []

    def count(conn, cursor, statement, *args) -> None:
        asked.append(statement)

    deps = Deps(settings=Settings(), engine=engine, session_factory=session_factory)
    app = Starlette(routes=web_notices.routes(deps))
    odd = ["%00", "a%00b", "%20", "a.b", "%C3%A6", "~", "t" * 65, "%E2%80%8B" + "t" * 43]

    async def visit() -> list[int]:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://examdesk"
        ) as client:
            codes = []
            for token in odd:
                url = f"/notices/{token}"
                codes += [(await client.get(url)).status_code, (await client.head(url)).status_code]
                codes.append((await client.post(f"{url}/read", data={"notice": "1"})).status_code)
            return codes

    event.listen(engine, "before_cursor_execute", count)
    try:
        assert run_async(visit()) == [404] * 3 * len(odd)
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert asked == []
