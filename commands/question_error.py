"""`/question-error TEST [text]`: a teacher reports an error in a running test's question set.

R12: once the test has started the question set cannot be changed, so the error is handled by
telling every candidate. The teacher writes the text (R14); support staff send it (`/notice`,
or the report's "Send to candidates" button) and decide about incident time for everyone.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select, update

from commands import audit, incident_time
from commands.context import Ctx
from commands.errors import InvalidInput, NotFound, Refused, concerning
from commands.language import N_, _, current, number
from commands.lookup import get_test
from commands.notice import (
    MAX_TEXT,
    Texts,
    language_note,
    parse_texts,
    plan_data,
    publish,
    receipt,
)
from commands.permissions import require_support, require_support_or_teacher_of
from commands.reply import Reply
from commands.text import refuse_direction_controls, trimmed
from commands.timeparse import format_time
from notifications import fanout, outbox
from store.models import QuestionErrorReport, ReportState, Test

USAGE = N_(
    "Usage: /question-error TEST [text]\n"
    "  Report an error in the question set of a running test. The set cannot be changed once\n"
    "  the test has started, so exam support sends your text to every candidate.\n"
    "  `nb: TEKST en: TEXT` gives both languages; each candidate reads theirs.\n"
    "  Without text, Slack opens a form (question, text in Norwegian and/or English,\n"
    "  suggested extra time).\n"
    "  Example: /question-error TDT4100-2026H Task 3b: n = 10, not n = 100."
)
MAX_QUESTION = 300
MAX_MINUTES = 600


def run(ctx: Ctx, args: list[str], *, confirmed: bool = False) -> Reply:
    if not args:
        raise InvalidInput(_("Give the test code and then the text for the candidates."), USAGE)
    test_code, *words = args
    if not words:
        # Checked first so a teacher of another test learns that before anything else.
        test = get_test(db_session=ctx.db_session, test_code=test_code)
        require_support_or_teacher_of(
            db_session=ctx.db_session, user_id=ctx.actor, test=test, doing=_("report errors in it")
        )
        raise InvalidInput(
            _(
                "Write the text for the candidates after the test code, e.g. "
                "`/question-error {test} Task 3b: n = 10, not n = 100`. In Slack, "
                "`/question-error TEST` alone opens a form."
            ).format(test=test.code)
        )
    texts = parse_texts(" ".join(words))
    return report(ctx, test_code=test_code, text_nb=texts.nb, text_en=texts.en)


def check_minutes(value: int | None) -> int | None:
    if value is not None and not 0 <= value <= MAX_MINUTES:
        raise InvalidInput(
            _("Suggested extra time must be 0–{most} minutes.").format(most=MAX_MINUTES),
            field="minutes",
        )
    return value or None


def _check_texts(text_nb: str, text_en: str) -> tuple[str, str]:
    text_nb, text_en = trimmed(text_nb), trimmed(text_en)
    if not text_nb and not text_en:
        raise InvalidInput(
            _("Write the text for the candidates, in Norwegian and/or English."), field="text_nb"
        )
    for field, text in (("text_nb", text_nb), ("text_en", text_en)):
        if len(text) > MAX_TEXT:
            raise InvalidInput(
                _(
                    "The text for the candidates is {length} characters long; shorten it to "
                    "{most} characters or fewer."
                ).format(length=number(len(text)), most=number(MAX_TEXT)),
                field=field,
            )
        with concerning(field):
            refuse_direction_controls(
                text, what=_("The text for the candidates"), outcome=_("Nothing was changed.")
            )
    return text_nb, text_en


def _check_question(question: str) -> str:
    question = trimmed(question)
    if len(question) > MAX_QUESTION:
        raise InvalidInput(
            _(
                "The question or task is {length} characters long; name it in {most} "
                "characters or fewer (e.g. Task 3b)."
            ).format(length=number(len(question)), most=MAX_QUESTION),
            field="question",
        )
    with concerning("question"):
        return refuse_direction_controls(
            question, what=_("The question or task"), outcome=_("Nothing was changed.")
        )


def _require_started(ctx: Ctx, test: Test) -> None:
    if ctx.now < test.start:
        # R12
        raise Refused(
            _(
                "{test} has not started yet (it starts {start}), so the question set can still "
                "be corrected in the exam system itself. Reports here are for errors found "
                "after the start, when it can no longer change."
            ).format(test=test.code, start=format_time(test.start, ctx.tz))
        )


def report(
    ctx: Ctx,
    *,
    test_code: str,
    text_nb: str = "",
    text_en: str = "",
    question: str = "",
    suggested_minutes: int | None = None,
) -> Reply:
    db = ctx.db_session
    test = get_test(db_session=db, test_code=test_code)
    require_support_or_teacher_of(
        db_session=db, user_id=ctx.actor, test=test, doing=_("report errors in its question set")
    )
    _require_started(ctx, test)
    text_nb, text_en = _check_texts(text_nb, text_en)
    question = _check_question(question)
    minutes = check_minutes(suggested_minutes)
    found = QuestionErrorReport(
        test_id=test.id,
        reported_by=ctx.actor,
        reported_at=ctx.now,
        question=question,
        text_nb=text_nb,
        text_en=text_en,
        suggested_minutes=minutes,
        state=ReportState.OPEN,
    )
    db.add(found)
    db.flush()
    audit.record(
        ctx,
        action="question_error_reported",
        reason=question,
        before={},
        after={"report_id": found.id, "text_nb": text_nb, "text_en": text_en, "minutes": minutes},
        test=test,
    )
    plan = fanout.plan(db_session=db, test=test)
    data = view(ctx, found, test=test, plan=plan)
    if ctx.outside.support_channel is not None:
        outbox.enqueue(
            db,
            kind=outbox.SLACK_POST,
            target=ctx.outside.support_channel,
            payload={"render": "report", "data": data},
            key=report_key(found.id),
            # What is said about the report later goes in its thread, after it.
            order_key=report_key(found.id),
        )
        told = _(
            "Error report #{id} for {test} is recorded and sent to exam support. The question "
            "set cannot be changed now that the test has started; support sends your text to "
            "the {count} candidates and you will hear back here."
        ).format(id=found.id, test=test.code, count=number(plan.candidates))
    else:
        told = _(
            "Error report #{id} for {test} is recorded, but no support channel is configured "
            "(SLACK_SUPPORT_CHANNEL), so it is not posted to exam support: tell them, and they "
            "find it with `examdesk reports {test}`. The question set cannot be changed now "
            "that the test has started."
        ).format(id=found.id, test=test.code)
    return Reply(
        text=told,
        kind="receipt",
        data=data,
        # No change-log line: the report's own post is its record in the support channel.
    )


def report_key(report_id: int) -> str:
    """The outbox key of the report's post in the support channel (its thread, updates)."""
    return f"report:{report_id}"


