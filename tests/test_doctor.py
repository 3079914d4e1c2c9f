"""`examdesk doctor` against local stand-ins of every service it asks: the fake Slack and the
fake Twilio, an SMTP server (aiosmtpd) and a webhook receiver that verifies Standard Webhooks
signatures. Each failure is checked with its message and what to do; nothing is sent."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from fake_slack import FakeSlack
from fake_twilio import ACCOUNT_SID, AUTH_TOKEN, FakeTwilio
from sqlalchemy import text
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from bot.config import Settings
from bot.runtime import doctor
from commands.registry import CANDIDATE_COLUMNS, TEST_COLUMNS
from store import migrate
from store.db import make_engine

CHANNEL = "C0SUPPORT"
SECRET = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSwMfKQ9r8GKYo="
OTHER_SECRET = "whsec_" + "c2VjcmV0LW9mLWFub3RoZXItZGVwbG95bWVudC0wMQ=="
SMTP_USER, SMTP_PASSWORD = "exams", "s3cret pass"
SIGNING_SECRET = "0123456789abcdef0123456789abcdef"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------- stand-ins


@dataclass
class Receiver:
    """A webhook receiver: verifies each event with ``secret`` and answers ``status``."""

    secret: str = SECRET
    status: int = 204
    events: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    event = Webhook(receiver.secret).verify(body, dict(self.headers))
                except WebhookVerificationError:
                    status = 401
                else:
                    receiver.events.append(event)
                    status = receiver.status
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/examdesk/events"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class MailHandler:
    def __init__(self) -> None:
        self.messages: list[Any] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(envelope)
        return "250 OK"


def _smtp_login(server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any):
    ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (
        SMTP_USER.encode(),
        SMTP_PASSWORD.encode(),
    )
    # handled=False: aiosmtpd itself answers a failed login with 535, as mail servers do.
    return AuthResult(success=ok, handled=False)


@dataclass
class Services:
    slack: FakeSlack
    twilio: FakeTwilio
    mail: MailHandler
    smtp_port: int
    receiver: Receiver
    registry: Path

    def settings(self, **overrides: Any) -> Settings:
        """A deployment with every service set up and working, changed by ``overrides``."""
        values: dict[str, Any] = {
            "database_url": overrides.pop("database_url"),
            "examdesk_timezone": "Europe/Oslo",
            "slack_bot_token": "xoxb-1-doctor",
            "slack_app_token": "xapp-1-doctor",
            "slack_signing_secret": None,
            "slack_api_url": self.slack.api_url,
            "slack_support_channel": CHANNEL,
            "twilio_account_sid": ACCOUNT_SID,
            "twilio_auth_token": AUTH_TOKEN,
            "twilio_from": "+4759440000",
            "twilio_messaging_service_sid": None,
            "twilio_api_url": self.twilio.url,
            "smtp_url": f"smtp://{SMTP_USER}:s3cret%20pass@127.0.0.1:{self.smtp_port}",
            "mail_from": "exam-support@example.org",
            "public_url": "https://exams.example.org",
            "registry_dir": self.registry,
            "webhook_urls": self.receiver.url,
            "webhook_secret": SECRET,
        }
        return Settings(_env_file=None, **(values | overrides))

    def env(self, database_url: str, **overrides: str) -> dict[str, str]:
        """The same deployment as environment variables, for the CLI."""
        settings = self.settings(database_url=database_url)
        env = {}
        for name in Settings.model_fields:
            value = getattr(settings, name)
            if hasattr(value, "get_secret_value"):
                value = value.get_secret_value()
            env[name.upper()] = "" if value is None else str(value)
        return env | overrides


@pytest.fixture
def services(tmp_path: Path) -> Iterator[Services]:
    registry = tmp_path / "registry"
    registry.mkdir()
    (registry / "tests-2026-12-01.csv").write_text(",".join(TEST_COLUMNS) + "\n")
    (registry / "candidates-2026-12-01.csv").write_text(",".join(CANDIDATE_COLUMNS) + "\n")
    slack = FakeSlack()
    slack.channels[CHANNEL] = {"name": "exam-support", "is_member": True, "is_archived": False}
    mail = MailHandler()
    port = free_port()
    smtp = Controller(
        mail,
        hostname="127.0.0.1",
        port=port,
        authenticator=_smtp_login,
        auth_require_tls=False,
    )
    smtp.start()
    receiver = Receiver()
    with FakeTwilio() as twilio:
        try:
            yield Services(slack, twilio, mail, port, receiver, registry)
        finally:
            receiver.close()
            smtp.stop()
            slack.close()


@pytest.fixture
def check(services: Services, database_url: str, session_factory) -> Callable[..., dict]:
    """Run every check for the deployment changed by ``overrides``; the checks by name."""

    def run(**overrides: Any) -> dict[str, doctor.Check]:
        settings = services.settings(**({"database_url": database_url} | overrides))
        found: dict[str, doctor.Check] = {}
        for c in doctor.run(settings):
            found.setdefault(c.check, c)
        return found

    return run


def closed_url() -> str:
    return f"http://127.0.0.1:{free_port()}"


# ---------------------------------------------------------------- all is well


def test_a_deployment_set_up_right_passes_every_check_and_sends_nothing(
    services: Services, cli, database_url
):
    result = cli("doctor", env=services.env(database_url))
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[-1] == f"All {len(lines) - 1} checks passed."
    assert all(line.startswith("✓ ") for line in lines[:-1]), result.stdout
    names = [line[2:].split(":")[0] for line in lines[:-1]]
    assert names == [
        "database",
        "time zone",
        "slack token",
        "slack scopes",
        "slack connection",
        "slack channel",
        "twilio account",
        "twilio sender",
        "e-mail",
        "public url",
        "webhook",
        "registry",
    ]
    assert "SLACK_BOT_TOKEN works: bot @examdesk in workspace Exam Office (T1)" in result.stdout
    assert "the bot is a member of #exam-support (C0SUPPORT)" in result.stdout
    assert f"logged in to 127.0.0.1:{services.smtp_port} as exams" in result.stdout
    assert "answered 204 to a signed test event" in result.stdout
    assert "tests-2026-12-01.csv (0 rows), candidates-2026-12-01.csv (0 rows)" in result.stdout
    # Looked, touched nothing: no message, no SMS, no e-mail; the one event is the test event.
    assert services.slack.of("chat.postMessage") == []
    assert services.twilio.accepted == [] and services.mail.messages == []
    (event,) = services.receiver.events
    assert event["type"] == "doctor.test" and event["data"]["candidates"] == []
    assert "Traceback" not in result.stderr


def test_json_is_a_list_of_check_ok_detail_fix(services: Services, cli, database_url):
    result = cli("doctor", "--json", env=services.env(database_url, TWILIO_AUTH_TOKEN="wrong"))
    assert result.returncode == 1
    checks = json.loads(result.stdout)
    assert all(set(c) == {"check", "ok", "detail", "fix"} for c in checks)
    failed = [c for c in checks if not c["ok"]]
    assert [c["check"] for c in failed] == ["twilio account"]
    assert failed[0]["detail"].startswith("Twilio refused TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN")
    assert "Twilio console" in failed[0]["fix"]


def test_unset_optional_services_are_not_configured_not_failures(cli):
    """Nothing set up but the database: SMS, e-mail, webhooks and the registry say what their
    absence means and pass; Slack, examdesk's front door, fails."""
    assert cli("db", "upgrade").returncode == 0
    env = {name.upper(): "" for name in Settings.model_fields if name != "database_url"}
    env.pop("EXAMDESK_TIMEZONE")
    env.pop("PORT")
    env.pop("SMS_PER_SECOND")
    env.pop("SLACK_API_URL")
    env.pop("TWILIO_API_URL")
    env.pop("PUBLIC_URL")
    result = cli("doctor", "--json", env=env)
    assert result.returncode == 1
    checks = {c["check"]: c for c in json.loads(result.stdout)}
    for name, meaning in [
        ("twilio", "SMS are written to the log only, never sent"),
        ("e-mail", "e-mails are written to the log only, never sent"),
        ("webhooks", "changes are not sent to other systems"),
        ("registry", "deadlines are not refreshed every 30 minutes (R11)"),
    ]:
        assert checks[name]["ok"], checks[name]
        assert checks[name]["detail"].startswith("not configured: ")
        assert meaning in checks[name]["detail"]
    assert not checks["slack"]["ok"]
    assert "Slack is off (SLACK_BOT_TOKEN is not set)" in checks["slack"]["detail"]
    assert "manifest.yml" in checks["slack"]["fix"]
    assert checks["public url"]["ok"]  # nothing reaches outside, so localhost is fine


