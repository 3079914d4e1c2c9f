"""The short message a candidate gets after a change to them: their deadline now, what
changed, the link to their page and how to reach support, in their language (nb or en).

Several changes to one candidate within ``COALESCE`` make one message: a message waits that
long before it may go out, and a later change while it waits replaces its text, so the one
message tells the state after the last change (the deadline it gives is always the current
one). ``send_candidate_message`` is the one place a message leaves the commands.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from notifications import texts
from notifications.addresses import usable_email, usable_phone
from notifications.channels import SMS
from notifications.gsm7 import to_gsm7
from store import clock
from store.models import Candidate, Delivery

COALESCE = timedelta(minutes=1)

# What changed (R4, R6, R8, R10).
INCIDENT_TIME = "incident_time"
REOPENED = "reopened"
DELIVERED = "delivered"

_MONTHS_EN = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]

WORDS = {
    "nb": {
        "head": "Eksamen {code}:",
        "incident": "Du har nå {minutes} ekstra tid etter en hendelse.",
        "incident_none": "Du har ikke lenger ekstra tid etter en hendelse.",
        "deadline": "Fristen din er {when}.",
        "reopened": "Ny innlevering er åpnet for deg. Du kan levere på nytt fram til {when}.",
        "reopened_no_limit": (
            "Ny innlevering er åpnet for deg, uten tidsfrist. Eksamenssupport avslutter den."
        ),
        "delivered": "Svaret ditt er levert for deg {when}.",
        "link": "Se siden din: {link}",
        "support": "Spørsmål? Eksamenssupport: {contact}",
        "subject": "Eksamen {code}: endring for deg",
        "at": "kl. {time}",
        "date": "{day}.{month}.{year} kl. {time}",
        "date_this_year": "{day}.{month}. kl. {time}",
        "hours": "{n} t",
        "minutes": "{n} min",
    },
    "en": {
        "head": "Exam {code}:",
        "incident": "You now have {minutes} extra time for an incident.",
        "incident_none": "You no longer have extra time for an incident.",
        "deadline": "Your deadline is {when}.",
        "reopened": "New delivery is open for you. You may deliver again until {when}.",
        "reopened_no_limit": (
            "New delivery is open for you, with no time limit. Exam support will close it."
        ),
        "delivered": "Your answer has been delivered for you {when}.",
        "link": "Your page: {link}",
        "support": "Questions? Exam support: {contact}",
        "subject": "Exam {code}: a change for you",
        "at": "at {time}",
        "date": "on {day} {month_name} {year} at {time}",
        "date_this_year": "on {day} {month_name} at {time}",
        "hours": "{n} h",
        "minutes": "{n} min",
    },
}


@dataclass(frozen=True)
class State:
    """What a candidate's message tells, after the change."""

    language: str
    test_code: str
    change: str  # INCIDENT_TIME | REOPENED | DELIVERED
    deadline: datetime | None  # None: no time limit (a no-limit reopening)
    incident_minutes: int
    delivered_at: datetime | None = None


def when(moment: datetime, *, language: str, tz: ZoneInfo, now: datetime) -> str:
    """``kl. 15:45`` today, else with the date (``2.12. kl. 15:45``), in the office's zone."""
    words = WORDS[texts.language_of(language)]
    local, today = moment.astimezone(tz), now.astimezone(tz)
    time = f"{local:%H:%M}"
    if local.date() == today.date():
        return words["at"].format(time=time)
    key = "date_this_year" if local.year == today.year else "date"
    return words[key].format(
        day=local.day,
        month=local.month,
        month_name=_MONTHS_EN[local.month - 1],
        year=local.year,
        time=time,
    )


def _duration(minutes: int, words: dict[str, str]) -> str:
    hours, rest = divmod(abs(minutes), 60)
    parts = [words["hours"].format(n=hours)] if hours else []
    if rest or not hours:
        parts.append(words["minutes"].format(n=rest))
    return " ".join(parts)


def compose(
    state: State, *, link: str | None, support_contact: str | None, tz: ZoneInfo, now: datetime
) -> str:
    """The message's text, GSM-7 safe (one SMS alphabet, so 160 characters a segment)."""
    language = texts.language_of(state.language)
    words = WORDS[language]

    def at(moment: datetime) -> str:
        return when(moment, language=language, tz=tz, now=now)

    parts = [words["head"].format(code=state.test_code)]
    if state.change == DELIVERED:
        parts.append(words["delivered"].format(when=at(state.delivered_at or now)))
    elif state.change == REOPENED:
        if state.deadline is None:
            parts.append(words["reopened_no_limit"])
        else:
            parts.append(words["reopened"].format(when=at(state.deadline)))
    else:
        if state.incident_minutes:
            parts.append(words["incident"].format(minutes=_duration(state.incident_minutes, words)))
        else:
            parts.append(words["incident_none"])
        if state.deadline is not None:
            parts.append(words["deadline"].format(when=at(state.deadline)))
    if link:
        parts.append(words["link"].format(link=link))
    if support_contact and support_contact.strip():
        parts.append(words["support"].format(contact=support_contact.strip()))
    return to_gsm7(" ".join(parts))


def subject(*, language: str, test_code: str) -> str:
    return WORDS[texts.language_of(language)]["subject"].format(code=test_code)


def page_link(*, public_url: str, token: str | None) -> str | None:
    """The candidate's own page (``GET /notices/{token}``); None once retention erased it."""
    return f"{public_url.rstrip('/')}/notices/{token}" if token else None


def send_candidate_message(
    session: Session, *, candidate: Candidate, channel: str, text: str, not_before: datetime
) -> None:
    """Hand one message for ``candidate`` to the sender, in the caller's transaction.

    It goes out at ``not_before`` at the earliest. A message for the same candidate still
    waiting for its moment takes the new text instead, keeping its moment: several changes
    within that time make one message. A candidate without a usable address gets the row
    too, failed with the reason, as a notice's delivery does.
    """
    address = usable_phone(candidate.phone) if channel == SMS else usable_email(candidate.email)
    values = {
        "channel": channel,
        "address": address,
        "subject": None
        if channel == SMS
        else subject(language=candidate.language, test_code=candidate.test.code),
        "body": text,
        "status": "pending" if address else "failed",
        "error_code": None if address else "no_address",
        "error_message": None
        if address
        else ("no usable phone number" if channel == SMS else "no usable e-mail address"),
    }
    now = clock.now()
    waiting = session.scalar(
        select(Delivery.id)
        .where(
            Delivery.candidate_id == candidate.id,
            Delivery.notice_id.is_(None),
            Delivery.status == "pending",
            Delivery.attempts == 0,
            Delivery.claimed_by.is_(None),
            Delivery.next_attempt_at > now,
        )
        .order_by(Delivery.id.desc())
        .limit(1)
        .with_for_update()
    )
    if waiting is not None:
        replaced = session.execute(
            update(Delivery)
            .where(Delivery.id == waiting, Delivery.status == "pending", Delivery.attempts == 0)
            .values(**values, updated_at=now)
        ).rowcount
        if replaced:
            return
    session.execute(
        insert(Delivery),
        {
            "notice_id": None,
            "candidate_id": candidate.id,
            "attempts": 0,
            "next_attempt_at": not_before,
            "updated_at": now,
            **values,
        },
    )
