"""Personal data as Slack may show it: phone numbers masked to their last digits."""

from __future__ import annotations

from notifications.addresses import mask_phone

__all__ = ["mask_email", "mask_phone"]


def mask_email(email: str | None) -> str:
    if not email or "@" not in email:
        return "none"
    local, domain = email.split("@", 1)
    return f"{local[:1]}•••@{domain}"
