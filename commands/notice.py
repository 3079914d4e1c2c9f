"""`/notice TEST text`: a notice to every candidate of a test (R13), sent by support (R14, R15).

The first call only counts (in-app notices, SMS, e-mails, who has no usable address) and asks
for confirmation; the confirmed call writes the whole outbox in this command's transaction.
Candidates without a usable phone number (or e-mail address) get the in-app notice and a
delivery row marked failed "no usable number", so they are listed in every summary.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from commands import audit
from commands.context import Ctx
from commands.errors import InvalidInput, Refused, concerning
from commands.language import N_, _, ngettext, number
from commands.lookup import get_test
from commands.permissions import require_support
from commands.reply import Confirm, Reply, listed
from commands.text import refuse_direction_controls, trimmed
from notifications import fanout
from notifications.channels import SMS, Outside
from store.models import Test

USAGE = N_(
    "Usage: /notice TEST text   or   /notice TEST nb: TEKST en: TEXT\n"
    "  Sends the text to every candidate of the test: in the exam app, plus an SMS saying a\n"
    "  notice is waiting (school exams, home exams of 6 hours or less) or an e-mail (longer\n"
    "  home exams, assignments, theses). Shows the counts and asks to confirm first.\n"
    "  With `nb:` and `en:` each candidate reads their language; a text in one language\n"
    "  only is shown to everybody as written.\n"
    "  Example: /notice TDT4100-2026H nb: Oppgave 3b: bruk n = 10. en: Task 3b: use n = 10."
)
MAX_TEXT = 2000
LISTED = 20


def language_name(language: str) -> str:
    return _("Norwegian") if language == "nb" else _("English")


# `nb:` or `en:` where a word starts: the start of each language's text.
_MARKER = re.compile(r"(?i)(?<!\S)(nb|en):")


# Common words of one language and not the other, to tell which one an unmarked text is in.
def _common(words: str) -> frozenset[str]:
    return frozenset(words.split())


_WORDS = {
    "nb": _common(
        "og ikke er på skal det som med til av har kan må du dere alle oppgave oppgaven "
        "oppgavene svaret svar bruk eksamen feil riktig står gjelder ved være blir eller fra "
        "etter før denne dette skulle mellom enn også nå ny nye spørsmål en et"
    ),
    "en": _common(
        "the and not is are on should it with of has can must you all task tasks question "
        "answer use exam error wrong correct says applies be or from after before this that "
        "instead please also now new read than"
    ),
}


@dataclass(frozen=True)
class Texts:
    """A notice's text in each language; empty where it was not written."""

    nb: str
    en: str
    # No `nb:`/`en:` was written: the one text's language was told from its words.
    guessed: bool = False

    @property
    def languages(self) -> list[str]:
        return [language for language in ("nb", "en") if getattr(self, language)]


def guess_language(text: str) -> str:
    """nb or en, from the text's letters and common words; Norwegian when unsure."""
    words = re.findall(r"[a-zæøå]+", text.lower())
    if any(letter in text.lower() for letter in "æøå"):
        return "nb"
    scores = {language: sum(w in common for w in words) for language, common in _WORDS.items()}
    return "en" if scores["en"] > scores["nb"] else "nb"


def parse_texts(text: str) -> Texts:
    """``nb: TEKST en: TEXT`` (either order, either alone) or one unmarked text."""
    text = trimmed(text)
    first = _MARKER.match(text)
    if first is None:
        text = check_text(text)
        language = guess_language(text)
        return Texts(**{language: text, "nb" if language == "en" else "en": ""}, guessed=True)
    language = first.group(1).lower()
    other = "en" if language == "nb" else "nb"
    second = next(
        (m for m in _MARKER.finditer(text, first.end()) if m.group(1).lower() == other), None
    )
    parts = {
        language: text[first.end() : second.start() if second else None],
        other: text[second.end() :] if second else "",
    }
    for name, part in parts.items():
        if (name == language or second) and not trimmed(part):
            raise InvalidInput(
                _(
                    "The {language} text after `{marker}:` is empty. Write it, or leave "
                    "`{marker}:` out to send the other text to everybody."
                ).format(language=language_name(name), marker=name),
                field=f"text_{name}",
            )
    checked = {}
    for name, part in parts.items():
        with concerning(f"text_{name}"):
            checked[name] = check_text(part) if trimmed(part) else ""
    return Texts(nb=checked["nb"], en=checked["en"])


