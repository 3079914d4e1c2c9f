"""The candidate's page: their deadline and their notices, in their language (nb or en).

Rendered from Jinja2 templates (autoescaped) with dates and durations from Babel; no
JavaScript, one stylesheet allowed by its hash in the Content-Security-Policy. Showing the
page changes nothing: a notice is read only when the candidate says so with its button
(``confirm_read``, a POST). The first opening by the candidate's browser is kept apart
(``record_opened``), as a hint: link previews and mail scanners open pages too.
"""

from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from importlib import resources
from zoneinfo import ZoneInfo

from babel import Locale
from babel.dates import format_datetime, get_timezone_location
from babel.lists import format_list
from babel.units import format_unit
from jinja2 import Environment, PackageLoader, StrictUndefined
from sqlalchemy import func, literal, select, update
from sqlalchemy.orm import Session, selectinload

from notifications import texts
from notifications.addresses import usable_email, usable_phone
from store.models import Candidate, Notice, NoticeReceipt

# What secrets.token_urlsafe makes, within the column's 64 characters. Any other token is
# not looked up: PostgreSQL refuses a NUL outright, which would fail the whole batch of
# read confirmations the token went with.
_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,64}")
# English as written in Britain: day before month and a 24-hour clock, as in Norway.
LOCALES = {"nb": Locale.parse("nb"), "en": Locale.parse("en_GB")}
# The word between date and time ("1. desember 2026 kl. 13:15", "1 December 2026 at 13:15").
AT_TIME = {"nb": "kl.", "en": "at"}

