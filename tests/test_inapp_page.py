"""The candidate's page `GET /notices/{token}` and its read button `POST /notices/{token}/read`,
in real headless Chromium (Debian's, driven by Playwright) against the real server.

What it shows (R1–R3, R6, R7, R9, R13), in the candidate's language; that showing it never
marks anything read; that the button works without JavaScript; axe-core finds no WCAG 2.2 AA
violation at phone and desktop widths in both languages. Screenshots go to the test's
folder and, when EXAMDESK_SCREENSHOTS names a folder, there too.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from sqlalchemy import select
from starlette.applications import Starlette

from bot.config import Settings
from bot.deps import Deps
from bot.web import notices as web_notices
from store.models import Candidate, Notice, NoticeReceipt

CHROMIUM = os.environ.get("CHROMIUM_BIN") or shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-dev-shm-usage",
]
AXE = Path(__file__).resolve().parent.parent / ".ci/node/node_modules/axe-core/axe.min.js"
AXE_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa"]
SUPPORT_CONTACT = "+47 73 59 66 01"
# A phone's and a desktop's browser: the page counts "opened" only for a person's browser,
# and a headless one says "HeadlessChrome", which robots say too.
PHONE = {
    "viewport": {"width": 390, "height": 844},
    "device_scale_factor": 2,
    "is_mobile": True,
    "has_touch": True,
    "user_agent": "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Chrome/156.0.0.0 Mobile Safari/537.36",
}
DESKTOP = {
    "viewport": {"width": 1280, "height": 800},
    "user_agent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Chrome/156.0.0.0 Safari/537.36",
}
LONG_NOTICE = (
    "Oppgave 4 (termodynamikk): i deloppgave c skal varmekapasiteten være "
    "c_p = 4,18 kJ/(kg·K), ikke 41,8. Regn videre med riktig verdi; svar som bruker den gale "
    "verdien, blir rettet som om de brukte den riktige. "
    * 6
    + "https://example.org/eksamen/tdt4100/oppgave-4-vedlegg-med-en-svært-lang-adresse-uten-"
    "mellomrom-som-må-brytes-på-en-liten-skjerm"
)


def _missing(what: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{what} is missing in CI")
    pytest.skip(f"{what} is not installed")


class Server:
    def __init__(self, deps: Deps) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self.sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        app = Starlette(routes=web_notices.routes(deps))
        self.server = uvicorn.Server(
            uvicorn.Config(app, log_config=None, access_log=False, lifespan="off")
        )
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True
        )

    def __enter__(self) -> Server:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        # The browser keeps its connections open; waiting for them would take seconds.
        self.server.should_exit = self.server.force_exit = True
        self.thread.join(5)
        self.sock.close()


@pytest.fixture
def server(engine, session_factory) -> Iterator[Server]:
    deps = Deps(
        settings=Settings(examdesk_timezone="Europe/Oslo", support_contact=SUPPORT_CONTACT),
        engine=engine,
        session_factory=session_factory,
    )
    with Server(deps) as running:
        yield running


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    if not os.path.exists(CHROMIUM):
        _missing("chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("playwright (the test extra)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture(scope="session")
def axe_source() -> str:
    if not AXE.exists():
        _missing("axe-core (npm install --prefix .ci/node)")
    return AXE.read_text()


def open_page(browser, url: str, *, device: dict = PHONE, **options: Any):
    context = browser.new_context(**device, **options)
    page = context.new_page()
    response = page.goto(url)
    return context, page, response


def screenshot(page, tmp_path: Path, name: str) -> Path:
    shot = tmp_path / f"{name}.png"
    page.screenshot(path=str(shot), full_page=True)
    folder = os.environ.get("EXAMDESK_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(folder) / shot.name)
    return shot


def _exam(world, **test: Any) -> dict[str, str]:
    """A test with four candidates, two notices (one in both languages, one in Norwegian
    only, holding markup), and the candidates' page tokens by number."""
    code = world.add_test(**test)
    world.add_candidates(code, ["10001"], language="nb", extra_minutes=30)
    world.add_candidates(code, ["10002"], language="en", incident_minutes=10)
    world.add_candidates(code, ["10003"], language="nb")
    world.add_candidates(code, ["10004"], language="en")
    both = world.run(
        f"/notice {code} nb: Oppgave 3b: n = 10, ikke n = 100. en: Task 3b: n = 10, not n = 100.",
        confirmed=True,
    )
    assert both.ok, both.text
    world.now += timedelta(minutes=20)
    one = world.run(f"/notice {code} Oppgave 1 <b>er</b> endret: bruk kg, ikke g.", confirmed=True)
    assert one.ok, one.text
    with world.factory() as s:
        return {c.number: c.notice_token for c in s.scalars(select(Candidate))}


