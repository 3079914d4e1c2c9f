"""SQLAlchemy 2 models. All datetimes are aware and stored in UTC (see ``UTCDateTime``)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from store.types import StrEnumColumn, UTCDateTime


# The states and kinds the columns below hold. Their values are what the database stores.
class TestKind(StrEnum):
    SCHOOL = "school"  # written school exam
    HOME = "home"  # home exam
    ASSIGNMENT = "assignment"  # hand-in or portfolio
    THESIS = "thesis"  # bachelor or master thesis


class CandidateStatus(StrEnum):
    NOT_STARTED = "not_started"
    STARTED = "started"
    SUBMITTED = "submitted"

    @property
    def label(self) -> str:
        """As people read it: "not started"."""
        return self.value.replace("_", " ")


class ReopenMode(StrEnum):
    UNTIL_CLOSE = "until-close"
    AT = "at"
    IN = "in"
    NO_LIMIT = "no-limit"


class ReportState(StrEnum):
    OPEN = "open"
    SENT = "sent"
    REJECTED = "rejected"


class DeliveryStatus(StrEnum):
    """Where one message is; notifications.delivery_states says which step leads where."""

    PENDING = "pending"  # waiting for its turn (or for a retry)
    SENDING = "sending"  # claimed by a sender, request under way
    SENT = "sent"  # the provider took it
    LOGGED = "logged"  # the channel is not configured: written to the log, not sent
    DELIVERED = "delivered"  # the provider says it arrived
    UNDELIVERED = "undelivered"  # the provider says it did not arrive
    FAILED = "failed"  # not sent, and will not be
    UNKNOWN = "unknown"  # a request whose outcome is unclear; asked of the provider first


class OutboxStatus(StrEnum):
    """Where one outbox message (a Slack post, a webhook) is."""

    PENDING = "pending"  # waiting for its turn (or for a retry)
    SENDING = "sending"  # claimed by a sender, request under way
    SENT = "sent"  # the receiver took it
    LOGGED = "logged"  # the channel is not configured: written to the log, not sent
    FAILED = "failed"  # given up
    UNKNOWN = "unknown"  # a request whose outcome is unclear; looked up before another try


# The largest id a row can have (INTEGER primary keys on PostgreSQL). A larger one from
# outside never reaches a query: there it would fail the whole batch it went with.
MAX_ID = 2**31 - 1

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSON()}


class Test(Base):
    __tablename__ = "tests"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(64), unique=True)
    title: Mapped[str] = mapped_column(String(300), default="")
    kind: Mapped[TestKind] = mapped_column(StrEnumColumn(TestKind, 16))
    start: Mapped[datetime]
    end: Mapped[datetime]  # end of exam time as printed on the cover page
    has_upload: Mapped[bool] = mapped_column(Boolean, default=False)
    auto_deliver: Mapped[bool] = mapped_column(Boolean, default=False)
    updated_at: Mapped[datetime]

    candidates: Mapped[list[Candidate]] = relationship(back_populates="test")


def _partial_index(name: str, where: str, *columns: str) -> Index:
    return Index(name, *columns, sqlite_where=text(where), postgresql_where=text(where))


class Candidate(Base):
    __tablename__ = "candidates"
    __table_args__ = (
        UniqueConstraint("test_id", "number"),
        # Counting a test's candidates by status reads this index only, not 2,000 rows;
        # its test_id prefix serves every other lookup by test.
        Index("ix_candidates_test_id_status", "test_id", "status"),
        # The candidates with extra time, incident time or an end of their own, per test, in
        # number order, holding every column their condition reads: a list's count and its
        # first few entries come from the index alone, however sparse or dense the list.
        _partial_index(
            "ix_candidates_with_extra", "extra_minutes > 0", "test_id", "number", "extra_minutes"
        ),
        _partial_index(
            "ix_candidates_with_incident",
            "incident_minutes != 0",
            "test_id",
            "number",
            "incident_minutes",
        ),
        _partial_index(
            "ix_candidates_with_own_end",
            "postponed_deadline IS NOT NULL OR individual_deadline IS NOT NULL",
            "test_id",
            "number",
            "postponed_deadline",
            "individual_deadline",
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    test_id: Mapped[int] = mapped_column(ForeignKey("tests.id", ondelete="CASCADE"))
    number: Mapped[str] = mapped_column(String(32))
    phone: Mapped[str | None] = mapped_column(String(32))  # E.164 when usable
    email: Mapped[str | None] = mapped_column(String(320))
    language: Mapped[str] = mapped_column(String(2), default="nb")
    # From the student registry (R11); a refresh overwrites these.
    extra_minutes: Mapped[int] = mapped_column(Integer, default=0)
    postponed_deadline: Mapped[datetime | None]
    individual_deadline: Mapped[datetime | None]
    # Staff-owned (R4); a refresh never touches it.
    incident_minutes: Mapped[int] = mapped_column(Integer, default=0)
    status: Mapped[CandidateStatus] = mapped_column(
        StrEnumColumn(CandidateStatus, 16), default=CandidateStatus.NOT_STARTED
    )
    submitted_at: Mapped[datetime | None]
    # Secret for the candidate's notice page; unguessable, never shown in Slack. None once
    # erased (retention), so that no link reaches the page any more.
    notice_token: Mapped[str | None] = mapped_column(String(64), unique=True)
    # When retention erased the phone number, e-mail address and page token.
    purged_at: Mapped[datetime | None]

    test: Mapped[Test] = relationship(back_populates="candidates")
    reopenings: Mapped[list[Reopening]] = relationship(
        back_populates="candidate", order_by="Reopening.id"
    )


class Staff(Base):
    __tablename__ = "staff"

    user_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    role: Mapped[str] = mapped_column(String(16))  # support | teacher
    added_at: Mapped[datetime]
    added_by: Mapped[str] = mapped_column(String(64))
    # nb | en, chosen with `staff add --language`; None: their Slack locale, else English.
    language: Mapped[str | None] = mapped_column(String(8))


class StaffTest(Base):
    """A teacher's own tests (R15)."""

    __tablename__ = "staff_tests"

    user_id: Mapped[str] = mapped_column(
        ForeignKey("staff.user_id", ondelete="CASCADE"), primary_key=True
    )
    test_id: Mapped[int] = mapped_column(
        ForeignKey("tests.id", ondelete="CASCADE"), primary_key=True
    )


