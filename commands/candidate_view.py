"""`/candidate TEST CANDIDATE`: status, deadline and how it is made up."""

from __future__ import annotations

from sqlalchemy import bindparam, func, literal, null, select, union_all

from commands import history
from commands.context import Ctx
from commands.errors import InvalidInput, concerning
from commands.language import N_, _
from commands.lookup import get_candidate, parse_candidate_number
from commands.permissions import test_for_support_or_teacher
from commands.reply import Reply
from commands.status import candidate_status
from commands.timeparse import format_duration, format_time, relative_to_ordinary_end
from commands.timing import timing
from notifications.masking import mask_email, mask_phone
from store.models import Candidate, CandidateStatus, Delivery, NoticeReceipt, Test

USAGE = N_(
    "Usage: /candidate TEST CANDIDATE [history [page N]]\n"
    "  Shows status, deadline and how it is made up, new delivery and notices;\n"
    "  `history` shows the candidate's change record (who, when, what, why).\n"
    "  Example: /candidate TDT4100-2026H 10023"
)
INAPP = "inapp"  # not a delivery channel: marks the in-app row of notice_summary's query


def run(ctx: Ctx, args: list[str], *, confirmed: bool = False) -> Reply:
    if len(args) >= 3 and args[2].lower() == "history":
        return history.run(ctx, args[0], args[1], args[3:])
    if len(args) != 2:
        raise InvalidInput(
            _("Give a test and one candidate number.")
            if len(args) < 2
            else _("Too many parts: after the candidate number only `history` may follow."),
            USAGE,
        )
    db = ctx.db_session
    test, _role = test_for_support_or_teacher(
        db_session=db, user_id=ctx.actor, test_code=args[0], doing=_("see its candidates")
    )
    with concerning("candidate"):
        number = parse_candidate_number(args[1])
        candidate = get_candidate(db_session=db, test=test, number=number)
    return card(ctx, test, candidate)


def card(ctx: Ctx, test: Test, candidate: Candidate) -> Reply:
    tz = ctx.tz
    t = timing(candidate, test)
    data = candidate_status(candidate, test, tz)
    data["phone"] = mask_phone(candidate.phone)
    data["email"] = mask_email(candidate.email)
    data["language"] = candidate.language
    data["notices"] = notice_summary(ctx, candidate)
    lines = [
        _("Candidate {candidate} · {test} ({kind})").format(
            candidate=candidate.number, test=test.code, kind=kind_label(test.kind)
        ),
        _("Status: {status}").format(status=status_label(candidate.status)),
    ]
    if t.reopening is not None:
        if t.reopen_deadline is None:
            lines.append(_("New delivery: allowed, no time limit (close it with /reopen … close)"))
        else:
            lines.append(
                _("New delivery: allowed ({mode}) until {time} ({relative})").format(
                    mode=t.reopening.mode,
                    time=format_time(t.reopen_deadline, tz),
                    relative=relative_to_ordinary_end(t.ordinary_end, t.reopen_deadline),
                )
            )
    lines.append(
        _("Deadline: {deadline}").format(
            deadline=format_time(t.deadline, tz) if t.deadline else _("none (no time limit)")
        )
    )
    lines.append(_("How the end time is made up:"))
    made_up = [
        (_("exam time ends"), format_time(t.exam_end, tz)),
        (_("+ upload allowance"), format_duration(t.allowance_minutes)),
        (_("= ordinary end"), format_time(t.ordinary_end, tz)),
    ]
    if t.individual_end is not None:
        made_up.append(
            (
                _("individual end"),
                _("{time} (replaces it)").format(time=format_time(t.individual_end, tz)),
            )
        )
    made_up += [
        (
            _("+ extra time"),
            _("{duration} (registry)").format(duration=format_duration(t.extra_minutes)),
        ),
        (_("+ incident time"), format_duration(t.incident_minutes)),
        (_("= end time"), format_time(t.end_time, tz)),
    ]
    # The values line up in a column however long the labels are in the reader's language.
    width = max(22, *(len(label) + 2 for label, _value in made_up))
    lines += [f"  {label.ljust(width)}{value}" for label, value in made_up]
    n = data["notices"]
    lines.append(
        _("Notices: {inapp} in the exam app, {read} read; SMS {sms}; e-mail {email}").format(
            inapp=n["inapp"], read=n["read"], sms=n["sms"], email=n["email"]
        )
    )
    lines.append(
        _("Phone {phone} · e-mail {email} · language {language}").format(
            phone=data["phone"], email=data["email"], language=candidate.language
        )
    )
    return Reply(text="\n".join(lines), kind="candidate", data=data)


def notice_summary(ctx: Ctx, candidate: Candidate) -> dict:
    rows = ctx.db_session.connection().execute(_NOTICE_SUMMARY, {"candidate_id": candidate.id})
    inapp = read = 0
    by_channel: dict[str, dict[str, int]] = {"sms": {}, "email": {}}
    for channel, status, count, read_count in rows:
        if channel == INAPP:
            inapp, read = count, read_count
        else:
            by_channel.setdefault(channel, {})[status] = count
    return {
        "inapp": inapp,
        "read": read,
        "sms": _statuses(by_channel["sms"]),
        "email": _statuses(by_channel["email"]),
    }


# One round trip, built once: the in-app counts first, then one row per delivery channel and
# status.
_receipts, _deliveries = NoticeReceipt.__table__.c, Delivery.__table__.c
_NOTICE_SUMMARY = union_all(
    select(
        literal(INAPP).label("channel"),
        null().label("status"),
        func.count(_receipts.id),
        func.count(_receipts.read_at),
    ).where(_receipts.candidate_id == bindparam("candidate_id")),
    select(_deliveries.channel, _deliveries.status, func.count(), literal(0))
    .where(_deliveries.candidate_id == bindparam("candidate_id"))
    .group_by(_deliveries.channel, _deliveries.status),
)


def _statuses(counts: dict[str, int]) -> str:
    return ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or _("none")


def status_label(status: str) -> str:
    """A candidate's status as the reader says it."""
    return {
        CandidateStatus.NOT_STARTED: _("not started"),
        CandidateStatus.STARTED: _("started"),
        CandidateStatus.SUBMITTED: _("submitted"),
    }[CandidateStatus(status)]


def kind_label(kind: str) -> str:
    """A test's kind as the reader says it: "school exam" …"""
    return {
        "school": _("school exam"),
        "home": _("home exam"),
        "assignment": _("assignment exam"),
        "thesis": _("thesis exam"),
    }.get(kind, f"{kind} exam")