def receipts(world, token: str) -> list[tuple[int, Any, Any]]:
    with world.factory() as s:
        return list(
            s.execute(
                select(NoticeReceipt.notice_id, NoticeReceipt.opened_at, NoticeReceipt.read_at)
                .join(Candidate, Candidate.id == NoticeReceipt.candidate_id)
                .where(Candidate.notice_token == token)
                .order_by(NoticeReceipt.notice_id)
            )
        )


def plain(text: str) -> str:
    """Text with its spaces as a reader sees them (the page keeps "kl." and the time on one
    line with a no-break space)."""
    return " ".join(text.split())


def _text(page, selector: str) -> str:
    return plain(page.locator(selector).inner_text())


def test_r13_norwegian_page_on_a_phone(world, server, browser, tmp_path):
    """R1–R3, R13: number, test and title, deadline and how it is made up, notices newest
    first with the unread ones marked, in Norwegian, dates by Babel; the markup in a notice
    is shown as text."""
    tokens = _exam(world)
    context, page, response = open_page(browser, f"{server.url}/notices/{tokens['10001']}")
    assert response.status == 200
    assert page.locator("html").get_attribute("lang") == "nb"
    assert _text(page, "h1") == "TDT4100-2026H Object-oriented programming"
    assert _text(page, "#candidate") == "10001"
    # 13:00 + 15 min upload (R1) + 30 min extra (R3).
    assert _text(page, "#deadline") == "1. desember 2026 kl. 13:45"
    steps = _text(page, "#made-up")
    for part in (
        "Eksamenstiden slutter 1. desember 2026 kl. 13:00",
        "Tid til opplasting + 15 minutter",
        "Slutt for alle kandidater 1. desember 2026 kl. 13:15",
        "Ekstra eksamenstid (tilrettelegging) + 30 minutter",
        "Ekstra tid etter hendelse under eksamen ingen",
        "Din sluttid 1. desember 2026 kl. 13:45",
    ):
        assert part in steps
    assert _text(page, "#new-delivery") == "Ny innlevering er ikke åpnet."
    assert "leveres svaret ditt automatisk" in _text(page, "#at-deadline")  # R9
    assert _text(page, "#support") == "Rekk opp hånden og spør eksamensvakten i rommet."
    articles = page.locator("article.notice")
    assert articles.count() == 2
    newest, older = articles.nth(0), articles.nth(1)
    assert int(newest.get_attribute("id")[1:]) > int(older.get_attribute("id")[1:])
    assert "Oppgave 1 <b>er</b> endret" in newest.inner_text()  # shown, not rendered
    assert "Oppgave 3b: n = 10, ikke n = 100." in older.inner_text()
    assert page.locator("article.notice.unread .badge").count() == 2
    assert _text(page, ".unread-link") == "2 uleste beskjeder"
    # Nothing wider than the phone.
    assert page.evaluate("document.scrollingElement.scrollWidth") <= 390
    screenshot(page, tmp_path, "phone-nb")
    context.close()