class Reopening(Base):
    """A new delivery ("ny innlevering") for one candidate (R6–R8)."""

    __tablename__ = "reopenings"
    __table_args__ = (
        # At most one open reopening per candidate.
        Index(
            "uq_reopenings_active",
            "candidate_id",
            unique=True,
            sqlite_where=text("closed_at IS NULL"),
            postgresql_where=text("closed_at IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    candidate_id: Mapped[int] = mapped_column(
        ForeignKey("candidates.id", ondelete="CASCADE"), index=True
    )
    mode: Mapped[ReopenMode] = mapped_column(StrEnumColumn(ReopenMode, 16))
    deadline: Mapped[datetime | None]
    opened_at: Mapped[datetime]
    opened_by: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(Text, default="")
    # What the candidate had before; R8 "reverted" goes back to it.
    status_before: Mapped[CandidateStatus] = mapped_column(StrEnumColumn(CandidateStatus, 16))
    submission_before_id: Mapped[int | None] = mapped_column(ForeignKey("submissions.id"))
    closed_at: Mapped[datetime | None] = mapped_column(index=True)
    closed_by: Mapped[str | None] = mapped_column(String(64))
    close_choice: Mapped[str | None] = mapped_column(String(16))  # current | reverted

    candidate: Mapped[Candidate] = relationship(back_populates="reopenings")


class Submission(Base):
    """A delivered version of a candidate's answer."""

    __tablename__ = "submissions"

    id: Mapped[int] = mapped_column(primary_key=True)
    candidate_id: Mapped[int] = mapped_column(
        ForeignKey("candidates.id", ondelete="CASCADE"), index=True
    )
    at: Mapped[datetime]
    # candidate | automatic | staff_file | closed_current | closed_reverted
    source: Mapped[str] = mapped_column(String(24))
    by: Mapped[str] = mapped_column(String(64))
    file_name: Mapped[str | None] = mapped_column(String(300))
    file_size: Mapped[int | None] = mapped_column(Integer)
    sha256: Mapped[str | None] = mapped_column(String(64))
    # For closed_reverted: the submission whose content counts.
    copy_of_id: Mapped[int | None] = mapped_column(ForeignKey("submissions.id"))


class Change(Base):
    """Append-only record of every change: who, when, what, why, before and after."""

    __tablename__ = "changes"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(index=True)
    actor: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(48))
    test_id: Mapped[int | None] = mapped_column(
        ForeignKey("tests.id", ondelete="SET NULL"), index=True
    )
    candidate_id: Mapped[int | None] = mapped_column(
        ForeignKey("candidates.id", ondelete="SET NULL"), index=True
    )
    reason: Mapped[str] = mapped_column(Text, default="")
    before: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    after: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    batch: Mapped[str | None] = mapped_column(String(36), index=True)


class Confirmation(Base):
    """A pending confirmation; claiming it once makes a double click apply once."""

    __tablename__ = "confirmations"

    token: Mapped[str] = mapped_column(String(64), primary_key=True)
    actor: Mapped[str] = mapped_column(String(64))
    command: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime]
    used_at: Mapped[datetime | None]
    used_by: Mapped[str | None] = mapped_column(String(64))


