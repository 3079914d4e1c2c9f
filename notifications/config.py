"""What the notifier needs to know of the configuration.

``bot.config.Settings`` is one such object; notifications names the fields it reads here
instead of importing the bot's settings (the layout: notifications may import only store).
"""

from __future__ import annotations

from typing import Protocol

from pydantic import SecretStr


class NotifierConfig(Protocol):
    @property
    def twilio_account_sid(self) -> str | None: ...
    @property
    def twilio_auth_token(self) -> SecretStr | None: ...
    @property
    def twilio_from(self) -> str | None: ...
    @property
    def twilio_messaging_service_sid(self) -> str | None: ...
    @property
    def twilio_api_url(self) -> str: ...
    @property
    def smtp_url(self) -> SecretStr | None: ...
    @property
    def mail_from(self) -> str | None: ...
    @property
    def public_url(self) -> str: ...
    @property
    def sms_per_second(self) -> float: ...
