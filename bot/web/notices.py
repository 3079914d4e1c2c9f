"""The candidate's page: `GET /notices/{token}` and `POST /notices/{token}/read`.

The token in the path is the credential, for reading and for confirming alike. Showing the
page never marks anything read; only the candidate's button does (a plain form, no
JavaScript). The first time the candidate's own browser shows the page is kept as
"opened": not for HEAD requests, prefetches or link-preview robots (SMS apps, chat apps,
mail scanners), which fetch links without a person reading them.

When the database fails (locked, unreachable) the candidate gets a short page, 503 with
``Retry-After``, asking them to reload or to press the button again: never a bare 500, and
never a confirmation that was not saved.
"""

from __future__ import annotations

import logging
from urllib.parse import parse_qsl

from crawleruseragents import is_crawler
from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from bot.deps import Deps
from bot.web.body import bounded_body
from commands import candidate_page
from notifications import inapp
from store import clock
from store.db import read_only, session_scope
from store.group_commit import GroupCommit
from store.models import MAX_ID

log = logging.getLogger(__name__)

# Headers with which browsers mark a fetch made ahead of the person asking for the page.
PREFETCH = {"purpose": "prefetch", "sec-purpose": "prefetch", "x-purpose": "preview"}
# Link previewers that the crawler list does not name (iMessage; Outlook's own fetches).
PREVIEWERS = ("linkpreview", "microsoft office", "ms-office")
# The read button's form is two short fields, far below this; Starlette's own parser would hold
# 1,000 fields of 1 MB.
MAX_FORM_BYTES = 64 * 1024
# Seconds a candidate is asked to wait when the database cannot answer (a write lock held,
# a failover): long enough for a burst to pass, short enough to try again at once by hand.
RETRY_AFTER_SECONDS = 5


def opened_by_a_person(method: str, headers: Headers) -> bool:
    """Whether a request for the page counts as the candidate's browser opening it."""
    if method != "GET":
        return False
    agent = headers.get("user-agent", "")
    if not agent or is_crawler(agent) or any(p in agent.lower() for p in PREVIEWERS):
        return False
    if any(headers.get(name, "").lower().startswith(value) for name, value in PREFETCH.items()):
        return False
    # Browsers say what a fetch is for; only a top-level page view counts.
    return headers.get("sec-fetch-dest", "document") == "document"


def _an_id(text: str) -> bool:
    """Whether ``text`` can name a row: ASCII digits ("²" passes isdigit, not int), few
    enough for int(), within PostgreSQL's INTEGER. Anything else never reaches the database:
    there it would fail the whole batch of read confirmations it went with, not only its own."""
    return text.isascii() and text.isdigit() and len(text) <= 10 and int(text) <= MAX_ID


def _html(page: inapp.Page) -> HTMLResponse:
    return HTMLResponse(page.html, status_code=page.status, headers=inapp.HEADERS)


def _not_now(what: str, *, language: str | None = None, back: str | None = None) -> HTMLResponse:
    page = inapp.not_now(what, language=language, back=back)
    return HTMLResponse(
        page.html,
        status_code=page.status,
        headers={**inapp.HEADERS, "Retry-After": str(RETRY_AFTER_SECONDS)},
    )


def routes(deps: Deps) -> list[Route]:
    settings = deps.settings

    def show(token: str, opened: bool) -> tuple[inapp.Page, int | None]:
        """The page, and the candidate whose first opening it is to record (if it is)."""
        now = clock.now()
        with session_scope(deps.session_factory) as db_session:
            read_only(db_session)
            candidate = inapp.find_candidate(db_session=db_session, token=token)
            if candidate is None:
                return inapp.not_found(), None
            data = candidate_page.page_data(
                db_session=db_session,
                candidate=candidate,
                now=now,
                support_contact=settings.support_contact,
            )
            page = inapp.render(data, token=token, tz=settings.tz, now=now)
            candidate_id = candidate.id
            # A write only the first time: a notice to thousands of candidates brings as
            # many page views in a few minutes.
            opened = opened and inapp.unopened(db_session=db_session, candidate_id=candidate_id) > 0
        return page, candidate_id if opened else None

    def record_opened(candidate_ids: list[int]) -> list[None]:
        with session_scope(deps.session_factory) as db_session:
            now = clock.now()
            for candidate_id in candidate_ids:
                inapp.record_opened(db_session=db_session, candidate_id=candidate_id, now=now)
        return [None] * len(candidate_ids)

    def confirm_all(confirmations: list[tuple[str, int]]) -> list[bool]:
        with session_scope(deps.session_factory) as db_session:
            now = clock.now()
            return [
                inapp.confirm_read(db_session=db_session, token=token, notice_id=notice, now=now)
                for token, notice in confirmations
            ]

    # Page views and read confirmations come in bursts after an SMS to a whole test.
    opened_together = GroupCommit(record_opened, name="pages-opened")
    confirmed_together = GroupCommit(confirm_all, name="notices-read")

    async def page(request: Request) -> Response:
        opened = opened_by_a_person(request.method, request.headers)
        try:
            shown, first_opening = await run_in_threadpool(
                show, request.path_params["token"], opened
            )
        except SQLAlchemyError as error:
            # Our own words only: the error's text may hold the statement's values (the token).
            log.warning(
                "candidate page not shown: database error (%s); answered 503 to reload",
                type(error).__name__,
            )
            return _not_now("page")
        if first_opening is not None:
            try:
                await opened_together(first_opening)
            except SQLAlchemyError as error:
                # The candidate still gets the page; the next view records the opening.
                log.warning("first opening of a page not recorded (%s)", type(error).__name__)
        return _html(shown)

    async def read(request: Request) -> Response:
        token = request.path_params["token"]
        body = await bounded_body(request, MAX_FORM_BYTES, what="read confirmation", log=log)
        if isinstance(body, Response):
            return body
        # The button's form is ASCII; anything else cannot name a notice either.
        form = dict(parse_qsl(body.decode("ascii", "replace")))
        notice = form.get("notice", "")
        if not inapp.valid_token(token) or not _an_id(notice):
            return _html(inapp.not_found())
        try:
            found = await confirmed_together((token, int(notice)))
        except SQLAlchemyError as error:
            # The whole batch failed: nothing in it was saved, so nobody is told it was.
            log.warning(
                "read confirmation not saved: database error (%s); answered 503 to press again",
                type(error).__name__,
            )
            # The page's form says its language (a page from before it did: both).
            return _not_now("read", language=form.get("language"), back=f"../{token}#n{notice}")
        if not found:
            return _html(inapp.not_found())
        # Relative, so that it holds behind a proxy that serves the app under a path too.
        return RedirectResponse(
            f"../{token}#n{notice}", status_code=303, headers={"Cache-Control": "no-store"}
        )

    return [
        Route("/notices/{token}", page, methods=["GET", "HEAD"]),
        Route("/notices/{token}/read", read, methods=["POST"]),
    ]
