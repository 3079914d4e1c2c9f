"""The support channel's change log: one post per change, from every front door.

The post is an outbox row written in the change's own transaction, so a change and its post
are committed together; the Slack app draws it when it sends (``render: change_log``).
Without SLACK_SUPPORT_CHANNEL the lines go to the log only.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from commands.context import Ctx
from commands.language import current
from notifications import outbox

log = logging.getLogger(__name__)

RENDER = "change_log"


def post(ctx: Ctx, lines: Sequence[str], *, via: str, mentions: Sequence[str] = ()) -> None:
    """Post ``lines`` (who, what, for whom, why) with the change being made in ``ctx``.

    The lines are in the language of the person who made the change, and so is the rest of
    the post (``language``): the channel reads each change as its maker worded it."""
    if not lines:
        return
    channel = ctx.outside.support_channel
    if channel is None:
        log.info("change log (SLACK_SUPPORT_CHANNEL unset): %s", " | ".join(lines))
        return
    outbox.enqueue(
        ctx.db_session,
        kind=outbox.SLACK_POST,
        target=channel,
        payload={
            "render": RENDER,
            "data": {
                "lines": list(lines),
                "via": via,
                "mentions": list(mentions),
                "language": current(),
            },
        },
        # The log reads in the order the changes were made.
        order_key=f"change_log:{channel}",
    )
