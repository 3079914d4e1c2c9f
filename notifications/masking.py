"""Personal data as logs and Slack may show it: phone numbers to their last digits, e-mail
addresses to their first letter and domain, candidates' page links without their token.

``scrub`` masks all three wherever they occur in a text that examdesk did not write itself
(a provider's error message, a message body written to the log).
"""

from __future__ import annotations

import re

MASK = "•"
# What stands where retention erased a phone number or e-mail address (commands.retention).
ERASED = "erased"
# A phone number as people and providers write it: 8 to 15 digits, an optional +, single
# spaces between groups ("+47 912 34 567"). Dates and times (with - and :) do not match.
_PHONE = re.compile(r"(?<![\w+•])\+?[0-9](?: ?[0-9]){7,14}(?![\w•])", re.ASCII)
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
# The token of a candidate's page is the secret; the rest of the link is not.
_PAGE_TOKEN = re.compile(r"(/notices/)[A-Za-z0-9_-]+")


def mask_phone(phone: str | None) -> str:
    if not phone:
        return "none"
    if phone == ERASED:
        return ERASED
    digits = phone.lstrip("+")
    keep = 2
    return "+" + MASK * max(len(digits) - keep, 0) + digits[-keep:]


def mask_email(email: str | None) -> str:
    if email == ERASED:
        return ERASED
    if not email or "@" not in email:
        return "none"
    local, domain = email.split("@", 1)
    return f"{local[:1]}{MASK * 3}@{domain}"


def mask_address(address: str | None) -> str:
    """A phone number or e-mail address, whichever it is."""
    if address and "@" in address:
        return mask_email(address)
    return mask_phone(address and "".join(c for c in address if c.isdigit() or c == "+"))


def mask_link(link: str) -> str:
    return _PAGE_TOKEN.sub(lambda m: m[1] + MASK * 3, link)


def scrub(text: str, *, address: str | None = None) -> str:
    """``text`` with every phone number, e-mail address and page token in it masked.

    ``address``, when given, is masked wherever it appears too, whatever its form.
    """
    if address:
        text = text.replace(address, mask_address(address))
    text = _EMAIL.sub(lambda m: mask_email(m[0]), text)
    text = _PHONE.sub(lambda m: mask_phone(m[0].replace(" ", "")), text)
    return mask_link(text)
