"""The notifier's own counters for `GET /metrics` (prometheus-client's process registry)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

# Per channel and outcome: `rate(examdesk_messages_sent_total{channel="sms",outcome="sent"}[1m])`
# is SMS handed to Twilio per second, summed over every process.
MESSAGES = Counter(
    "examdesk_messages_sent_total",
    "Messages to candidates handed to a channel, by channel and outcome",
    ["channel", "outcome"],
)
# Each missed slot is a gap in the schedule that no SMS fills: a notice goes out that much
# below SMS_PER_SECOND. `where`: "hand-over" (no sending thread took the slot in time),
# "wire" (the thread with the request woke too late at its slot).
SLOTS_MISSED = Counter(
    "examdesk_sms_slots_missed_total",
    "SMS send slots given up because no request was ready to leave in time",
    ["where"],
)
CALLBACK_LAG = Histogram(
    "examdesk_callback_lag_seconds",
    "Seconds from handing an SMS to Twilio to applying a status callback for it",
    buckets=(0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 1800),
)