def test_r13_english_page_on_a_desktop(world, server, browser, tmp_path):
    """An English candidate reads English, with English dates; a notice written only in
    Norwegian is shown as written, marked as Norwegian for screen readers and in words."""
    tokens = _exam(world)
    context, page, _ = open_page(browser, f"{server.url}/notices/{tokens['10002']}", device=DESKTOP)
    assert page.locator("html").get_attribute("lang") == "en"
    assert _text(page, "#candidate") == "10002"
    assert _text(page, "#deadline") == "1 December 2026 at 13:25"  # 13:15 + 10 incident
    assert "Extra time for an incident during the exam + 10 minutes" in _text(page, "#made-up")
    newest, older = page.locator("article.notice").all()
    assert "Task 3b: n = 10, not n = 100." in older.inner_text()
    assert "ikke n = 100" not in older.inner_text()
    assert newest.locator(".text").get_attribute("lang") == "nb"
    assert "This notice is in Norwegian only." in newest.inner_text()
    assert page.get_by_role("button", name="I have read this").count() == 2
    screenshot(page, tmp_path, "desktop-en")
    context.close()


def test_r7_reopened_candidate_sees_until_when_they_may_deliver(world, server, browser, tmp_path):
    """R6, R7, R9: after the ordinary end a home exam's candidate gets a new delivery for 45
    minutes: the page gives that deadline, says it replaces the end time, that the answer is
    delivered then (R9: a reopened answer is, even where the test does not deliver
    automatically), and that support is reached by phone (no invigilator at home)."""
    code = world.add_test(
        kind="home", start="2026-12-01 09:00", end="2026-12-01 13:00", auto_deliver=False
    )
    world.add_candidates(code, ["10001"], language="en", status="submitted")
    world.add_candidates(code, ["10002"], language="nb", status="submitted")
    world.at("2026-12-01 14:00")
    for number in ("10001", "10002"):
        reply = world.run(f"/reopen {code} {number} in 45m upload failed")
        assert reply.ok, reply.text
    with world.factory() as s:
        tokens = {c.number: c.notice_token for c in s.scalars(select(Candidate))}
    context, page, _ = open_page(browser, f"{server.url}/notices/{tokens['10001']}")
    assert _text(page, "#deadline") == "1 December 2026 at 14:45"
    assert _text(page, "#new-delivery") == (
        "New delivery is open for you. You may deliver again until 1 December 2026 at 14:45."
    )
    assert "New delivery, which applies instead 1 December 2026 at 14:45" in _text(page, "#made-up")
    assert "Time to upload + 30 minutes" in _text(page, "#made-up")  # R1: home ≤ 6 h
    assert "delivered automatically" in _text(page, "#at-deadline")
    assert _text(page, "#support") == f"Call exam support: {SUPPORT_CONTACT}"
    assert page.locator("#support a").get_attribute("href") == "tel:+4773596601"
    screenshot(page, tmp_path, "phone-en-reopened")
    context.close()
    context, page, _ = open_page(browser, f"{server.url}/notices/{tokens['10002']}", device=DESKTOP)
    assert _text(page, "#deadline") == "1. desember 2026 kl. 14:45"
    assert _text(page, "#support") == f"Ring eksamenssupport: {SUPPORT_CONTACT}"
    screenshot(page, tmp_path, "desktop-nb-reopened")
    context.close()