def view(
    ctx: Ctx, found: QuestionErrorReport, *, test: Test, plan: fanout.Plan | None = None
) -> dict[str, Any]:
    """Everything a Slack message about the report shows."""
    plan = plan or fanout.plan(db_session=ctx.db_session, test=test)
    posted = (
        {"channel": found.slack_channel, "ts": found.slack_ts}
        if found.slack_ts
        else outbox.result_of(ctx.db_session, report_key(found.id)) or {}
    )
    return {
        "action": "question_error",
        "report_id": found.id,
        "test": test.code,
        "title": test.title,
        "reported_by": found.reported_by,
        "reported_at": format_time(found.reported_at, ctx.tz),
        "question": found.question,
        "text_nb": found.text_nb,
        "text_en": found.text_en,
        "suggested_minutes": found.suggested_minutes,
        "state": found.state,
        "handled_by": found.handled_by,
        "slack_channel": posted.get("channel"),
        "slack_ts": posted.get("ts"),
        "plan": plan_data(plan, ctx.outside),
        "language_note": language_note(plan, report_texts(found)),
        # The language it is worded in: its post in the support channel is drawn in it.
        "language": current(),
    }


def show(ctx: Ctx, *, report_id: int) -> dict[str, Any]:
    found = get_report(ctx, report_id)
    return view(ctx, found, test=ctx.db_session.get(Test, found.test_id))


def _open_report(ctx: Ctx, report_id: int) -> tuple[QuestionErrorReport, Test]:
    found = get_report(ctx, report_id, lock=True)
    test = ctx.db_session.get(Test, found.test_id)
    if found.state != ReportState.OPEN:
        raise Refused(
            _("Error report #{id} for {test} is already {state}.").format(
                id=found.id, test=test.code, state=state_label(found.state)
            )
        )
    return found, test


def for_editing(ctx: Ctx, *, report_id: int) -> dict[str, Any]:
    """The report, for someone who may edit it now (as ``edit`` checks)."""
    found, test = _open_report(ctx, report_id)
    require_support_or_teacher_of(
        db_session=ctx.db_session, user_id=ctx.actor, test=test, doing=_("edit its error reports")
    )
    return view(ctx, found, test=test)


