"""The one delivery state machine that the senders, Twilio's callbacks and retention share."""

import pytest

from notifications.delivery_states import FINAL, STEPS, Step, starts_from, to
from notifications.status_callback import MAPPED, STEP
from store.models import DeliveryStatus


def test_no_step_leaves_a_final_status():
    for step in Step:
        assert not starts_from(step) & FINAL, step


def test_a_callback_saying_sent_never_replaces_a_delivered_or_failed_one():
    assert starts_from(STEP[MAPPED["sent"]]) == {DeliveryStatus.SENDING, DeliveryStatus.UNKNOWN}
    assert DeliveryStatus.SENT in starts_from(STEP[MAPPED["delivered"]])


def test_a_step_the_table_does_not_allow_is_refused_before_any_row():
    with pytest.raises(ValueError, match="cannot lead to"):
        to(Step.MARK, DeliveryStatus.DELIVERED)
    assert set(STEPS) == set(Step)