class QuestionErrorReport(Base):
    """A teacher's report of an error in a question set (R12–R14)."""

    __tablename__ = "question_error_reports"

    id: Mapped[int] = mapped_column(primary_key=True)
    test_id: Mapped[int] = mapped_column(ForeignKey("tests.id", ondelete="CASCADE"), index=True)
    reported_by: Mapped[str] = mapped_column(String(64))
    reported_at: Mapped[datetime]
    question: Mapped[str] = mapped_column(String(300), default="")
    text_nb: Mapped[str] = mapped_column(Text, default="")
    text_en: Mapped[str] = mapped_column(Text, default="")
    suggested_minutes: Mapped[int | None] = mapped_column(Integer)
    state: Mapped[ReportState] = mapped_column(
        StrEnumColumn(ReportState, 16), default=ReportState.OPEN
    )
    handled_by: Mapped[str | None] = mapped_column(String(64))
    handled_at: Mapped[datetime | None]
    # Where the report is shown in Slack, so progress can update it.
    slack_channel: Mapped[str | None] = mapped_column(String(32))
    slack_ts: Mapped[str | None] = mapped_column(String(32))


class Notice(Base):
    """A message for every candidate of a test (R13)."""

    __tablename__ = "notices"

    id: Mapped[int] = mapped_column(primary_key=True)
    test_id: Mapped[int] = mapped_column(ForeignKey("tests.id", ondelete="CASCADE"), index=True)
    report_id: Mapped[int | None] = mapped_column(ForeignKey("question_error_reports.id"))
    text_nb: Mapped[str] = mapped_column(Text, default="")
    text_en: Mapped[str] = mapped_column(Text, default="")
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime]
    # Where progress is shown in Slack.
    slack_channel: Mapped[str | None] = mapped_column(String(32))
    slack_ts: Mapped[str | None] = mapped_column(String(32))