def edit(
    ctx: Ctx,
    *,
    report_id: int,
    text_nb: str,
    text_en: str,
    question: str | None = None,
    suggested_minutes: int | None = None,
) -> dict[str, Any]:
    """Change the text before it is sent: the reporting teacher's tests, or support."""
    found, test = _open_report(ctx, report_id)
    require_support_or_teacher_of(
        db_session=ctx.db_session, user_id=ctx.actor, test=test, doing=_("edit its error reports")
    )
    text_nb, text_en = _check_texts(text_nb, text_en)
    before = {"text_nb": found.text_nb, "text_en": found.text_en}
    found.text_nb, found.text_en = text_nb, text_en
    if question is not None:
        found.question = _check_question(question)
    found.suggested_minutes = check_minutes(suggested_minutes)
    audit.record(
        ctx,
        action="question_error_edited",
        reason=f"report #{found.id}",
        before=before,
        after={"text_nb": text_nb, "text_en": text_en},
        test=test,
    )
    ctx.db_session.flush()
    return view(ctx, found, test=test)


def reject(ctx: Ctx, *, report_id: int, reason: str = "") -> dict[str, Any]:
    """Support decides not to send it (not an error, or handled otherwise)."""
    require_support(db_session=ctx.db_session, user_id=ctx.actor, doing=_("reject error reports"))
    reason = audit.check_reason(reason.strip())
    found, test = _open_report(ctx, report_id)
    found.state, found.handled_by, found.handled_at = ReportState.REJECTED, ctx.actor, ctx.now
    audit.record(
        ctx,
        action="question_error_rejected",
        reason=reason or f"report #{found.id}",
        before={"state": ReportState.OPEN},
        after={"state": ReportState.REJECTED},
        test=test,
    )
    ctx.db_session.flush()
    return view(ctx, found, test=test)


def give_incident_time(ctx: Ctx, *, report_id: int, minutes: int) -> Reply:
    """R14: exam support's decision on a report, ``/incident-time TEST all add N``.

    A change to all candidates is confirmed first; here the confirmation is the decision
    itself: support pressed the report's incident-time button (with its suggested minutes)
    or submitted its minutes form, having seen the report. Nothing outside ``commands``
    decides that a change to all candidates is confirmed.
    """
    found = show(ctx, report_id=report_id)
    reason = f"error in the question set (report #{report_id})"
    args = [found["test"], "all", "add", str(minutes), *reason.split()]
    return incident_time.run(ctx, args, confirmed=True)


def get_report(ctx: Ctx, report_id: int, *, lock: bool = False) -> QuestionErrorReport:
    query = select(QuestionErrorReport).where(QuestionErrorReport.id == report_id)
    if lock:
        query = query.with_for_update()
    report = ctx.db_session.scalar(query)
    if report is None:
        raise NotFound(_("There is no error report #{id}.").format(id=report_id))
    return report


def state_label(state: str) -> str:
    """A report's state as the reader says it."""
    return {
        ReportState.OPEN: _("open"),
        ReportState.SENT: _("sent"),
        ReportState.REJECTED: _("rejected"),
    }.get(state, state)


def report_texts(report: QuestionErrorReport) -> Texts:
    return Texts(nb=report.text_nb.strip(), en=report.text_en.strip())


def send(ctx: Ctx, *, report_id: int) -> Reply:
    """The report's "Send to candidates" button: its text to every candidate, once."""
    db = ctx.db_session
    require_support(db_session=db, user_id=ctx.actor, doing=_("send notices to candidates"))
    report = get_report(ctx, report_id, lock=True)
    test = db.get(Test, report.test_id)
    if report.state != ReportState.OPEN:
        said = _("Error report #{id} for {test} was already {state}").format(
            id=report.id, test=test.code, state=state_label(report.state)
        )
        if report.handled_by:
            said += " " + _("by {user}").format(user=f"<@{report.handled_by}>")
        if report.handled_at:
            said += " " + _("at {time}").format(time=format_time(report.handled_at, ctx.tz))
        raise Refused(
            said + ".",
            mentions=(report.handled_by,) if report.handled_by else (),
        )
    if not (report.text_nb.strip() or report.text_en.strip()):
        raise InvalidInput(
            _("Error report #{id} has no text for the candidates. Edit it first.").format(
                id=report.id
            )
        )
    # A double click: only the first UPDATE finds the report still open.
    taken = db.execute(
        update(QuestionErrorReport)
        .where(QuestionErrorReport.id == report.id, QuestionErrorReport.state == ReportState.OPEN)
        .values(state=ReportState.SENT, handled_by=ctx.actor, handled_at=ctx.now),
        execution_options={"synchronize_session": False},
    ).rowcount
    if taken != 1:
        raise Refused(_("Error report #{id} is being sent already.").format(id=report.id))
    db.expire(report)
    posted = outbox.result_of(db, report_key(report.id)) or {}
    result = publish(
        ctx,
        test=test,
        text_nb=report.text_nb,
        text_en=report.text_en,
        report_id=report.id,
        slack_channel=posted.get("channel"),
        slack_ts=posted.get("ts"),
    )
    reply = receipt(ctx, test=test, result=result, texts=report_texts(report))
    reply.data["report_id"] = report.id
    return reply