# ---------------------------------------------------------------- each failure


def _failed(found: dict[str, doctor.Check], name: str, detail: str, fix: str | None) -> None:
    c = found[name]
    assert not c.ok, c
    assert detail in c.detail, c
    if fix is not None:
        assert c.fix is not None and fix in c.fix, c


def test_slack_refuses_the_bot_token(services: Services, check):
    services.slack.answers["auth.test"] = {"ok": False, "error": "invalid_auth"}
    _failed(
        check(),
        "slack token",
        "Slack refused SLACK_BOT_TOKEN (invalid_auth): Slack is off until the token is fixed",
        "Bot User OAuth Token (xoxb-…)",
    )


def test_slack_out_of_reach(check):
    found = check(slack_api_url=closed_url() + "/api/")
    _failed(found, "slack token", "cannot reach Slack at http://127.0.0.1:", "network")
    assert "slack scopes" not in found  # nothing more can be learnt without Slack


def test_a_user_token_is_not_the_bots(services: Services, check):
    services.slack.answers["auth.test"] = {
        "ok": True,
        "user": "kari",
        "team": "Uni",
        "team_id": "T1",
    }
    _failed(check(slack_bot_token="xoxp-1-user"), "slack token", "is not a bot token", "xoxb-")


def test_scopes_the_manifest_asks_for_are_missing(services: Services, check):
    services.slack.scopes = ["commands"]
    _failed(
        check(),
        "slack scopes",
        "the token lacks chat:write, channels:read, groups:read, channels:history, "
        "groups:history, files:write, im:write, users:read of the scopes manifest.yml",
        "reinstall the app",
    )


