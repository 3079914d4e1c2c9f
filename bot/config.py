"""Configuration from the environment (and a `.env` file). Secrets come only from here."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from notifications.channels import Outside


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    database_url: str = "sqlite:///examdesk.db"
    examdesk_timezone: str = "Europe/Oslo"
    slack_bot_token: SecretStr | None = None
    slack_signing_secret: SecretStr | None = None
    slack_app_token: SecretStr | None = None
    slack_api_url: str = "https://slack.com/api/"
    slack_support_channel: str | None = None
    twilio_account_sid: str | None = None
    twilio_auth_token: SecretStr | None = None
    twilio_from: str | None = None
    twilio_messaging_service_sid: str | None = None
    twilio_api_url: str = "https://api.twilio.com"
    sms_per_second: float = Field(default=10, gt=0, le=1000)
    smtp_url: SecretStr | None = None
    mail_from: str | None = None
    public_url: str = "http://localhost:3000"
    port: int = Field(default=3000, ge=1, le=65535)
    registry_dir: Path | None = None
    # Days after a test's end until its candidates' contact data is erased (retention).
    retention_days: int = Field(default=60, ge=1, le=3650)
    # How candidates reach exam support: a phone number, an e-mail address, a URL or words.
    support_contact: str | None = None
    # Receivers of every change as a Standard Webhooks event, separated by spaces; the secret
    # is whsec_ + base64. Empty: no events.
    webhook_urls: str = ""
    webhook_secret: SecretStr | None = None
    # The notifier's knobs (notifications.dispatch.Tuning); unset: its production defaults.
    notifier_batch: int | None = None
    notifier_batch_seconds: float | None = None
    notifier_claim_seconds: float | None = None
    notifier_send_timeout: float | None = None
    notifier_max_attempts: int | None = None
    notifier_backoff_base: float | None = None
    notifier_backoff_cap: float | None = None
    notifier_reconcile_after: float | None = None
    notifier_poll_seconds: float | None = None
    notifier_maintain_seconds: float | None = None
    notifier_heartbeat_seconds: float | None = None
    notifier_lease_seconds: float | None = None
    notifier_in_flight: int | None = None

    @field_validator("examdesk_timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"'{value}' is not a time zone name; use an IANA name like Europe/Oslo"
            ) from None
        return value

    @field_validator(
        "slack_bot_token",
        "slack_signing_secret",
        "slack_app_token",
        "slack_support_channel",
        "twilio_account_sid",
        "twilio_auth_token",
        "twilio_from",
        "twilio_messaging_service_sid",
        "smtp_url",
        "mail_from",
        "registry_dir",
        "support_contact",
        "notifier_batch",
        "notifier_batch_seconds",
        "notifier_claim_seconds",
        "notifier_send_timeout",
        "notifier_max_attempts",
        "notifier_backoff_base",
        "notifier_backoff_cap",
        "notifier_reconcile_after",
        "notifier_poll_seconds",
        "notifier_maintain_seconds",
        "notifier_heartbeat_seconds",
        "notifier_lease_seconds",
        "notifier_in_flight",
        mode="before",
    )
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    @cached_property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.examdesk_timezone)

    @cached_property
    def outside(self) -> Outside:
        return Outside.from_settings(self)

    @property
    def slack_api_base_url(self) -> str:
        """SLACK_API_URL as the Web API client wants it: ending in a slash."""
        url = self.slack_api_url
        return url if url.endswith("/") else url + "/"

    @staticmethod
    def secret(value: SecretStr | None) -> str | None:
        return value.get_secret_value() if value is not None else None
