"""Personal data as Slack may show it: phone numbers masked to their last digits."""

from __future__ import annotations

# What stands where retention erased a phone number or e-mail address (commands.retention).
ERASED = "erased"


def mask_phone(phone: str | None) -> str:
    if not phone:
        return "none"
    if phone == ERASED:
        return ERASED
    digits = phone.lstrip("+")
    keep = 2
    return "+" + "•" * max(len(digits) - keep, 0) + digits[-keep:]


def mask_email(email: str | None) -> str:
    if email == ERASED:
        return ERASED
    if not email or "@" not in email:
        return "none"
    local, domain = email.split("@", 1)
    return f"{local[:1]}•••@{domain}"