STYLE = resources.files("notifications").joinpath("templates/page.css").read_text("utf-8")
_STYLE_HASH = base64.b64encode(hashlib.sha256(STYLE.encode()).digest()).decode()
HEADERS = {
    "Content-Security-Policy": (
        f"default-src 'none'; style-src 'sha256-{_STYLE_HASH}'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    # The token is in the URL: never hand it to another site.
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
    "X-Robots-Tag": "noindex",
    "Cross-Origin-Opener-Policy": "same-origin",
}

WORDS: dict[str, dict[str, str]] = {
    "nb": {
        "title": "Din eksamen",
        "exam": "Eksamen",
        "candidate_number": "Kandidatnummer",
        "unread_one": "{n} ulest beskjed",
        "unread_other": "{n} uleste beskjeder",
        "deadline": "Fristen din nå",
        "deadline_passed": "Fristen din gikk ut",
        "no_limit": "Ingen tidsfrist",
        "made_up": "Slik er fristen din regnet ut",
        "exam_end": "Eksamenstiden slutter",
        "allowance": "Tid til opplasting",
        "ordinary_end": "Slutt for alle kandidater",
        "individual_end": "Din individuelle frist, som gjelder i stedet",
        "extra": "Ekstra eksamenstid (tilrettelegging)",
        "incident": "Ekstra tid etter hendelse under eksamen",
        "end_time": "Din sluttid",
        "reopen_end": "Ny innlevering, som gjelder i stedet",
        "none": "ingen",
        "open_until": "Ny innlevering er åpnet for deg. Du kan levere på nytt fram til {when}.",
        "open_no_limit": (
            "Ny innlevering er åpnet for deg, uten tidsfrist. Eksamenssupport avslutter den."
        ),
        "not_open": "Ny innlevering er ikke åpnet.",
        "automatic_started": "Ved fristen leveres svaret ditt automatisk, slik det er da.",
        "automatic_not_started": (
            "Har du begynt, leveres svaret ditt automatisk ved fristen, slik det er da."
        ),
        "yourself": "Svaret ditt leveres ikke automatisk. Lever det selv før fristen.",
        "yourself_no_limit": (
            "Svaret ditt leveres ikke automatisk. Lever det selv når du er ferdig."
        ),
        "submitted": "Svaret ditt er levert ({when}).",
        "help": "Trenger du hjelp?",
        "invigilator": "Rekk opp hånden og spør eksamensvakten i rommet.",
        "call_support": "Ring eksamenssupport:",
        "contact_support": "Kontakt eksamenssupport:",
        "support_unknown": "Kontakt eksamenssupport ved institusjonen din.",
        "notices": "Beskjeder",
        "no_notices": "Ingen beskjeder ennå.",
        "unread": "Ulest",
        "sent": "Sendt",
        "read": "Du har bekreftet at du har lest denne ({when}).",
        "confirm": "Jeg har lest dette",
        "only_nb": "Denne beskjeden finnes bare på norsk.",
        "only_en": "Denne beskjeden finnes bare på engelsk.",
        "zone": "Alle tidspunkt er i {zone}.",
        "private": "Siden er bare for deg: ikke del lenken.",
    },
    "en": {
        "title": "Your exam",
        "exam": "Exam",
        "candidate_number": "Candidate number",
        "unread_one": "{n} unread notice",
        "unread_other": "{n} unread notices",
        "deadline": "Your deadline now",
        "deadline_passed": "Your deadline passed",
        "no_limit": "No time limit",
        "made_up": "How your deadline is made up",
        "exam_end": "Exam time ends",
        "allowance": "Time to upload",
        "ordinary_end": "End for all candidates",
        "individual_end": "Your individual deadline, which applies instead",
        "extra": "Extra exam time (accommodation)",
        "incident": "Extra time for an incident during the exam",
        "end_time": "Your end time",
        "reopen_end": "New delivery, which applies instead",
        "none": "none",
        "open_until": "New delivery is open for you. You may deliver again until {when}.",
        "open_no_limit": (
            "New delivery is open for you, with no time limit. Exam support will close it."
        ),
        "not_open": "New delivery is not open.",
        "automatic_started": (
            "At the deadline your answer is delivered automatically, as it is at that moment."
        ),
        "automatic_not_started": (
            "If you have started, your answer is delivered automatically at the deadline, "
            "as it is at that moment."
        ),
        "yourself": "Your answer is not delivered automatically. Deliver it before the deadline.",
        "yourself_no_limit": (
            "Your answer is not delivered automatically. Deliver it when you are done."
        ),
        "submitted": "Your answer is delivered ({when}).",
        "help": "Need help?",
        "invigilator": "Raise your hand and ask the invigilator in the room.",
        "call_support": "Call exam support:",
        "contact_support": "Contact exam support:",
        "support_unknown": "Contact your institution's exam support.",
        "notices": "Notices",
        "no_notices": "No notices yet.",
        "unread": "Unread",
        "sent": "Sent",
        "read": "You have confirmed reading this ({when}).",
        "confirm": "I have read this",
        "only_nb": "This notice is in Norwegian only.",
        "only_en": "This notice is in English only.",
        "zone": "All times are in {zone}.",
        "private": "This page is for you alone: do not share the link.",
    },
}


@dataclass(frozen=True)
class NoticeItem:
    id: int
    sent_at: datetime
    text: str
    language: str  # of the text, which may differ from the page's
    read_at: datetime | None


@dataclass(frozen=True)
class PageData:
    """Everything the page shows; the deadline's parts as commands.timing computes them."""

    language: str
    candidate: str
    test_code: str
    test_title: str
    exam_end: datetime
    allowance_minutes: int
    ordinary_end: datetime
    individual_end: datetime | None
    extra_minutes: int
    incident_minutes: int
    end_time: datetime
    reopened: bool
    reopen_deadline: datetime | None  # None while reopened: no time limit
    deadline: datetime | None
    automatic: bool  # R9: delivered automatically at the deadline
    started: bool
    submitted_at: datetime | None  # set while delivered and not reopened
    ask_invigilator: bool  # a school exam still running: the invigilator is there
    support_contact: str | None
    notices: tuple[NoticeItem, ...]


@dataclass(frozen=True)
class Page:
    status: int
    html: str


@dataclass(frozen=True)
class Contact:
    text: str
    href: str | None
    phone: bool


def contact(value: str | None) -> Contact | None:
    """SUPPORT_CONTACT as a link where it is a phone number, an e-mail address or a URL."""
    value = (value or "").strip()
    if not value:
        return None
    if phone := usable_phone(value):
        return Contact(value, f"tel:{phone}", phone=True)
    if value.startswith(("https://", "http://")):
        return Contact(value, value, phone=False)
    if email := usable_email(value):
        return Contact(value, f"mailto:{email}", phone=False)
    return Contact(value, None, phone=False)


class Formats:
    """Dates, times and durations in one language, with Babel."""

    def __init__(self, language: str, tz: ZoneInfo) -> None:
        self.locale = LOCALES[language]
        self.tz = tz
        # No line break between "kl." and the time it belongs to.
        self.pattern = (
            f"{self.locale.date_formats['long'].pattern} '{AT_TIME[language]}'\u00a0"
            f"{self.locale.time_formats['short'].pattern}"
        )

    def when(self, moment: datetime) -> str:
        return format_datetime(moment, self.pattern, tzinfo=self.tz, locale=self.locale)

    def iso(self, moment: datetime) -> str:
        return moment.astimezone(self.tz).isoformat()

    def minutes(self, total: int) -> str:
        hours, minutes = divmod(total, 60)
        parts = [
            format_unit(n, unit, length="long", locale=self.locale)
            for n, unit in ((hours, "duration-hour"), (minutes, "duration-minute"))
            if n
        ]
        return format_list(parts, locale=self.locale)

    def plural(self, words: dict[str, str], key: str, n: int) -> str:
        form = "one" if self.locale.plural_form(n) == "one" else "other"
        return words[f"{key}_{form}"].format(n=n)

    def zone(self) -> str:
        return get_timezone_location(self.tz, locale=self.locale)


@cache
def _environment() -> Environment:
    return Environment(
        loader=PackageLoader("notifications", "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def _render(template: str, **context: object) -> str:
    return _environment().get_template(template).render(style=STYLE, **context)


def not_found() -> Page:
    # Says nothing about why: a wrong token and an erased candidate look the same.
    return Page(404, _render("not_found.html"))


# The candidate's page when the database cannot answer (a write lock held, a failover).
NOT_NOW: dict[str, dict[str, str]] = {
    "nb": {
        "title": "Prøv igjen om litt",
        "page": "Siden din kunne ikke vises akkurat nå. Last inn siden på nytt om litt.",
        "read": (
            "Bekreftelsen din ble ikke lagret. Gå tilbake til siden og trykk "
            f"«{WORDS['nb']['confirm']}» på nytt om litt."
        ),
        "back": "Tilbake til siden",
    },
    "en": {
        "title": "Try again in a moment",
        "page": "Your page could not be shown just now. Reload the page in a moment.",
        "read": (
            "Your confirmation was not saved. Go back to the page and press "
            f"“{WORDS['en']['confirm']}” again in a moment."
        ),
        "back": "Back to the page",
    },
}


def not_now(what: str, *, language: str | None = None, back: str | None = None) -> Page:
    """503 for the page (``what`` "page") or a read confirmation ("read") that the database
    could not serve: in ``language`` where the request said it, else in both, Norwegian
    first, as the page not found is; ``back`` links to the notice."""
    languages = (language,) if language in NOT_NOW else tuple(NOT_NOW)
    return Page(
        503, _render("not_now.html", words=NOT_NOW, languages=languages, what=what, back=back)
    )


def render(data: PageData, *, token: str, tz: ZoneInfo, now: datetime) -> Page:
    formats = Formats(data.language, tz)
    html = _render(
        "page.html",
        page=data,
        w=WORDS[data.language],
        f=formats,
        now=now,
        token=token,
        contact=contact(data.support_contact),
        unread=sum(1 for n in data.notices if n.read_at is None),
    )
    return Page(200, html)


def valid_token(token: str) -> bool:
    return _TOKEN.fullmatch(token) is not None


def find_candidate(*, db_session: Session, token: str) -> Candidate | None:
    """The candidate a page token belongs to, with their test and reopenings loaded."""
    if not valid_token(token):
        return None
    return db_session.scalar(
        select(Candidate)
        .where(Candidate.notice_token == token)
        .options(selectinload(Candidate.test), selectinload(Candidate.reopenings))
    )


def notices(*, db_session: Session, candidate_id: int, language: str) -> tuple[NoticeItem, ...]:
    """The candidate's notices, newest first, each in their language where it was written."""
    rows = db_session.execute(
        select(Notice.id, Notice.created_at, Notice.text_nb, Notice.text_en, NoticeReceipt.read_at)
        .join(NoticeReceipt, NoticeReceipt.notice_id == Notice.id)
        .where(NoticeReceipt.candidate_id == candidate_id)
        .order_by(Notice.created_at.desc(), Notice.id.desc())
    )
    items = []
    for row in rows:
        text, text_language = texts.notice_in(
            text_nb=row.text_nb, text_en=row.text_en, language=language
        )
        items.append(NoticeItem(row.id, row.created_at, text, text_language, row.read_at))
    return tuple(items)


def unopened(*, db_session: Session, candidate_id: int) -> int:
    return db_session.scalar(
        select(func.count()).where(
            NoticeReceipt.candidate_id == candidate_id, NoticeReceipt.opened_at.is_(None)
        )
    )


def record_opened(*, db_session: Session, candidate_id: int, now: datetime) -> None:
    """The candidate's browser showed the page: the first time counts, read or not."""
    db_session.execute(
        update(NoticeReceipt)
        .where(NoticeReceipt.candidate_id == candidate_id, NoticeReceipt.opened_at.is_(None))
        .values(opened_at=now)
    )


def confirm_read(*, db_session: Session, token: str, notice_id: int, now: datetime) -> bool:
    """The candidate's "I have read this": False when the token has no such notice.

    Saying it twice keeps the first time."""
    candidate_id = select(Candidate.id).where(Candidate.notice_token == token).scalar_subquery()
    mine = (NoticeReceipt.candidate_id == candidate_id, NoticeReceipt.notice_id == notice_id)
    found = db_session.scalar(select(func.count()).where(*mine))
    if not found:
        return False
    db_session.execute(
        update(NoticeReceipt)
        .where(*mine, NoticeReceipt.read_at.is_(None))
        .values(
            read_at=now,
            opened_at=func.coalesce(
                NoticeReceipt.opened_at, literal(now, NoticeReceipt.opened_at.type)
            ),
        )
    )
    return True
