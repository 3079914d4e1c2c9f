"""Notices in both languages (R13, R14): `/notice TEST nb: TEKST en: TEXT` and the report form
give each candidate their own; a text in one language only reaches everybody as written,
and the confirmation says which language it is in and who reads another one."""

from __future__ import annotations

import pytest
from conftest import OSLO, TEACHER
from sqlalchemy import func, select

from commands import candidate_page
from commands.context import Ctx
from commands.errors import InvalidInput
from commands.notice import Texts, guess_language, parse_texts, send
from commands.question_error import report
from notifications import inapp, texts
from store.models import Candidate, Notice, QuestionErrorReport

CODE = "TDT4100-2026H"


def _exam(world) -> None:
    world.add_test(CODE)
    world.add_candidates(CODE, ["10001", "10002"], language="nb")
    world.add_candidates(CODE, ["10003"], language="en")


def _page(world, number: str) -> str:
    """The candidate's page as the web route renders it."""
    with world.factory() as s:
        token = s.scalar(select(Candidate.notice_token).where(Candidate.number == number))
        candidate = inapp.find_candidate(db_session=s, token=token)
        data = candidate_page.page_data(
            db_session=s, candidate=candidate, now=world.now, support_contact=None
        )
        return inapp.render(data, token=token, tz=OSLO, now=world.now).html


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "nb: Oppgave 2: bruk kg. en: Task 2: use kg.",
            Texts("Oppgave 2: bruk kg.", "Task 2: use kg."),
        ),
        (
            "EN: Task 2: use kg.  NB: Oppgave 2: bruk kg.",
            Texts("Oppgave 2: bruk kg.", "Task 2: use kg."),
        ),
        ("en: Task 2: use kg.", Texts("", "Task 2: use kg.")),
        # "en:" inside a word, or a second "nb:", is text, not a marker.
        ("nb: Se rekkefølgen: nb: 1, 2", Texts("Se rekkefølgen: nb: 1, 2", "")),
        ("Oppgave 2: bruk kg, ikke g.", Texts("Oppgave 2: bruk kg, ikke g.", "", guessed=True)),
        ("Task 2: use kg, not g.", Texts("", "Task 2: use kg, not g.", guessed=True)),
    ],
)
def test_notice_text_is_split_by_language(text, expected):
    assert parse_texts(text) == expected


@pytest.mark.parametrize(
    ("text", "wrong"),
    [
        ("nb:", "Norwegian text after `nb:` is empty"),
        ("nb: Oppgave 2. en:", "English text after `en:` is empty"),
        ("en:    nb: Oppgave 2.", "English text after `en:` is empty"),
        ("nb: " + "x" * 2001, "shorten it to 2000 characters or fewer"),
    ],
)
def test_bad_language_parts_are_refused_with_what_to_do(world, text, wrong):
    _exam(world)
    with pytest.raises(InvalidInput, match=wrong):
        parse_texts(text)
    reply = world.run(f"/notice {CODE} {text}", confirmed=True)
    assert not reply.ok and wrong.split()[0] in reply.text
    with world.factory() as s:
        assert s.scalar(select(func.count()).select_from(Notice)) == 0


def test_an_unmarked_text_is_judged_by_its_words():
    assert guess_language("Husk å levere før fristen.") == "nb"
    assert guess_language("The deadline for task 4 is moved, please read it.") == "en"
    assert guess_language("n = 10") == "nb"  # nothing to go by: the office's language


def test_r13_both_languages_each_candidate_reads_theirs(world):
    _exam(world)
    command = f"/notice {CODE} nb: Oppgave 3b: bruk n = 10. en: Task 3b: use n = 10."
    preview = world.run(command)
    assert preview.needs_confirmation
    assert "Norwegian text for 2 candidates, English text for 1 candidate." in preview.text
    assert "> Oppgave 3b: bruk n = 10." in preview.text and "> Task 3b: use n = 10." in preview.text
    done = world.run(command, confirmed=True)
    assert done.ok and "Norwegian text for 2 candidates" in done.text
    with world.factory() as s:
        notice = s.scalars(select(Notice)).one()
    assert (notice.text_nb, notice.text_en) == ("Oppgave 3b: bruk n = 10.", "Task 3b: use n = 10.")
    nb_page, en_page = _page(world, "10001"), _page(world, "10003")
    assert "Oppgave 3b: bruk n = 10." in nb_page and "Task 3b" not in nb_page
    assert "Task 3b: use n = 10." in en_page and "Oppgave 3b" not in en_page
    assert "only" not in en_page.split('id="notices"')[1]  # no "in Norwegian only" note