class NoticeReceipt(Base):
    """The in-app notice of one candidate: when their browser first opened the page with it
    (a hint: a person may not have read it) and when they confirmed having read it."""

    __tablename__ = "notice_receipts"
    __table_args__ = (UniqueConstraint("notice_id", "candidate_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    notice_id: Mapped[int] = mapped_column(ForeignKey("notices.id", ondelete="CASCADE"))
    candidate_id: Mapped[int] = mapped_column(
        ForeignKey("candidates.id", ondelete="CASCADE"), index=True
    )
    opened_at: Mapped[datetime | None]
    # Set only by the candidate's "I have read this" (POST), never by opening the page.
    read_at: Mapped[datetime | None]


class Delivery(Base):
    """One notice to one candidate over one channel (sms | email), saved before sending; or,
    without a notice, a message of its own to one candidate (``body``, ``subject``) after a
    change to them (commands.tell_candidates)."""

    __tablename__ = "deliveries"
    __table_args__ = (
        UniqueConstraint("notice_id", "candidate_id", "channel"),
        Index("ix_deliveries_due", "status", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    notice_id: Mapped[int | None] = mapped_column(
        ForeignKey("notices.id", ondelete="CASCADE"), index=True
    )
    candidate_id: Mapped[int] = mapped_column(
        ForeignKey("candidates.id", ondelete="CASCADE"), index=True
    )
    channel: Mapped[str] = mapped_column(String(8))
    # A candidate message's own text; None for a notice's delivery (built from the notice).
    subject: Mapped[str | None] = mapped_column(String(300))
    body: Mapped[str | None] = mapped_column(Text)
    address: Mapped[str | None] = mapped_column(String(320))
    status: Mapped[DeliveryStatus] = mapped_column(
        StrEnumColumn(DeliveryStatus, 16), default=DeliveryStatus.PENDING
    )
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime]
    claimed_by: Mapped[str | None] = mapped_column(String(64))
    claimed_until: Mapped[datetime | None]
    provider_id: Mapped[str | None] = mapped_column(String(64), index=True)
    error_code: Mapped[str | None] = mapped_column(String(32))
    error_message: Mapped[str | None] = mapped_column(Text)
    sent_at: Mapped[datetime | None]
    updated_at: Mapped[datetime]


class Lease(Base):
    """A named lease that one process holds at a time (e.g. the scheduler)."""

    __tablename__ = "leases"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str] = mapped_column(String(128))
    expires_at: Mapped[datetime]


class SeenSlackRequest(Base):
    """A signed Slack request (or an event id) already taken in, so that a replay or a retry
    is recognised by every process sharing the database. Rows live as long as a replay of
    them could still pass the signature check."""

    __tablename__ = "seen_slack_requests"

    key: Mapped[str] = mapped_column(String(100), primary_key=True)
    # Slack's timestamp (real time, as the signature window is measured), not the program's.
    signed_at: Mapped[datetime] = mapped_column(index=True)


class OutboxMessage(Base):
    """One message to the outside (a Slack post, a webhook event, a candidate's SMS or
    e-mail), written in the transaction of the change it reports and sent by the notifier."""

    __tablename__ = "outbox"
    __table_args__ = (Index("ix_outbox_due", "status", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    # slack_post | webhook | sms | email
    kind: Mapped[str] = mapped_column(String(16))
    # A channel id, a URL or an address.
    target: Mapped[str] = mapped_column(Text)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    # Names the message for others that refer to it (a thread reply to a report's post);
    # a second message with the same key is not added.
    key: Mapped[str | None] = mapped_column(String(100), unique=True)
    # Messages with the same order key are sent one after the other, in id order.
    order_key: Mapped[str | None] = mapped_column(String(200), index=True)
    status: Mapped[OutboxStatus] = mapped_column(
        StrEnumColumn(OutboxStatus, 16), default=OutboxStatus.PENDING
    )
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime]
    next_attempt_at: Mapped[datetime]
    claimed_by: Mapped[str | None] = mapped_column(String(64))
    claimed_until: Mapped[datetime | None]
    error_code: Mapped[str | None] = mapped_column(String(64))
    error_message: Mapped[str | None] = mapped_column(Text)
    # What the receiver answered that others need (a Slack message's channel and ts).
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    sent_at: Mapped[datetime | None]
    updated_at: Mapped[datetime]