def test_the_manifest_names_the_scopes_checked():
    assert doctor.manifest_scopes() == [
        "commands",
        "chat:write",
        "channels:read",
        "groups:read",
        "channels:history",
        "groups:history",
        "files:write",
        "im:write",
        "users:read",
    ]


def test_slack_refuses_the_app_token(services: Services, check):
    services.slack.answers["apps.connections.open"] = {"ok": False, "error": "invalid_auth"}
    _failed(
        check(),
        "slack connection",
        "Slack refused to open a Socket Mode connection with SLACK_APP_TOKEN (invalid_auth)",
        "connections:write",
    )


def test_an_app_token_that_is_not_one(check):
    _failed(
        check(slack_app_token="xoxb-2-oops"),
        "slack connection",
        "SLACK_APP_TOKEN is not an app-level token (xapp-…)",
        "App-Level Tokens",
    )


def test_http_mode_with_a_signing_secret(check):
    ok = check(slack_app_token=None, slack_signing_secret=SIGNING_SECRET)["slack connection"]
    assert ok.ok and "https://exams.example.org/slack/events" in ok.detail
    _failed(
        check(slack_app_token=None, slack_signing_secret="abc"),
        "slack connection",
        "SLACK_SIGNING_SECRET has 3 characters; Slack's have 32",
        "Basic Information → App Credentials",
    )
    _failed(
        check(slack_app_token=None, slack_signing_secret="xoxb-" + "1" * 27),
        "slack connection",
        "SLACK_SIGNING_SECRET holds a token",
        None,
    )
    _failed(
        check(slack_app_token=None),
        "slack connection",
        "neither SLACK_APP_TOKEN nor SLACK_SIGNING_SECRET",
        "SLACK_APP_TOKEN (Socket Mode",
    )


def test_the_bot_is_not_in_the_support_channel(services: Services, check):
    services.slack.channels[CHANNEL]["is_member"] = False
    _failed(
        check(),
        "slack channel",
        "the bot is not a member of #exam-support (C0SUPPORT)",
        "/invite @examdesk in #exam-support",
    )
    (call,) = services.slack.of("conversations.info")
    assert call.body["channel"] == CHANNEL


@pytest.mark.parametrize(
    ("channel", "detail", "fix"),
    [
        ("C0ELSEWHERE", "Slack knows no channel C0ELSEWHERE that the bot can see", "/invite"),
        ("#exam-support", "'#exam-support' is not a channel id", "not its name"),
        (None, "SLACK_SUPPORT_CHANNEL is not set", "invite the bot there"),
    ],
)
def test_the_support_channel_is_wrong(check, channel, detail, fix):
    _failed(check(slack_support_channel=channel), "slack channel", detail, fix)


def test_the_support_channel_is_archived(services: Services, check):
    services.slack.channels[CHANNEL]["is_archived"] = True
    _failed(check(), "slack channel", "#exam-support (C0SUPPORT) is archived", "unarchive")