def test_r13_one_text_only_the_confirmation_says_its_language_and_who_reads_another(world):
    _exam(world)
    preview = world.run(f"/notice {CODE} Oppgave 2: bruk kg, ikke g.")
    assert (
        "The text is in Norwegian only (judged from its words; start it with `en:` if it is "
        "English): all candidates see it as written, also the 1 candidate whose language is "
        "English."
    ) in preview.text
    assert "`nb: TEKST en: TEXT`" in preview.text
    assert world.run(f"/notice {CODE} Oppgave 2: bruk kg, ikke g.", confirmed=True).ok
    with world.factory() as s:
        notice = s.scalars(select(Notice)).one()
    assert (notice.text_nb, notice.text_en) == ("Oppgave 2: bruk kg, ikke g.", "")
    english = _page(world, "10003")
    assert '<p class="text" lang="nb">Oppgave 2: bruk kg, ikke g.</p>' in english
    assert "This notice is in Norwegian only." in english

    marked = world.run(f"/notice {CODE} en: Task 2: use kg.")
    assert (
        "The text is in English only: all candidates see it as written, also the 2 candidates "
        "whose language is Norwegian."
    ) in marked.text


def test_one_language_for_a_test_whose_candidates_all_read_it(world):
    world.add_test(CODE)
    world.add_candidates(CODE, ["10001"], language="en")
    reply = world.run(f"/notice {CODE} Task 2: use kg, not g.")
    assert "English only" in reply.text and "all candidates have English as their language" in (
        reply.text
    )


def test_r14_report_in_both_languages_from_the_command_and_the_send_receipt(world):
    """`/question-error` takes `nb:`/`en:` like `/notice`; the report's Slack message and the
    receipt of sending it say who reads which text."""
    _exam(world)
    world.add_staff(TEACHER, "teacher")
    world.at("2026-12-01 10:00")
    reply = world.run(
        f"/question-error {CODE} nb: Oppgave 2: bruk kg. en: Task 2: use kg.", actor=TEACHER
    )
    assert reply.ok, reply.text
    assert reply.data["text_nb"] == "Oppgave 2: bruk kg." and reply.data["text_en"] == (
        "Task 2: use kg."
    )
    assert reply.data["language_note"] == (
        "Norwegian text for 2 candidates, English text for 1 candidate."
    )
    with world.factory() as s:
        made = report(
            Ctx(db_session=s, actor=TEACHER, tz=OSLO, now=world.now),
            test_code=CODE,
            text_en="Task 5: the figure is upside down.",
        )
        s.commit()
        sent = send(world.ctx(s), report_id=made.data["report_id"])
        s.commit()
        stored = s.get(QuestionErrorReport, made.data["report_id"])
    assert (stored.text_nb, stored.text_en) == ("", "Task 5: the figure is upside down.")
    assert "The text is in English only" in sent.text
    assert "also the 2 candidates whose language is Norwegian" in sent.text
    assert "This notice is in English only." not in _page(world, "10003")
    assert "Denne beskjeden finnes bare på engelsk." in _page(world, "10001")


def test_r13_the_email_announcing_a_notice_is_in_the_candidates_language():
    """The e-mail (R13, long home exams) carries the candidate's text in their words; the
    SMS only says that a notice waits, in their language."""
    both = {"text_nb": "Oppgave 2: bruk kg.", "text_en": "Task 2: use kg."}
    link = "https://exams.example.org/notices/tok#n1"
    for language, text, subject, sms in (
        ("nb", "Oppgave 2: bruk kg.", "Ny beskjed: eksamen T-1", "Eksamen T-1: du har en ny"),
        ("en", "Task 2: use kg.", "New notice: exam T-1", "Exam T-1: you have a new"),
    ):
        shown = texts.notice_text(**both, language=language)
        body = texts.email_body(language=language, test_code="T-1", text=shown, link=link)
        assert shown == text and text in body and link in body
        assert texts.email_subject(language=language, test_code="T-1") == subject
        assert texts.sms_body(language=language, test_code="T-1", link=link).startswith(sms)
    # Written in Norwegian only: the English candidate's e-mail has it as written.
    assert texts.notice_in(text_nb="Oppgave 2.", text_en="", language="en") == ("Oppgave 2.", "nb")