def test_r9_what_happens_at_the_deadline(world, server):
    """R9 in the candidate's words: a test without automatic delivery, a thesis, a no-limit
    reopening, and an answer already delivered."""
    manual = world.add_test("MAN-1", auto_deliver=False)
    thesis = world.add_test("THESIS-1", kind="thesis", end="2026-12-20 12:00")
    world.add_candidates(manual, ["1"], language="en")
    world.add_candidates(thesis, ["2"], language="en")
    world.add_candidates(manual, ["3"], language="en", status="submitted")
    world.add_candidates(manual, ["4"], language="en")
    assert world.run(f"/reopen {manual} 4 no-limit network trouble", confirmed=True).ok
    with world.factory() as s:
        tokens = {c.number: c.notice_token for c in s.scalars(select(Candidate))}
        s.execute(
            Candidate.__table__.update()
            .where(Candidate.number == "3")
            .values(submitted_at=world.now - timedelta(minutes=5))
        )
        s.commit()

    def at_deadline(number: str) -> str:
        html = httpx.get(f"{server.url}/notices/{tokens[number]}").text
        return plain(re.search(r'<p id="at-deadline">(.*?)</p>', html, re.S).group(1))

    assert at_deadline("1") == (
        "Your answer is not delivered automatically. Deliver it before the deadline."
    )
    assert at_deadline("2") == at_deadline("1")  # a thesis never is
    assert at_deadline("3") == "Your answer is delivered (1 December 2026 at 09:55)."
    assert at_deadline("4") == (
        "Your answer is not delivered automatically. Deliver it when you are done."
    )
    page = httpx.get(f"{server.url}/notices/{tokens['4']}").text
    assert '<p class="big" id="deadline">No time limit</p>' in page
    assert "with no time limit. Exam support will close it." in page


def test_r13_showing_the_page_marks_nothing_read(world, server, browser):
    """A GET never marks a notice read: not link previews (Slack, WhatsApp, …), not a HEAD,
    not the candidate's own browser. The browser's first view is kept as "opened"."""
    tokens = _exam(world)
    url = f"{server.url}/notices/{tokens['10001']}"
    for agent in (
        "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)",
        "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)",
        "WhatsApp/2.23.20.0 A",
        "Twitterbot/1.0",
        "TelegramBot (like TwitterBot)",
        "Mozilla/5.0 (Windows NT 6.1; WOW64) SkypeUriPreview Preview/0.5",
        "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
        "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
    ):
        assert httpx.get(url, headers={"user-agent": agent}).status_code == 200
    assert httpx.head(url, headers={"user-agent": PHONE["user_agent"]}).status_code == 200
    prefetch = {"user-agent": PHONE["user_agent"], "sec-purpose": "prefetch"}
    assert httpx.get(url, headers=prefetch).status_code == 200
    assert all(
        opened is None and read is None for _, opened, read in receipts(world, tokens["10001"])
    )

    context, page, _ = open_page(browser, url)
    page.reload()
    context.close()
    seen = receipts(world, tokens["10001"])
    assert all(opened is not None and read is None for _, opened, read in seen)
    # Other candidates' receipts are untouched.
    assert all(o is None and r is None for _, o, r in receipts(world, tokens["10002"]))


def test_r13_read_button_works_without_javascript(world, server, browser, tmp_path):
    """The button is a plain form: with JavaScript off, pressing it records read_at for that
    notice only and brings the candidate back to it on the page, now marked read."""
    tokens = _exam(world)
    context, page, _ = open_page(
        browser, f"{server.url}/notices/{tokens['10002']}", java_script_enabled=False
    )
    assert page.evaluate("1 + 1") == 2  # Playwright's own evaluate still works
    assert page.locator("noscript, script").count() == 0
    newest_id = int(page.locator("article.notice").first.get_attribute("id")[1:])
    world.now += timedelta(minutes=3)
    with page.expect_navigation():
        page.locator(f"#n{newest_id} button").click()
    assert page.url.endswith(f"/notices/{tokens['10002']}#n{newest_id}")
    newest = page.locator(f"#n{newest_id}")
    assert "unread" not in newest.get_attribute("class")
    assert "You have confirmed reading this (1 December 2026 at 10:23)." in plain(
        newest.inner_text()
    )
    assert page.locator("article.notice.unread").count() == 1
    assert _text(page, ".unread-link") == "1 unread notice"
    screenshot(page, tmp_path, "phone-en-after-read")
    context.close()
    by_notice = {notice_id: read for notice_id, _, read in receipts(world, tokens["10002"])}
    assert by_notice[newest_id] is not None
    assert [read for notice_id, read in by_notice.items() if notice_id != newest_id] == [None]