def test_the_token_may_not_look_channels_up(services: Services, check):
    services.slack.answers["conversations.info"] = {
        "ok": False,
        "error": "missing_scope",
        "needed": "groups:read",
    }
    _failed(check(), "slack channel", "missing scope groups:read", "reinstall the app")


def test_twilio_refuses_the_credentials(check):
    _failed(
        check(twilio_auth_token="not-the-token"),
        "twilio account",
        "Twilio refused TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN (20003",
        "Account SID (AC…) and Auth Token",
    )


@pytest.mark.parametrize(
    ("status", "kind", "detail"),
    [
        ("suspended", "Full", "is suspended: it cannot send"),
        ("active", "Trial", "is a trial account: it sends only to verified numbers"),
    ],
)
def test_a_twilio_account_that_cannot_reach_candidates(services, check, status, kind, detail):
    services.twilio.account_status, services.twilio.account_type = status, kind
    _failed(check(), "twilio account", detail, "Twilio console")


def test_twilio_out_of_reach(check):
    _failed(check(twilio_api_url=closed_url()), "twilio account", "cannot reach Twilio", None)


@pytest.mark.parametrize(
    ("overrides", "detail", "fix"),
    [
        (
            {"twilio_from": "+4759449999"},
            "TWILIO_FROM +4759449999 is not a phone number of this account",
            "Active numbers",
        ),
        (
            {"twilio_from": "NTNU Exam Office"},
            "an alphanumeric sender is at most 11 letters, digits and spaces",
            None,
        ),
        ({"twilio_from": "59440000"}, "is not in E.164 form", "+4759440000"),
        ({"twilio_from": "2222"}, "TWILIO_FROM 2222 is not a short code of this account", None),
        (
            {"twilio_messaging_service_sid": "MG" + "1" * 32},
            f"this account has no messaging service MG{'1' * 32}",
            "Messaging → Services",
        ),
        (
            {"twilio_from": None},
            "neither TWILIO_FROM nor TWILIO_MESSAGING_SERVICE_SID is set",
            "TWILIO_FROM",
        ),
    ],
)
def test_the_sms_sender_is_not_usable(check, overrides, detail, fix):
    _failed(check(**overrides), "twilio sender", detail, fix)


@pytest.mark.parametrize(
    ("overrides", "detail"),
    [
        ({"twilio_from": "NTNU"}, "alphanumeric sender 'NTNU' (one-way"),
        ({"twilio_from": "2222"}, "short code 2222 of this account"),
        ({"twilio_messaging_service_sid": "MG" + "2" * 32}, "messaging service Exam SMS"),
    ],
)
def test_usable_senders(services: Services, check, overrides, detail):
    services.twilio.short_codes.append("2222")
    services.twilio.services["MG" + "2" * 32] = "Exam SMS"
    found = check(**overrides)["twilio sender"]
    assert found.ok and detail in found.detail, found


def test_twilio_half_set_up_writes_sms_to_the_log(check):
    _failed(
        check(twilio_auth_token=None),
        "twilio",
        "TWILIO_AUTH_TOKEN is not set: SMS are written to the log only",
        "Auth Token",
    )


def test_the_mail_server_refuses_the_login(services: Services, check):
    _failed(
        check(smtp_url=f"smtp://{SMTP_USER}:wrong@127.0.0.1:{services.smtp_port}"),
        "e-mail",
        f"127.0.0.1:{services.smtp_port} refused the login of exams (535",
        "user and password in SMTP_URL",
    )
    assert services.mail.messages == []


def test_the_mail_server_is_not_there(check):
    port = closed_url().rsplit(":", 1)[1]
    _failed(
        check(smtp_url=f"smtp://a:b@127.0.0.1:{port}"),
        "e-mail",
        f"cannot connect to 127.0.0.1:{port}",
        "587 with STARTTLS",
    )


def test_mail_needs_a_sender_address(check):
    _failed(check(mail_from=None), "e-mail", "MAIL_FROM is not set", "MAIL_FROM")
    _failed(check(mail_from="support"), "e-mail", "'support' is not an e-mail address", None)
    _failed(check(smtp_url="http://mail"), "e-mail", "SMTP_URL must look like", None)


