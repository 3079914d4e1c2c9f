"""What candidates read, in their language (nb or en)."""

from __future__ import annotations

from notifications.gsm7 import to_gsm7

LANGUAGES = ("nb", "en")

SMS_BODY = {
    "nb": "Eksamen {code}: du har en ny beskjed. Les den her: {link}",
    "en": "Exam {code}: you have a new notice. Read it here: {link}",
}
EMAIL_SUBJECT = {
    "nb": "Ny beskjed: eksamen {code}",
    "en": "New notice: exam {code}",
}
EMAIL_BODY = {
    "nb": "Ny beskjed til deg som tar eksamen {code}:\n\n{text}\n\n"
    "Alle beskjeder for eksamenen: {link}\n",
    "en": "A new notice for you as a candidate in exam {code}:\n\n{text}\n\n"
    "All notices for the exam: {link}\n",
}


def language_of(value: str | None) -> str:
    return value if value in LANGUAGES else "nb"


def notice_text(*, text_nb: str, text_en: str, language: str) -> str:
    """The text in the candidate's language, else the one that was written."""
    return notice_in(text_nb=text_nb, text_en=text_en, language=language)[0]


def notice_in(*, text_nb: str, text_en: str, language: str) -> tuple[str, str]:
    """``notice_text`` and the language it is in."""
    language = language_of(language)
    texts = {"nb": text_nb.strip(), "en": text_en.strip()}
    if texts[language]:
        return texts[language], language
    other = "nb" if language == "en" else "en"
    return texts[other], other


def notice_link(*, public_url: str, token: str, notice_id: int) -> str:
    # The fragment jumps to the notice on the page and makes each SMS body unique per
    # notice, which is what reconciliation matches an uncertain send by.
    return f"{public_url.rstrip('/')}/notices/{token}#n{notice_id}"


def sms_body(*, language: str, test_code: str, link: str) -> str:
    return to_gsm7(SMS_BODY[language_of(language)].format(code=test_code, link=link))


def email_subject(*, language: str, test_code: str) -> str:
    return EMAIL_SUBJECT[language_of(language)].format(code=test_code)


def email_body(*, language: str, test_code: str, text: str, link: str) -> str:
    return EMAIL_BODY[language_of(language)].format(code=test_code, text=text, link=link)
