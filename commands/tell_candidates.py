"""After a change to one or a list of candidates, each of them is told (DESIGN.md): their
deadline now, what changed, the link to their page and how to reach support, by R13's
channel, in their language.

Not after `all` (nothing is sent by itself; a notice tells everyone), not when the reason
ends with `--quiet`, and never to a candidate whose answer is delivered, except to say that
it was delivered for them.
"""

from __future__ import annotations

from collections.abc import Sequence

from commands.context import Ctx
from commands.language import _, ngettext, number
from commands.timing import active_reopening, timing
from notifications import candidate_messages as messages
from notifications.channels import outside_channel
from store.models import Candidate, CandidateStatus, Test


def tell(ctx: Ctx, *, test: Test, candidates: Sequence[Candidate], change: str) -> int:
    """Write one message per candidate (merged with one still waiting); how many.

    ``candidates`` as the change left them: changed through the session, with their
    reopenings loaded (a change by a bulk UPDATE tells nobody: that is `all`)."""
    channel = outside_channel(test)
    told = 0
    for candidate in candidates:
        reopening = active_reopening(candidate)
        if (
            change != messages.DELIVERED
            and candidate.status == CandidateStatus.SUBMITTED
            and not reopening
        ):
            continue
        t = timing(candidate, test)
        state = messages.State(
            language=candidate.language,
            test_code=test.code,
            change=change,
            deadline=t.deadline,
            incident_minutes=candidate.incident_minutes,
            delivered_at=candidate.submitted_at,
        )
        text = messages.compose(
            state,
            link=messages.page_link(
                public_url=ctx.outside.public_url, token=candidate.notice_token
            ),
            support_contact=ctx.outside.support_contact,
            tz=ctx.tz,
            now=ctx.now,
        )
        messages.send_candidate_message(
            ctx.db_session,
            candidate=candidate,
            channel=channel,
            text=text,
            not_before=ctx.now + messages.COALESCE,
        )
        told += 1
    return told


def told_line(told: int, *, quiet: bool) -> str:
    """What the receipt says of it."""
    if quiet:
        return _("The candidates are not told (--quiet).")
    if not told:
        return ""
    if told == 1:
        return _("The candidate is told by message in a minute (several changes make one message).")
    return ngettext(
        "{n} candidate is told by message in a minute (several changes make one message).",
        "{n} candidates are told by message in a minute (several changes make one message).",
        told,
    ).format(n=number(told))
