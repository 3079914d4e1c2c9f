"""The change record, readable: `examdesk log TEST [CANDIDATE]` and
`/candidate TEST CANDIDATE history [page N]` (R15: who, when, what, why, before and after).

The record keeps what each command wrote: one candidate's before and after, or for a batch
(a list, `all`, a registry import) each candidate's under its number. Here every entry is
brought into one shape, a test-wide part and a part per candidate, so that a candidate's
history holds the batches it was part of too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import bindparam, or_, select
from sqlalchemy.orm import Session

from commands.context import Ctx
from commands.errors import InvalidInput
from commands.language import N_, _, ngettext
from commands.language import number as number_of
from commands.lookup import get_candidate, parse_candidate_number
from commands.permissions import test_for_support_or_teacher
from commands.reply import Reply
from commands.timeparse import format_duration, format_time, iso
from notifications.masking import mask_email, mask_phone
from store.models import Candidate, Change, Test

USAGE = N_(
    "Usage: /candidate TEST CANDIDATE history [page N]\n"
    "  The candidate's change record, oldest first: when, who, what, why, before → after.\n"
    "  Without a page, the latest changes; a page holds 20, page 1 the oldest.\n"
    "  Example: /candidate TDT4100-2026H 10023 history"
)
PAGE = 20
# Whose before and after are kept under each candidate's number (a batch of candidates).
BY_NUMBER = (
    "incident_time_add",
    "incident_time_subtract",
    "incident_time_set",
    "incident_time_undo",
)
BY_NUMBER_ACTIONS = (*BY_NUMBER, "registry_candidates")
# Candidates named in a test-wide entry of `examdesk log TEST`; the rest are counted.
LISTED = 10
REASON_SHOWN = 300
VALUE_SHOWN = 80

ACTIONS = {
    "incident_time_add": N_("incident time added"),
    "incident_time_subtract": N_("incident time subtracted"),
    "incident_time_set": N_("incident time set"),
    "incident_time_undo": N_("incident time change undone"),
    "reopen": N_("opened for new delivery"),
    "reopen_undo": N_("new delivery change undone"),
    "close_current": N_("new delivery closed, current answer delivered"),
    "close_reverted": N_("new delivery closed, earlier answer delivered"),
    "auto_deliver": N_("delivered automatically at the deadline"),
    "auto_deliver_reopened": N_("new delivery ended at its deadline, delivered automatically"),
    "deliver_file": N_("file delivered for the candidate"),
    "registry_candidates": N_("student registry"),
    "registry_test": N_("student registry (test)"),
    "notice_sent": N_("notice sent"),
    "question_error_reported": N_("question-set error reported"),
    "question_error_edited": N_("question-set error report edited"),
    "question_error_rejected": N_("question-set error report rejected"),
    "retention_purge": N_("contact data erased (retention)"),
}
FIELDS = {
    "incident_minutes": N_("incident time"),
    "extra_minutes": N_("extra time"),
    "postponed_deadline": N_("postponed deadline"),
    "individual_deadline": N_("individual deadline"),
    "individual_end": N_("individual end"),
    "new_delivery": N_("new delivery"),
    "end_time": N_("end time"),
    "submitted_at": N_("delivered"),
    "phone": N_("phone"),
    "email": N_("e-mail"),
}
# Contact data never leaves the record unmasked (Slack, terminal or JSON alike).
MASKS = {"phone": mask_phone, "email": mask_email}
_ISO = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}")
_SLACK_USER = re.compile(r"[UW][A-Z0-9]{2,}")


@dataclass(frozen=True)
class Part:
    """What one change did to one candidate: its before and after."""

    candidate: str
    before: dict[str, Any]
    after: dict[str, Any]


@dataclass(frozen=True)
class Entry:
    id: int
    at: datetime
    actor: str
    action: str
    reason: str
    # The test-wide before and after (a registry change to the test, a notice).
    before: dict[str, Any] = field(default_factory=dict)
    after: dict[str, Any] = field(default_factory=dict)
    parts: tuple[Part, ...] = ()
    # How many candidates the change touched in all (a candidate's history keeps only its
    # own part of a batch).
    touched: int = 0

    def as_json(self, tz: ZoneInfo) -> dict[str, Any]:
        return {
            "id": self.id,
            "at": iso(self.at, tz),
            "actor": self.actor,
            "action": self.action,
            "what": ACTIONS.get(self.action, self.action.replace("_", " ")),
            "reason": self.reason,
            "before": _masked(self.before),
            "after": _masked(self.after),
            "candidates": [
                {"candidate": p.candidate, "before": _masked(p.before), "after": _masked(p.after)}
                for p in self.parts
            ],
            "candidates_touched": self.touched,
        }


def entries(db_session: Session, test: Test, number: str | None = None) -> list[Entry]:
    """The test's change record (or one candidate's part of it), oldest first."""
    if number is None:
        rows = db_session.execute(_OF_TEST, {"test_id": test.id})
    else:
        candidate_id = db_session.scalar(
            select(Candidate.id).where(Candidate.test_id == test.id, Candidate.number == number)
        )
        rows = db_session.execute(_OF_CANDIDATE, {"test_id": test.id, "candidate_id": candidate_id})
    found = []
    for row in rows:
        entry = _entry(row, number)
        if entry is not None:
            found.append(entry)
    return found


_c = Change.__table__.c
_COLUMNS = (_c.id, _c.at, _c.actor, _c.action, _c.reason, _c.before, _c.after, Candidate.number)
_OF_TEST = (
    select(*_COLUMNS)
    .outerjoin(Candidate, Candidate.id == _c.candidate_id)
    .where(_c.test_id == bindparam("test_id"))
    .order_by(_c.at, _c.id)
)
# A candidate's own changes, and the batches that may hold it (filtered by number after).
_OF_CANDIDATE = _OF_TEST.where(
    or_(
        _c.candidate_id == bindparam("candidate_id"),
        _c.candidate_id.is_(None) & _c.action.in_(BY_NUMBER_ACTIONS),
    )
)


def _entry(row: Any, number: str | None) -> Entry | None:
    id_, at, actor, action, reason, before, after, own_number = row
    before, after = before or {}, after or {}
    common = {"id": id_, "at": at, "actor": actor, "action": action, "reason": reason}
    if action in BY_NUMBER_ACTIONS:
        numbers = sorted({*before, *after})
        if number is not None:
            if number not in numbers:
                return None
            shown = [number]
        else:
            shown = numbers
        parts = tuple(
            Part(n, _as_fields(action, before.get(n)), _as_fields(action, after.get(n)))
            for n in shown
        )
        return Entry(**common, parts=parts, touched=len(numbers))
    if own_number is not None:
        return Entry(**common, parts=(Part(own_number, before, after),), touched=1)
    return Entry(**common, before=before, after=after)


def _as_fields(action: str, value: Any) -> dict[str, Any]:
    """A batch keeps an incident total as a bare number; a registry import keeps fields."""
    if value is None:
        return {}
    if action in BY_NUMBER:
        return {"incident_minutes": value}
    return dict(value)


# ------------------------------------------------------------------ reading it


def run(ctx: Ctx, test_code: str, number_text: str, rest: list[str]) -> Reply:
    """`/candidate TEST CANDIDATE history [page N]`, paged to fit one Slack reply."""
    page = _page_asked(rest)
    db = ctx.db_session
    test, _role = test_for_support_or_teacher(
        db_session=db, user_id=ctx.actor, test_code=test_code, doing=_("see its change record")
    )
    number = parse_candidate_number(number_text)
    get_candidate(db_session=db, test=test, number=number)  # a clear "no such candidate"
    found = entries(db, test, number)
    pages = max(1, -(-len(found) // PAGE))
    if page is None:
        page = pages
    elif page > pages:
        raise InvalidInput(
            ngettext(
                "Candidate {candidate} of {test} has {count} changes, so there is {n} page. "
                "Ask for page 1 to {n}, or leave the page out for the latest.",
                "Candidate {candidate} of {test} has {count} changes, so there are {n} pages. "
                "Ask for page 1 to {n}, or leave the page out for the latest.",
                pages,
            ).format(candidate=number, test=test.code, count=number_of(len(found)), n=pages)
        )
    first = (page - 1) * PAGE
    shown = found[first : first + PAGE]
    command = f"/candidate {test.code} {number} history page"
    lines = [
        _("Change record of candidate {candidate} · {test} (oldest first)").format(
            candidate=number, test=test.code
        )
    ]
    if not found:
        lines.append(_("No changes recorded."))
    else:
        lines[0] += ": " + (
            _("changes {first}–{last} of {count}").format(
                first=first + 1, last=first + len(shown), count=number_of(len(found))
            )
            if len(found) > len(shown)
            else ngettext("{n} change", "{n} changes", len(found)).format(n=number_of(len(found)))
        )
    if first:
        lines.append(
            _("… {n} earlier: {command}").format(n=first, command=f"`{command} {page - 1}`")
        )
    for entry in shown:
        lines += describe(entry, ctx.tz, mention=True, candidate=number)
    later = len(found) - first - len(shown)
    if later:
        lines.append(_("… {n} later: {command}").format(n=later, command=f"`{command} {page + 1}`"))
    return Reply(
        text="\n".join(lines),
        kind="history",
        mentions=tuple({e.actor for e in shown if _SLACK_USER.fullmatch(e.actor)}),
        data={
            "test": test.code,
            "candidate": number,
            "page": page,
            "pages": pages,
            "count": len(found),
            "entries": [e.as_json(ctx.tz) for e in shown],
        },
    )


def _page_asked(rest: list[str]) -> int | None:
    if not rest:
        return None
    if len(rest) == 2 and rest[0].lower() == "page" and rest[1].isascii() and rest[1].isdigit():
        page = int(rest[1])
        if 1 <= page <= 100_000:
            return page
    raise InvalidInput(_("After `history`, give nothing or `page N` (N from 1)."), USAGE)


def log_text(db_session: Session, test: Test, number: str | None, tz: ZoneInfo) -> str:
    """`examdesk log TEST [CANDIDATE]`: the whole record, oldest first, unpaged."""
    found = entries(db_session, test, number)
    whose = (
        _("candidate {candidate} · {test}").format(candidate=number, test=test.code)
        if number
        else test.code
    )
    lines = [
        _("Change record of {whose} (oldest first): {count} changes").format(
            whose=whose, count=number_of(len(found))
        )
    ]
    for entry in found:
        lines += describe(entry, tz, mention=False, candidate=number)
    return "\n".join(lines)


def describe(entry: Entry, tz: ZoneInfo, *, mention: bool, candidate: str | None) -> list[str]:
    """An entry as lines: when, who, what, why, then before → after."""
    who = f"<@{entry.actor}>" if mention and _SLACK_USER.fullmatch(entry.actor) else entry.actor
    what = action_label(entry.action)
    if candidate is not None and entry.touched > 1:
        what += " " + _("(one change for {n} candidates)").format(n=number_of(entry.touched))
    head = f"• {format_time(entry.at, tz)} · {who} · {what}"
    if entry.reason:
        head += " · " + _("why: {reason}").format(reason=_clip(entry.reason, REASON_SHOWN))
    lines = [head]
    test_wide = _changes(entry.before, entry.after, tz)
    if test_wide:
        lines.append(f"    {test_wide}")
    parts = entry.parts
    if candidate is not None:
        lines += [f"    {c}" for p in parts if (c := _changes(p.before, p.after, tz))]
        return lines
    for p in parts[:LISTED]:
        lines.append(f"    {p.candidate}: {_changes(p.before, p.after, tz) or _('no change')}")
    if len(parts) > LISTED:
        lines.append(
            "    " + _("… and {n} more candidates").format(n=number_of(len(parts) - LISTED))
        )
    return lines


def _changes(before: dict[str, Any], after: dict[str, Any], tz: ZoneInfo) -> str:
    """``field before → after`` for every field that differs; a new field shows its value."""
    shown = []
    for key in [*before, *(k for k in after if k not in before)]:
        old, new = before.get(key), after.get(key)
        if key in before and key in after and old == new:
            continue
        label = _(FIELDS[key]) if key in FIELDS else key.replace("_", " ")
        if key not in before:
            if new in (None, 0, "", [], {}):
                continue
            shown.append(f"{label} {_value(key, new, tz)}")
        elif key not in after:
            shown.append(f"{label} {_value(key, old, tz)} → {_('none')}")
        else:
            shown.append(f"{label} {_value(key, old, tz)} → {_value(key, new, tz)}")
    return "; ".join(shown)


def _value(key: str, value: Any, tz: ZoneInfo) -> str:
    if key in MASKS:
        return MASKS[key](value)
    if value is None:
        return _("none")
    if isinstance(value, bool):
        return _("yes") if value else _("no")
    if isinstance(value, int) and key.endswith("minutes"):
        return format_duration(value)
    if isinstance(value, str) and _ISO.match(value):
        try:
            return format_time(datetime.fromisoformat(value), tz)
        except ValueError:
            pass
    if key == "new_delivery" and isinstance(value, dict):
        until = _value("deadline", value.get("deadline"), tz)
        if value.get("deadline") is None:
            return _("{mode}, no time limit").format(mode=value.get("mode"))
        return _("{mode} until {time}").format(mode=value.get("mode"), time=until)
    if isinstance(value, list):
        return _clip(", ".join(str(v) for v in value) or _("none"), VALUE_SHOWN)
    return _clip(str(value), VALUE_SHOWN)


def action_label(action: str) -> str:
    """What a change did, as the reader says it."""
    return _(ACTIONS[action]) if action in ACTIONS else action.replace("_", " ")


def _masked(values: dict[str, Any]) -> dict[str, Any]:
    return {
        k: (MASKS[k](v) if k in MASKS and v is not None else _masked_inner(v))
        for k, v in values.items()
    }


def _masked_inner(value: Any) -> Any:
    return _masked(value) if isinstance(value, dict) else value


def _clip(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
