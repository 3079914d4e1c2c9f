"""What a candidate's page says about their deadline (R1–R3, R6, R7, R9), from their token."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from commands.timing import Timing, timing
from notifications import inapp, texts
from store.models import AnyTest, Candidate


def delivered_automatically(test: AnyTest, t: Timing) -> bool:
    """R9: at the deadline the answer is delivered for the candidate.

    A reopened answer is delivered at its reopen deadline even where the test does not
    deliver automatically; no-limit reopenings and theses never are."""
    if test.kind == "thesis":
        return False
    if t.reopening is not None:
        return t.reopen_deadline is not None
    return test.auto_deliver


def page_data(
    *, db_session: Session, candidate: Candidate, now: datetime, support_contact: str | None
) -> inapp.PageData:
    test = candidate.test
    t = timing(candidate, test)
    language = texts.language_of(candidate.language)
    reopened = t.reopening is not None
    return inapp.PageData(
        language=language,
        candidate=candidate.number,
        test_code=test.code,
        test_title=test.title,
        exam_end=t.exam_end,
        allowance_minutes=t.allowance_minutes,
        ordinary_end=t.ordinary_end,
        individual_end=t.individual_end,
        extra_minutes=t.extra_minutes,
        incident_minutes=t.incident_minutes,
        end_time=t.end_time,
        reopened=reopened,
        reopen_deadline=t.reopen_deadline,
        deadline=t.deadline,
        automatic=delivered_automatically(test, t),
        started=candidate.status == "started" or reopened,
        submitted_at=candidate.submitted_at
        if candidate.status == "submitted" and not reopened
        else None,
        # Only a school exam has an invigilator, and only in the room while it runs; after
        # the candidate's own end (a new delivery later, say) support is the one to ask.
        ask_invigilator=test.kind == "school" and now < t.end_time,
        support_contact=support_contact,
        notices=inapp.notices(db_session=db_session, candidate_id=candidate.id, language=language),
    )