def _candidates(n: int) -> str:
    return ngettext("{n} candidate", "{n} candidates", n).format(n=number(n))


def language_note(plan: fanout.Plan, texts: Texts) -> str:
    """Who reads which text: the confirmation says it before anything is sent."""
    counts = plan.languages
    if not texts.languages:
        return ""
    if len(texts.languages) == 2:
        return _("Norwegian text for {nb}, English text for {en}.").format(
            nb=_candidates(counts["nb"]), en=_candidates(counts["en"])
        )
    language = texts.languages[0]
    other = "en" if language == "nb" else "nb"
    name, other_name = language_name(language), language_name(other)
    note = _("The text is in {language} only").format(language=name)
    if texts.guessed:
        note += " " + _(
            "(judged from its words; start it with `{marker}:` if it is {other})"
        ).format(marker=other, other=other_name)
    if not counts[other]:
        return (
            note
            + ": "
            + _("all candidates have {language} as their language.").format(language=name)
        )
    return (
        note
        + ": "
        + _(
            "all candidates see it as written, also the {candidates} whose language is "
            "{other}. To give them a text of their own: `nb: TEKST en: TEXT`."
        ).format(candidates=_candidates(counts[other]), other=other_name)
    )


def run(ctx: Ctx, args: list[str], *, confirmed: bool = False) -> Reply:
    if len(args) < 2:
        raise InvalidInput(_("Give the test code and then the text for the candidates."), USAGE)
    test_code, *words = args
    db = ctx.db_session
    require_support(db_session=db, user_id=ctx.actor, doing=_("send notices to candidates"))
    test = get_test(db_session=db, test_code=test_code)
    texts = parse_texts(" ".join(words))
    for language in texts.languages:
        with concerning(f"text_{language}"):
            refuse_direction_controls(
                getattr(texts, language), what=_("The notice"), outcome=_("Nothing was sent.")
            )
    command = " ".join(["/notice", *args])
    if not confirmed:
        return preview(ctx, test=test, texts=texts, command=command)
    result = publish(ctx, test=test, text_nb=texts.nb, text_en=texts.en)
    return receipt(ctx, test=test, result=result, texts=texts)


def check_text(text: str) -> str:
    text = trimmed(text)
    if not text:
        raise InvalidInput(_("The notice has no text. Write what the candidates should read."))
    if len(text) > MAX_TEXT:
        raise InvalidInput(
            _(
                "The notice is {length} characters long; shorten it to {most} characters or "
                "fewer, so it reads well on a phone. Nothing was sent."
            ).format(length=number(len(text)), most=number(MAX_TEXT))
        )
    return text


def counts_text(plan: fanout.Plan) -> str:
    """'120 in-app notices, 118 SMS, 0 e-mails' plus who cannot be reached outside the app."""
    line = _("{inapp} in-app notices, {sms} SMS, {email} e-mails").format(
        inapp=number(plan.candidates), sms=number(plan.sms), email=number(plan.emails)
    )
    if plan.unreachable:
        line += "\n" + _unreachable(plan.channel, plan.unreachable, counted=True)
    return line


def _unreachable(channel: str, numbers: list[str], *, counted: bool) -> str:
    if channel == SMS:
        said = (
            _("No usable phone number ({n}, in-app only): {numbers}")
            if counted
            else _("No usable phone number (in-app only): {numbers}")
        )
    else:
        said = (
            _("No usable e-mail address ({n}, in-app only): {numbers}")
            if counted
            else _("No usable e-mail address (in-app only): {numbers}")
        )
    return said.format(n=number(len(numbers)), numbers=listed(numbers))


def _not_configured_text(channel: str) -> str:
    if channel == SMS:
        return _("SMS: not configured — will only be written to the log")
    return _("E-mail: not configured — will only be written to the log")


def not_configured(plan: fanout.Plan, outside: Outside | None) -> str:
    """Said before sending when the plan's channel has no provider: nobody would be told."""
    if outside is None or not plan.reachable or not outside.logs_only(plan.channel):
        return ""
    return _not_configured_text(plan.channel)


def plan_data(plan: fanout.Plan, outside: Outside | None = None) -> dict[str, Any]:
    return {
        "test": plan.test_code,
        "inapp": plan.candidates,
        "sms": plan.sms,
        "email": plan.emails,
        "channel": plan.channel,
        "unreachable": plan.unreachable,
        "languages": plan.languages,
        "not_configured": not_configured(plan, outside),
    }


