"""The in-app notice page: one per candidate, reached by an unguessable token.

Plain server-rendered HTML (no JavaScript), large type, readable on a phone, in the
candidate's language. Opening it marks the candidate's unread notices as read.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from html import escape
from zoneinfo import ZoneInfo

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from notifications import texts
from store.models import Candidate, Notice, NoticeReceipt, Test

HEADERS = {
    "Cache-Control": "no-store",
    # The token is in the URL: never hand it to another site.
    "Referrer-Policy": "no-referrer",
    "X-Robots-Tag": "noindex",
}
MAX_TOKEN = 128

WORDS = {
    "nb": {
        "title": "Beskjeder",
        "heading": "Beskjeder for eksamen",
        "none": "Ingen beskjeder ennå.",
        "new": "Ny",
        "sent": "Sendt",
        "time": "%d.%m.%Y kl. %H:%M",
        "footer": "Les beskjedene nøye. Spør eksamensvakten hvis noe er uklart.",
    },
    "en": {
        "title": "Notices",
        "heading": "Notices for exam",
        "none": "No notices yet.",
        "new": "New",
        "sent": "Sent",
        "time": "%d %b %Y, %H:%M",
        "footer": "Read the notices carefully. Ask the invigilator if anything is unclear.",
    },
}

STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;font-size:1.25rem;
line-height:1.5;margin:0;padding:1rem;color:#111;background:#fff}
main{max-width:40rem;margin:0 auto}
h1{font-size:1.6rem;line-height:1.25;margin:0 0 1rem}
article{border:2px solid #444;border-radius:.5rem;padding:1rem;margin:0 0 1rem}
article.new{border-color:#b00020;background:#fff5f5}
.meta{font-size:1rem;color:#333;margin:0 0 .5rem}
.badge{display:inline-block;background:#b00020;color:#fff;font-weight:700;
padding:0 .5rem;border-radius:.25rem;margin-right:.5rem}
.text{white-space:pre-wrap;overflow-wrap:anywhere;margin:0}
footer{font-size:1rem;color:#333;margin-top:1.5rem}
"""


@dataclass(frozen=True)
class Page:
    status: int
    html: str


def _document(language: str, title: str, body: str) -> str:
    return (
        "<!DOCTYPE html>\n"
        f'<html lang="{language}"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta name="robots" content="noindex">'
        f"<title>{escape(title)}</title><style>{STYLE}</style></head>"
        f"<body><main>{body}</main></body></html>"
    )


def not_found() -> Page:
    # Says nothing about why: a wrong token and a deleted candidate look the same.
    body = (
        '<h1 id="not-found">Siden finnes ikke · Page not found</h1>'
        "<p>Sjekk at du har åpnet hele lenken fra SMS-en eller e-posten.</p>"
        '<p lang="en">Check that you opened the whole link from the text message or e-mail.</p>'
    )
    return Page(404, _document("nb", "Siden finnes ikke · Page not found", body))


def page(*, db_session: Session, token: str, now: datetime, tz: ZoneInfo) -> Page:
    """Render the candidate's notices, newest first, and record that they were read."""
    if not token or len(token) > MAX_TOKEN:
        return not_found()
    found = db_session.execute(
        select(Candidate.id, Candidate.language, Test.code, Test.title)
        .join(Test, Test.id == Candidate.test_id)
        .where(Candidate.notice_token == token)
    ).first()
    if found is None:
        return not_found()
    language = texts.language_of(found.language)
    words = WORDS[language]
    notices = db_session.execute(
        select(Notice.id, Notice.text_nb, Notice.text_en, Notice.created_at, NoticeReceipt.read_at)
        .join(NoticeReceipt, NoticeReceipt.notice_id == Notice.id)
        .where(NoticeReceipt.candidate_id == found.id)
        .order_by(Notice.created_at.desc(), Notice.id.desc())
    ).all()
    db_session.execute(
        update(NoticeReceipt)
        .where(NoticeReceipt.candidate_id == found.id, NoticeReceipt.read_at.is_(None))
        .values(read_at=now)
    )
    items = []
    for notice in notices:
        unread = notice.read_at is None
        text = texts.notice_text(text_nb=notice.text_nb, text_en=notice.text_en, language=language)
        when = notice.created_at.astimezone(tz).strftime(words["time"])
        badge = f'<span class="badge">{words["new"]}</span>' if unread else ""
        items.append(
            f'<article id="n{notice.id}" class="notice{" new" if unread else ""}">'
            f'<p class="meta">{badge}{words["sent"]} <time datetime="'
            f'{notice.created_at.astimezone(tz).isoformat()}">{escape(when)}</time></p>'
            f'<p class="text">{escape(text)}</p></article>'
        )
    heading = f"{words['heading']} {found.code}"
    subtitle = f'<p class="meta">{escape(found.title)}</p>' if found.title else ""
    listing = "".join(items) or f'<p id="none">{words["none"]}</p>'
    body = f"<h1>{escape(heading)}</h1>{subtitle}{listing}<footer>{words['footer']}</footer>"
    return Page(200, _document(language, f"{words['title']} · {found.code}", body))