@pytest.mark.parametrize(
    ("public_url", "detail"),
    [
        ("http://exams.example.org", "is not https"),
        ("https://localhost:3000", "points at this machine or a private network"),
        ("https://192.168.1.20", "points at this machine or a private network"),
    ],
)
def test_public_url_must_reach_phones_when_sms_is_live(check, public_url, detail):
    _failed(
        check(public_url=public_url),
        "public url",
        f"PUBLIC_URL {public_url} {detail}, but Twilio and e-mail are live: links in SMS",
        "https://exams.example.org",
    )


def test_the_webhook_receiver_refuses_the_event(services: Services, check):
    services.receiver.status = 500
    _failed(check(), "webhook", "answered 500 to a signed test event", "answer 2xx")
    services.receiver.status, services.receiver.secret = 204, OTHER_SECRET
    _failed(check(), "webhook", "answered 401", "the same WEBHOOK_SECRET")


@pytest.mark.parametrize(
    ("overrides", "detail"),
    [
        ({"webhook_secret": None}, "WEBHOOK_URLS is set but WEBHOOK_SECRET is not"),
        ({"webhook_secret": "hunter2"}, "does not start with whsec_"),
        ({"webhook_secret": "whsec_not base64!"}, "is not whsec_ followed by base64"),
        ({"webhook_secret": "whsec_c2hvcnQ="}, "holds 5 bytes"),
    ],
)
def test_the_webhook_secret_is_not_usable(check, overrides, detail):
    _failed(check(**overrides), "webhooks", detail, "whsec_")


def test_a_webhook_receiver_out_of_reach_is_named_without_its_query(check):
    url = closed_url()
    _failed(
        check(webhook_urls=f"{url}/hook?token=secret-in-url"),
        "webhook",
        f"{url}/hook cannot be reached",
        "WEBHOOK_URLS",
    )
    assert (
        "secret-in-url"
        not in check(webhook_urls=f"{url}/hook?token=secret-in-url")["webhook"].detail
    )


def test_the_registry_folder(services: Services, check, tmp_path: Path):
    _failed(
        check(registry_dir=tmp_path / "nowhere"),
        "registry",
        "does not exist",
        "create the folder",
    )
    (services.registry / "candidates-2026-12-02.csv").write_text(
        "code,title,kind,start,end\nX-1,T,school,2026-12-01 09:00,2026-12-01 13:00\n"
    )
    _failed(
        check(),
        "registry",
        "the newest candidates export is not usable: candidates-2026-12-02.csv looks like a "
        "tests file",
        "new export",
    )


# ---------------------------------------------------------------- database, time zone, settings


def test_the_database_file_does_not_exist(check, tmp_path: Path):
    missing = tmp_path / "none.db"
    _failed(
        check(database_url=f"sqlite:///{missing}"),
        "database",
        f"the file {missing} does not exist yet",
        "examdesk db upgrade",
    )
    assert not missing.exists()  # doctor creates nothing


def test_a_database_server_out_of_reach_is_named_without_its_password(check):
    port = closed_url().rsplit(":", 1)[1]
    found = check(database_url=f"postgresql+psycopg://exams:pw-123@127.0.0.1:{port}/examdesk")
    _failed(
        found,
        "database",
        f"cannot open postgresql+psycopg://exams:***@127.0.0.1:{port}/examdesk (connection",
        "check DATABASE_URL",
    )
    assert "pw-123" not in found["database"].detail


def test_the_database_is_behind_or_ahead_of_this_examdesk(check, tmp_path: Path):
    from alembic import command

    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = make_engine(url)
    config = migrate.alembic_config(engine)
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "0002")
    _failed(
        check(database_url=url),
        "database",
        f"is at revision 0002; this examdesk needs {migrate.HEAD}",
        "run `examdesk db upgrade`",
    )
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    engine.dispose()
    _failed(
        check(database_url=url),
        "database",
        "revision 9999, which this examdesk does not know",
        None,
    )


def test_an_invalid_setting_is_a_failed_check_and_the_rest_still_runs(services, cli, database_url):
    env = services.env(database_url, EXAMDESK_TIMEZONE="Mars/Olympus", PORT="eighty")
    result = cli("doctor", "--json", env=env)
    assert result.returncode == 1
    checks = {c["check"]: c for c in json.loads(result.stdout)}
    assert not checks["time zone"]["ok"]
    assert "'Mars/Olympus' is not a time zone name" in checks["time zone"]["detail"]
    assert not checks["configuration"]["ok"]
    assert checks["configuration"]["detail"].startswith("PORT: ")
    assert checks["slack token"]["ok"], checks["slack token"]
    assert checks["database"]["ok"], checks["database"]
    assert "Traceback" not in result.stderr