def _shown(texts: Texts) -> str:
    if len(texts.languages) == 1:
        return _quoted(texts.nb or texts.en)
    return f"nb:\n{_quoted(texts.nb)}\nen:\n{_quoted(texts.en)}"


def _quoted(text: str) -> str:
    # Every line: a quote ends at a line break, and the preview shows the text as sent.
    return "\n".join("> " + line for line in text.splitlines())


def _plan_or_refuse(ctx: Ctx, test: Test) -> fanout.Plan:
    plan = fanout.plan(db_session=ctx.db_session, test=test)
    if not plan.candidates:
        raise Refused(
            _(
                "Test {test} has no candidates, so there is nobody to tell. Import its "
                "candidates first (`examdesk import candidates FILE`)."
            ).format(test=test.code),
            field="test",
        )
    return plan


def preview(ctx: Ctx, *, test: Test, texts: Texts, command: str) -> Reply:
    plan = _plan_or_refuse(ctx, test)
    note = language_note(plan, texts)
    logged = not_configured(plan, ctx.outside)
    prompt = (
        _("Send this notice to all {count} candidates of {test}?").format(
            count=number(plan.candidates), test=test.code
        )
        + f"\n{counts_text(plan)}\n"
        + (f"{logged}\n" if logged else "")
        + f"{note}\n{_shown(texts)}"
    )
    return Reply(
        text=prompt + "\n" + _("Nothing is sent until you confirm."),
        kind="confirm",
        data=plan_data(plan, ctx.outside)
        | {
            "text": texts.nb or texts.en,
            "text_nb": texts.nb,
            "text_en": texts.en,
            "language_note": note,
        },
        confirm=Confirm(
            prompt=prompt,
            command=command,
            button=_("Send to {count} candidates").format(count=number(plan.candidates)),
        ),
    )


def publish(
    ctx: Ctx,
    *,
    test: Test,
    text_nb: str,
    text_en: str,
    report_id: int | None = None,
    slack_channel: str | None = None,
    slack_ts: str | None = None,
) -> fanout.FanOut:
    """Write the notice and its whole outbox in the command's transaction (R13)."""
    _plan_or_refuse(ctx, test)
    result = fanout.fan_out(
        db_session=ctx.db_session,
        test=test,
        text_nb=text_nb,
        text_en=text_en,
        created_by=ctx.actor,
        now=ctx.now,
        report_id=report_id,
        slack_channel=slack_channel,
        slack_ts=slack_ts,
    )
    audit.record(
        ctx,
        action="notice_sent",
        reason=text_nb or text_en,
        before={},
        after={"notice_id": result.notice_id, "report_id": report_id} | plan_data(result),
        test=test,
    )
    return result


def receipt(ctx: Ctx, *, test: Test, result: fanout.FanOut, texts: Texts) -> Reply:
    queued = (_("{n} SMS") if result.channel == SMS else _("{n} e-mails")).format(
        n=number(result.reachable)
    )
    note = language_note(result, texts)
    logged = not_configured(result, ctx.outside)
    text = (
        _("Notice #{id} to {test}: {inapp} in-app notices are up, {queued} queued").format(
            id=result.notice_id, test=test.code, inapp=number(result.candidates), queued=queued
        )
        + (f" ({logged})" if logged else "")
        + f".\n{note}"
    )
    if result.unreachable:
        text += "\n" + _unreachable(result.channel, result.unreachable, counted=False)
    text += "\n" + _(
        "If the error cost the candidates time, give it to all of them: "
        "`/incident-time {test} all add MINUTES reason`."
    ).format(test=test.code)
    return Reply(
        text=text,
        kind="receipt",
        data={"action": "notice", "notice_id": result.notice_id, "language_note": note}
        | plan_data(result, ctx.outside),
        log=[
            _(
                "{actor} sent notice #{id} to {count} candidates of {test} ({queued}, "
                "{unreachable} unreachable)"
            ).format(
                actor=f"<@{ctx.actor}>",
                id=result.notice_id,
                count=number(result.candidates),
                test=test.code,
                queued=queued,
                unreachable=number(len(result.unreachable)),
            )
        ],
        mentions=(ctx.actor,),
    )