def test_read_needs_the_candidates_own_token_and_notice(world, server):
    """The token in the path is the credential: an unknown token, or another candidate's
    notice, gets the same plain 404 and changes nothing; a second press keeps the first."""
    tokens = _exam(world)
    with world.factory() as s:
        notice_ids = list(s.scalars(select(Notice.id).order_by(Notice.id)))
    url = f"{server.url}/notices/{tokens['10001']}/read"
    for target, form in (
        (f"{server.url}/notices/{'x' * 43}/read", {"notice": str(notice_ids[0])}),
        (url, {"notice": "999999"}),
        (url, {"notice": "one"}),
        (url, {}),
    ):
        response = httpx.post(target, data=form)
        assert response.status_code == 404
        assert "TDT4100" not in response.text
    assert all(read is None for _, _, read in receipts(world, tokens["10001"]))
    response = httpx.post(url, data={"notice": str(notice_ids[0])})
    assert response.status_code == 303
    assert response.headers["location"] == f"../{tokens['10001']}#n{notice_ids[0]}"
    first = receipts(world, tokens["10001"])[0][2]
    world.now += timedelta(minutes=5)
    assert httpx.post(url, data={"notice": str(notice_ids[0])}).status_code == 303
    assert receipts(world, tokens["10001"])[0][2] == first
    assert httpx.get(url).status_code == 405  # reading is a POST only


def _post_raw(server: Server, path: str, head: str, body: bytes = b"") -> bytes:
    """The start of the answer to a request written by hand; b"" when there is none."""
    with socket.create_connection(("127.0.0.1", int(server.url.rsplit(":", 1)[1])), 10) as sock:
        sock.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\n{head}\r\n".encode() + body)
        sock.shutdown(socket.SHUT_WR)
        return sock.recv(4096)


def test_read_takes_a_form_of_its_size_only_and_a_sender_gone_leaves_one_line(
    world, server, caplog
):
    """The read button's form is one short field. A body much larger is refused (413) as
    soon as that is known, by its Content-Length before any of it is read, else while it
    streams, and never held whole; a sender who hangs up mid-body leaves one line of ours,
    not a traceback. The button still works afterwards."""
    tokens = _exam(world)
    path = f"/notices/{tokens['10001']}/read"
    urlencoded = "application/x-www-form-urlencoded"
    form = f"Content-Type: {urlencoded}\r\n"
    answer = _post_raw(server, path, form + "Content-Length: 314572800\r\n")
    assert answer.startswith(b"HTTP/1.1 413 ")
    sent = 0

    def chunks() -> Iterator[bytes]:
        nonlocal sent
        for _ in range(100):
            sent += 1
            yield b"x" * (1024 * 1024)

    try:
        streamed = httpx.post(
            f"{server.url}{path}", content=chunks(), headers={"Content-Type": urlencoded}
        )
        assert streamed.status_code == 413
    except httpx.TransportError:
        pass  # closed while our side was still writing: the 413 was the server's answer
    assert sent < 32, sent
    assert _post_raw(server, path, form + "Content-Length: 1000\r\n", b"notice=1") == b""
    deadline = time.monotonic() + 10
    while not any(r.name == "bot.web.notices" for r in caplog.records):
        assert time.monotonic() < deadline, [r.getMessage() for r in caplog.records]
        time.sleep(0.02)
    assert not [r.getMessage() for r in caplog.records if r.exc_info or r.levelno >= 40]
    with world.factory() as s:
        notice_id = s.scalar(select(Notice.id).order_by(Notice.id))
    assert httpx.post(f"{server.url}{path}", data={"notice": str(notice_id)}).status_code == 303


@pytest.mark.parametrize(
    ("number", "device", "scheme"),
    [
        ("10001", "phone", "light"),
        ("10002", "phone", "light"),
        ("10001", "desktop", "light"),
        ("10002", "desktop", "dark"),
    ],
)
def test_page_has_no_wcag_22_aa_violations(
    world, server, browser, axe_source, tmp_path, number, device, scheme
):
    """axe-core on the page with a long notice and a reopened candidate, phone and desktop,
    Norwegian and English, light and dark: no WCAG 2.2 AA violation."""
    tokens = _exam(world)
    assert world.run(
        f"/notice TDT4100-2026H nb: {LONG_NOTICE} en: Task 4: see the Norwegian text.",
        confirmed=True,
    ).ok
    world.at("2026-12-01 14:00")
    assert world.run(f"/reopen TDT4100-2026H {number} in 30m power cut").ok
    context, page, _ = open_page(
        browser,
        f"{server.url}/notices/{tokens[number]}",
        device=PHONE if device == "phone" else DESKTOP,
        color_scheme=scheme,
        # Only so axe can be added; the page itself allows no script at all.
        bypass_csp=True,
    )
    page.add_script_tag(content=axe_source)
    result = page.evaluate(
        "tags => axe.run(document, {runOnly: {type: 'tag', values: tags}})", AXE_TAGS
    )
    violations = [
        (v["id"], v["impact"], [n["target"] for n in v["nodes"]]) for v in result["violations"]
    ]
    assert violations == []
    assert result["passes"], "axe ran no check"
    width = PHONE["viewport"]["width"] if device == "phone" else DESKTOP["viewport"]["width"]
    assert page.evaluate("document.scrollingElement.scrollWidth") <= width
    screenshot(page, tmp_path, f"{device}-{number}-{scheme}-long")
    context.close()


def test_page_security_headers_and_csp_hold_in_the_browser(world, server, browser):
    """Strict headers; in Chromium the CSP lets the page's one stylesheet apply (its hash
    matches) and refuses any script."""
    tokens = _exam(world)
    url = f"{server.url}/notices/{tokens['10001']}"
    response = httpx.get(url)
    headers = response.headers
    csp = headers["content-security-policy"]
    for directive in ("default-src 'none'", "frame-ancestors 'none'", "form-action 'self'"):
        assert directive in csp
    assert re.search(r"style-src 'sha256-[A-Za-z0-9+/]+=*'", csp)
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["referrer-policy"] == "no-referrer"
    assert headers["cache-control"] == "no-store"
    assert headers["content-type"] == "text/html; charset=utf-8"
    messages: list[str] = []
    context, page, _ = open_page(browser, url)
    page.on("console", lambda message: messages.append(message.text))
    page.reload()
    assert page.evaluate("getComputedStyle(document.body).fontSize") == "20px"
    ran = page.evaluate(
        """() => { const s = document.createElement('script');
        s.textContent = 'window.injected = true'; document.head.append(s);
        return window.injected === true; }"""
    )
    assert ran is False
    context.close()
    assert not [m for m in messages if "style" in m and "Content Security Policy" in m]


def test_unknown_token_is_a_plain_404_that_leaks_nothing(world, server, browser):
    _exam(world)
    for token in ("nope", "x" * 43, "x" * 500):
        response = httpx.get(f"{server.url}/notices/{token}")
        assert response.status_code == 404
        assert "TDT4100" not in response.text and "oppgave" not in response.text.lower()
        assert "default-src 'none'" in response.headers["content-security-policy"]
    context, page, response = open_page(browser, f"{server.url}/notices/{'y' * 43}")
    assert response.status == 404
    assert page.locator("#not-found").count() == 1
    context.close()


def test_candidate_without_notices_sees_an_empty_list(world, server):
    code = world.add_test()
    world.add_candidates(code, ["10001"], language="en")
    with world.factory() as s:
        token = s.scalar(select(Candidate.notice_token))
    response = httpx.get(f"{server.url}/notices/{token}")
    assert response.status_code == 200 and "No notices yet." in response.text
    assert 'class="unread-link"' not in response.text
