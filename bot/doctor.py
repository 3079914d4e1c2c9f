"""Is this deployment ready for exam day? `examdesk doctor` and the facts `serve` logs at start.

Every check gives one line: what it found and, where something is wrong or missing, what to
do. ``online`` checks ask the services themselves (Slack, Twilio, the mail server, the
webhook receivers); without it only the configuration and this machine are looked at, which
is what `examdesk serve` logs at start, plus one ``auth.test`` so that a token Slack refuses
never passes for a connected workspace.

An optional service that is not set up (SMS, e-mail, webhooks, the registry folder) is not a
failure: it says what that means. Slack is examdesk's front door, so without it the
deployment is not ready.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import getpass
import ipaddress
import json
import logging
import os
import re
import smtplib
import ssl
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit
from zoneinfo import ZoneInfo

from pydantic import ValidationError
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError
from sqlalchemy import Engine

from bot.settings import Settings
from commands.timeparse import format_time, iso
from store import clock

MANIFEST = Path(__file__).resolve().parents[1] / "manifest.yml"
# The Slack SDK logs every failed request as an ERROR; here a failure is a finding, said once
# in its check.
_QUIET = logging.getLogger(f"{__name__}.slack_sdk")
_QUIET.disabled = True
TIMEOUT_S = 10.0
START_TIMEOUT_S = 5.0  # serve's one auth.test must not hold up the start for long

HOW_TO_CONNECT = (
    "To connect a workspace, create the Slack app from manifest.yml and set SLACK_BOT_TOKEN "
    "plus either SLACK_APP_TOKEN (Socket Mode, no public URL needed) or SLACK_SIGNING_SECRET "
    "(HTTP: Slack posts to <public URL>/slack/events)."
)
NEW_BOT_TOKEN = (
    "copy the Bot User OAuth Token (xoxb-…) from OAuth & Permissions in the app's settings "
    "at api.slack.com/apps into SLACK_BOT_TOKEN"
)
# auth.test errors that mean the token itself is no good (not that Slack is away).
REFUSED_TOKEN = {
    "invalid_auth",
    "not_authed",
    "account_inactive",
    "token_revoked",
    "token_expired",
    "not_allowed_token_type",
}
_CHANNEL_ID = re.compile(r"[CG][A-Z0-9]{2,}")
_ALPHANUMERIC_SENDER = re.compile(r"[A-Za-z0-9 ]{1,11}")
_SHORT_CODE = re.compile(r"[0-9]{3,6}")
NOT_CONFIGURED = "not configured: "
TZ = "examdesk_timezone"


@dataclass(frozen=True)
class Check:
    check: str
    ok: bool
    detail: str
    fix: str | None = None

    def line(self) -> str:
        text = f"{'✓' if self.ok else '✗'} {self.check}: {self.detail}"
        return f"{text} → {self.fix}" if self.fix else text


def render(checks: list[Check]) -> str:
    failed = sum(not c.ok for c in checks)
    tail = (
        f"All {len(checks)} checks passed."
        if not failed
        else f"{failed} of {len(checks)} checks failed: fix {'it' if failed == 1 else 'them'} "
        "and run `examdesk doctor` again."
    )
    return "\n".join([*(c.line() for c in checks), tail])


def as_json(checks: list[Check]) -> str:
    return json.dumps([asdict(c) for c in checks], ensure_ascii=False, indent=2)


# ---------------------------------------------------------------- settings


def load_settings() -> tuple[Settings, dict[str, str]]:
    """The settings, with each invalid variable replaced by its default and named in the
    second value (variable → what is wrong), so that every other check can still run."""
    try:
        return Settings(), {}
    except ValidationError as error:
        problems: dict[str, str] = {}
        for item in error.errors():
            name = str(item["loc"][0]) if item["loc"] else "?"
            problems[name] = str(item["msg"]).removeprefix("Value error, ")
    defaults = {
        name: Settings.model_fields[name].default
        for name in problems
        if name in Settings.model_fields
    }
    return Settings(**defaults), problems


def _settings_checks(problems: dict[str, str]) -> list[Check]:
    return [
        Check(
            "configuration",
            False,
            f"{name.upper()}: {message}",
            f"correct {name.upper()} in the environment or .env",
        )
        for name, message in problems.items()
        if name != TZ  # the time zone check says it
    ]


# ---------------------------------------------------------------- the runs


def run(settings: Settings, problems: dict[str, str] | None = None) -> list[Check]:
    """Every check, asking the services themselves (`examdesk doctor`)."""
    problems = problems or {}
    return [
        *_settings_checks(problems),
        *_guarded("database", lambda: [check_database(settings)]),
        *_guarded("time zone", lambda: [check_time_zone(settings, problems.get(TZ))]),
        *_guarded("slack", lambda: check_slack(settings, online=True)),
        *_guarded("twilio", lambda: check_twilio(settings, online=True)),
        *_guarded("e-mail", lambda: [check_email(settings, online=True)]),
        *_guarded("public url", lambda: [check_public_url(settings)]),
        *_guarded("webhooks", lambda: check_webhooks(settings, online=True)),
        *_guarded("registry", lambda: [check_registry(settings, read_exports=True)]),
    ]


@dataclass
class StartReport:
    """What `serve` logs at start, and whether Slack refused the bot token."""

    checks: list[Check] = field(default_factory=list)
    slack_refused: bool = False
    # Serving without any Slack settings is a way to run (the demo, the web pages alone);
    # only something set up wrong makes the block a warning.
    slack_unset: bool = False

    @property
    def level(self) -> int:
        broken = [
            c for c in self.checks if not c.ok and not (self.slack_unset and c.check == "slack")
        ]
        return logging.WARNING if broken else logging.INFO

    def block(self, headline: str) -> str:
        lines = [headline, *(f"  {c.line()}" for c in self.checks)]
        lines.append(
            "  `examdesk doctor` also checks the credentials with Slack, Twilio, the mail "
            "server and the webhook receivers."
        )
        return "\n".join(lines)


def at_start(settings: Settings, engine: Engine) -> StartReport:
    """The facts `serve` starts with: the configuration, plus one auth.test."""
    report = StartReport(
        slack_unset=all(
            v is None
            for v in (
                settings.slack_bot_token,
                settings.slack_app_token,
                settings.slack_signing_secret,
            )
        )
    )

    def slack() -> list[Check]:
        checks, report.slack_refused = _slack(settings, online=False, timeout=START_TIMEOUT_S)
        return checks

    report.checks = [
        *_guarded("database", lambda: [_database_at(engine)]),
        *_guarded("time zone", lambda: [check_time_zone(settings, None)]),
        *_guarded("slack", slack),
        *_guarded("twilio", lambda: check_twilio(settings, online=False)),
        *_guarded("e-mail", lambda: [check_email(settings, online=False)]),
        *_guarded("public url", lambda: [check_public_url(settings)]),
        *_guarded("webhooks", lambda: check_webhooks(settings, online=False)),
        *_guarded("registry", lambda: [check_registry(settings, read_exports=False)]),
    ]
    return report


def _guarded(name: str, work: Callable[[], list[Check]]) -> list[Check]:
    """A check that breaks unexpectedly is a failed check, not a traceback."""
    try:
        return work()
    except Exception as error:
        return [
            Check(
                name,
                False,
                f"the check itself failed ({type(error).__name__}: {_first_line(error)})",
                "report this to whoever maintains examdesk",
            )
        ]


def _first_line(error: BaseException) -> str:
    # urllib wraps the cause: "<urlopen error [Errno 111] Connection refused>".
    text = str(getattr(error, "reason", None) or error).strip()
    return (text.splitlines()[0] if text else type(error).__name__)[:200]


# ---------------------------------------------------------------- database and time zone


def check_database(settings: Settings) -> Check:
    from sqlalchemy import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    from store.db import make_engine

    try:
        url = make_url(settings.database_url)
    except ArgumentError:
        return Check(
            "database",
            False,
            "DATABASE_URL is not a database URL",
            "write it as sqlite:///examdesk.db or postgresql+psycopg://user:pw@host/db",
        )
    shown = url.render_as_string(hide_password=True)
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        path = Path(url.database or "")
        if not path.is_file():
            return Check(
                "database",
                False,
                f"{shown}: the file {path} does not exist yet",
                "run `examdesk db upgrade` to create it (`examdesk serve` does too), or correct "
                "DATABASE_URL",
            )
    kwargs: dict[str, Any] = {}
    if url.get_backend_name() == "postgresql":
        kwargs["connect_args"] = {"connect_timeout": int(TIMEOUT_S)}
    try:
        engine = make_engine(settings.database_url, **kwargs)
    except (ArgumentError, NoSuchModuleError, ImportError) as error:
        return Check(
            "database",
            False,
            f"DATABASE_URL {shown} is not usable ({_first_line(error)})",
            "examdesk runs on SQLite (sqlite:///examdesk.db) and PostgreSQL "
            "(postgresql+psycopg://user:pw@host/db)",
        )
    try:
        return _database_at(engine, shown=shown)
    finally:
        engine.dispose()


def _database_at(engine: Engine, *, shown: str | None = None) -> Check:
    from store import migrate

    shown = shown or engine.url.render_as_string(hide_password=True)
    try:
        revision = migrate.current_revision(engine)
    except Exception as error:
        cause = getattr(error, "orig", None) or error  # the driver's words, not SQLAlchemy's
        return Check(
            "database",
            False,
            f"cannot open {shown} ({_first_line(cause)})",
            "check DATABASE_URL, that the database server runs and lets this user in",
        )
    if revision == migrate.HEAD:
        return Check("database", True, f"{shown} at revision {revision} (latest)")
    if revision is None:
        return Check(
            "database",
            False,
            f"{shown} has no examdesk tables",
            "run `examdesk db upgrade`",
        )
    if revision in _known_revisions(engine):
        return Check(
            "database",
            False,
            f"{shown} is at revision {revision}; this examdesk needs {migrate.HEAD}",
            "back the database up, then run `examdesk db upgrade`",
        )
    return Check(
        "database",
        False,
        f"{shown} is at revision {revision}, which this examdesk does not know: a newer "
        "examdesk has upgraded it",
        "run the newer examdesk, or restore the backup taken before that upgrade",
    )


def _known_revisions(engine: Engine) -> set[str]:
    from alembic.script import ScriptDirectory

    from store import migrate

    script = ScriptDirectory.from_config(migrate.alembic_config(engine))
    return {s.revision for s in script.walk_revisions()}


def check_time_zone(settings: Settings, problem: str | None) -> Check:
    if problem is not None:
        return Check(
            "time zone",
            False,
            f"EXAMDESK_TIMEZONE: {problem}",
            "set EXAMDESK_TIMEZONE to the exam office's zone, e.g. Europe/Oslo",
        )
    now = clock.now().astimezone(settings.tz)
    offset = now.strftime("%z")
    return Check(
        "time zone",
        True,
        f"{settings.examdesk_timezone}: it is {format_time(now, settings.tz)} there "
        f"(UTC{offset[:3]}:{offset[3:]}); times are typed and shown in it",
    )


# ---------------------------------------------------------------- Slack


def slack_mode(settings: Settings) -> str:
    """How Slack is connected: socket, http or off."""
    if settings.slack_bot_token is None:
        return "off"
    if settings.slack_app_token is not None:
        return "socket"
    return "http" if settings.slack_signing_secret is not None else "off"


def manifest_scopes(path: Path = MANIFEST) -> list[str]:
    import yaml

    manifest = yaml.safe_load(path.read_text(encoding="utf-8"))
    return list(manifest["oauth_config"]["scopes"]["bot"])


def check_slack(settings: Settings, *, online: bool, timeout: float = TIMEOUT_S) -> list[Check]:
    return _slack(settings, online=online, timeout=timeout)[0]


def _slack(settings: Settings, *, online: bool, timeout: float) -> tuple[list[Check], bool]:
    """The Slack checks, and whether Slack refused the bot token outright."""
    token = Settings.secret(settings.slack_bot_token)
    if not token:
        others = [
            name
            for name, value in (
                ("SLACK_APP_TOKEN", settings.slack_app_token),
                ("SLACK_SIGNING_SECRET", settings.slack_signing_secret),
            )
            if value is not None
        ]
        verb = "is" if len(others) == 1 else "are"
        detail = (
            f"SLACK_BOT_TOKEN is not set, though {' and '.join(others)} {verb}"
            if others
            else "SLACK_BOT_TOKEN is not set"
        )
        off = Check(
            "slack",
            False,
            f"Slack is off ({detail}): slash commands, the App Home and the change log are "
            "unavailable; health, web pages and background work run as usual",
            HOW_TO_CONNECT,
        )
        return [off], False
    client = WebClient(
        base_url=settings.slack_api_base_url, token=token, timeout=int(timeout), logger=_QUIET
    )
    token_check, identity, refused = _slack_token(client, token)
    checks: list[Check] = [token_check]
    if online and identity is not None:
        checks.append(_slack_scopes(identity))
    checks.append(_slack_connection(settings, online=online, timeout=timeout))
    checks.append(_slack_channel(settings, client if online and identity else None, identity))
    return checks, refused


def _slack_token(client: WebClient, token: str) -> tuple[Check, Any, bool]:
    """auth.test: the check, Slack's answer when the token works, and whether Slack refused
    the token itself (rather than being out of reach)."""
    try:
        response = client.auth_test()
    except SlackApiError as error:
        code = error.response.get("error", "error")
        refused = code in REFUSED_TOKEN
        check = Check(
            "slack token",
            False,
            f"Slack refused SLACK_BOT_TOKEN ({code})"
            + (": Slack is off until the token is fixed" if refused else ""),
            NEW_BOT_TOKEN if refused else "try again; if it persists, see status.slack.com",
        )
        return check, None, refused
    except (SlackClientError, OSError) as error:
        return (
            Check(
                "slack token",
                False,
                f"cannot reach Slack at {client.base_url} to check SLACK_BOT_TOKEN "
                f"({_first_line(error)})",
                "check this machine's network and proxy settings (and SLACK_API_URL if set)",
            ),
            None,
            False,
        )
    who = f"@{response.get('user')} in workspace {response.get('team')} ({response.get('team_id')})"
    if not response.get("bot_id") or not token.startswith("xoxb-"):
        return (
            Check(
                "slack token",
                False,
                f"SLACK_BOT_TOKEN is not a bot token: it belongs to {who}",
                NEW_BOT_TOKEN,
            ),
            None,
            False,
        )
    return Check("slack token", True, f"SLACK_BOT_TOKEN works: bot {who}"), response, False


def _slack_scopes(identity: Any) -> Check:
    try:
        wanted = manifest_scopes()
    except OSError:
        return Check(
            "slack scopes",
            False,
            f"cannot read {MANIFEST}, which names the scopes the app needs",
            "run examdesk from its folder, beside manifest.yml",
        )
    header = next(
        (v for k, v in (identity.headers or {}).items() if k.lower() == "x-oauth-scopes"), None
    )
    if header is None:
        return Check(
            "slack scopes",
            False,
            "Slack did not say which scopes the token has (no x-oauth-scopes header)",
            "check SLACK_API_URL points at Slack's Web API",
        )
    granted = {s.strip() for s in str(header).split(",") if s.strip()}
    missing = [s for s in wanted if s not in granted]
    if missing:
        return Check(
            "slack scopes",
            False,
            f"the token lacks {', '.join(missing)} of the scopes manifest.yml asks for "
            f"({', '.join(wanted)})",
            "add them under OAuth & Permissions → Bot Token Scopes (or update the app from "
            "manifest.yml), reinstall the app to the workspace and copy the new token into "
            "SLACK_BOT_TOKEN",
        )
    return Check(
        "slack scopes",
        True,
        f"the token has every scope manifest.yml asks for: {', '.join(wanted)}",
    )


def _slack_connection(settings: Settings, *, online: bool, timeout: float) -> Check:
    app_token = Settings.secret(settings.slack_app_token)
    secret = Settings.secret(settings.slack_signing_secret)
    if app_token:
        also = " (SLACK_SIGNING_SECRET is not used then)" if secret else ""
        if not app_token.startswith("xapp-"):
            return Check(
                "slack connection",
                False,
                "SLACK_APP_TOKEN is not an app-level token (xapp-…)",
                _APP_TOKEN_FIX,
            )
        if not online:
            return Check("slack connection", True, f"Socket Mode with SLACK_APP_TOKEN{also}")
        client = WebClient(
            base_url=settings.slack_api_base_url, timeout=int(timeout), logger=_QUIET
        )
        try:
            # Opens nothing by itself: the URL it answers is for a connection never made.
            client.apps_connections_open(app_token=app_token)
        except SlackApiError as error:
            return Check(
                "slack connection",
                False,
                f"Slack refused to open a Socket Mode connection with SLACK_APP_TOKEN "
                f"({error.response.get('error', 'error')})",
                _APP_TOKEN_FIX + "; and check Socket Mode is on in the app's settings",
            )
        except (SlackClientError, OSError) as error:
            return Check(
                "slack connection",
                False,
                f"cannot reach Slack to check SLACK_APP_TOKEN ({_first_line(error)})",
                "check this machine's network and proxy settings",
            )
        return Check(
            "slack connection",
            True,
            f"SLACK_APP_TOKEN opens a Socket Mode connection (no public URL needed){also}",
        )
    if secret:
        if secret.startswith(("xox", "xapp-")):
            problem = "SLACK_SIGNING_SECRET holds a token, not the signing secret"
        elif len(secret) != 32:
            problem = f"SLACK_SIGNING_SECRET has {len(secret)} characters; Slack's have 32"
        else:
            return Check(
                "slack connection",
                True,
                "Slack over HTTP, requests checked with SLACK_SIGNING_SECRET: the app's request "
                f"URLs must be {settings.public_url.rstrip('/')}/slack/events (only a request "
                "from Slack can prove the secret)",
            )
        return Check(
            "slack connection",
            False,
            problem,
            "copy the Signing Secret from Basic Information → App Credentials in the app's "
            "settings",
        )
    return Check(
        "slack connection",
        False,
        "SLACK_BOT_TOKEN is set, but neither SLACK_APP_TOKEN nor SLACK_SIGNING_SECRET: Slack "
        "is off",
        "set SLACK_APP_TOKEN (Socket Mode, no public URL needed) or SLACK_SIGNING_SECRET (HTTP)",
    )


_APP_TOKEN_FIX = (
    "create an App-Level Token with the connections:write scope under Basic Information → "
    "App-Level Tokens and put it (xapp-…) in SLACK_APP_TOKEN"
)


def _slack_channel(settings: Settings, client: WebClient | None, identity: Any) -> Check:
    channel = settings.slack_support_channel
    bot = f"@{identity.get('user')}" if identity is not None else "@examdesk"
    if channel is None:
        return Check(
            "slack channel",
            False,
            "SLACK_SUPPORT_CHANNEL is not set: teachers' error reports are not posted and the "
            "change log goes to this log only",
            f"set it to the support channel's id (C…, at the bottom of the channel's details) "
            f"and invite the bot there with /invite {bot}",
        )
    if not _CHANNEL_ID.fullmatch(channel):
        return Check(
            "slack channel",
            False,
            f"SLACK_SUPPORT_CHANNEL '{channel[:40]}' is not a channel id",
            "use the channel's id (C…, at the bottom of the channel's details), not its name",
        )
    if client is None:
        return Check(
            "slack channel",
            True,
            f"SLACK_SUPPORT_CHANNEL is {channel}; `examdesk doctor` checks that the bot is in it",
        )
    try:
        found = client.conversations_info(channel=channel)["channel"]
    except SlackApiError as error:
        code = error.response.get("error", "error")
        if code == "channel_not_found":
            return Check(
                "slack channel",
                False,
                f"Slack knows no channel {channel} that the bot can see",
                f"check the id; a private channel is seen only once the bot is in it: /invite "
                f"{bot} there",
            )
        if code == "missing_scope":
            needed = error.response.get("needed", "channels:read, groups:read")
            return Check(
                "slack channel",
                False,
                f"the token may not look the channel up (missing scope {needed})",
                "add the scope under OAuth & Permissions (manifest.yml asks for it) and "
                "reinstall the app",
            )
        return Check("slack channel", False, f"Slack answered {code} for channel {channel}", None)
    except (SlackClientError, OSError) as error:
        return Check(
            "slack channel",
            False,
            f"cannot reach Slack to look up {channel} ({_first_line(error)})",
            "check this machine's network and proxy settings",
        )
    name = f"#{found.get('name', channel)} ({channel})"
    if found.get("is_archived"):
        return Check(
            "slack channel",
            False,
            f"{name} is archived: nothing can be posted there",
            "unarchive it, or set SLACK_SUPPORT_CHANNEL to the channel support uses now",
        )
    if not found.get("is_member"):
        return Check(
            "slack channel",
            False,
            f"the bot is not a member of {name}: reports and the change log cannot be posted",
            f"type /invite {bot} in {name.split(' ')[0]}",
        )
    return Check("slack channel", True, f"the bot is a member of {name}")


# ---------------------------------------------------------------- Twilio


def check_twilio(settings: Settings, *, online: bool) -> list[Check]:
    sid = settings.twilio_account_sid
    token = Settings.secret(settings.twilio_auth_token)
    sender, service = settings.twilio_from, settings.twilio_messaging_service_sid
    if not sid and not token:
        if sender or service:
            return [
                Check(
                    "twilio",
                    False,
                    "a sender is set but TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN are not: SMS "
                    "are written to the log only, never sent",
                    _TWILIO_CREDENTIALS,
                )
            ]
        return [
            Check(
                "twilio",
                True,
                NOT_CONFIGURED + "SMS are written to the log only, never sent (R13: candidates "
                "are not told by SMS that a notice is waiting)",
                "to send SMS, set TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN and TWILIO_FROM or "
                "TWILIO_MESSAGING_SERVICE_SID",
            )
        ]
    if not sid or not token:
        missing = "TWILIO_AUTH_TOKEN" if sid else "TWILIO_ACCOUNT_SID"
        return [
            Check(
                "twilio",
                False,
                f"{missing} is not set: SMS are written to the log only, never sent",
                _TWILIO_CREDENTIALS,
            )
        ]
    if not online:
        via = f"messaging service {service}" if service else f"sender {sender}"
        if not sender and not service:
            return [_no_sender()]
        return [Check("twilio", True, f"SMS through Twilio account {_sid(sid)}, {via}")]
    from twilio.base.exceptions import TwilioException, TwilioRestException
    from twilio.rest import Client

    from notifications.sms import http_client

    try:
        client = Client(
            sid,
            token,
            http_client=http_client(settings.twilio_api_url, timeout=TIMEOUT_S, pool_size=1),
        )
    except ValueError as error:
        return [Check("twilio account", False, str(error), "correct TWILIO_API_URL or unset it")]

    def failed(name: str, error: Exception, what: str) -> Check:
        if isinstance(error, TwilioRestException):
            if error.status == 401:
                return Check(
                    name,
                    False,
                    f"Twilio refused TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN ({error.code} "
                    f"{_first_line(Exception(error.msg))})",
                    _TWILIO_CREDENTIALS,
                )
            return Check(
                name, False, f"Twilio answered {error.status} ({error.code}) for {what}", None
            )
        return Check(
            name,
            False,
            f"cannot reach Twilio at {settings.twilio_api_url} ({_first_line(error)})",
            "check this machine's network and proxy settings (and TWILIO_API_URL if set)",
        )

    try:
        account = client.api.v2010.accounts(sid).fetch()
    except (TwilioException, OSError) as error:  # requests' errors are OSErrors
        return [failed("twilio account", error, "the account")]
    checks = [_account_check(account, sid)]
    try:
        checks.append(_sender_check(client, sender, service))
    except (TwilioException, OSError) as error:
        if isinstance(error, TwilioRestException) and error.status == 404:
            checks.append(
                Check(
                    "twilio sender",
                    False,
                    f"this account has no messaging service {service}",
                    "copy the service's SID (MG…) from Messaging → Services in the Twilio "
                    "console into TWILIO_MESSAGING_SERVICE_SID",
                )
            )
        else:
            checks.append(failed("twilio sender", error, "the sender"))
    return checks


_TWILIO_CREDENTIALS = (
    "copy the Account SID (AC…) and Auth Token from the Twilio console (Account info) into "
    "TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN"
)


def _sid(sid: str) -> str:
    return f"{sid[:2]}…{sid[-4:]}" if len(sid) > 8 else sid


def _no_sender() -> Check:
    return Check(
        "twilio sender",
        False,
        "neither TWILIO_FROM nor TWILIO_MESSAGING_SERVICE_SID is set: `examdesk serve` cannot "
        "start the notifier",
        "set TWILIO_FROM (a number of the account in +47… form, or an alphanumeric sender of "
        "at most 11 characters) or TWILIO_MESSAGING_SERVICE_SID (MG…)",
    )


def _account_check(account: Any, sid: str) -> Check:
    name = f"{account.friendly_name} ({_sid(sid)})"
    if account.status != "active":
        return Check(
            "twilio account",
            False,
            f"account {name} is {account.status}: it cannot send",
            "reactivate it in the Twilio console, or use an active account",
        )
    if (account.type or "").lower() == "trial":
        return Check(
            "twilio account",
            False,
            f"account {name} is a trial account: it sends only to verified numbers, with a "
            "trial notice in every SMS",
            "upgrade the account in the Twilio console before exam day",
        )
    return Check("twilio account", True, f"account {name} is active")


def _sender_check(client: Any, sender: str | None, service: str | None) -> Check:
    if service:
        found = client.messaging.v1.services(service).fetch()
        also = " (TWILIO_FROM is not used while it is set)" if sender else ""
        return Check(
            "twilio sender", True, f"messaging service {found.friendly_name} ({service}){also}"
        )
    if not sender:
        return _no_sender()
    if any(ch.isalpha() for ch in sender):
        if not _ALPHANUMERIC_SENDER.fullmatch(sender):
            return Check(
                "twilio sender",
                False,
                f"TWILIO_FROM '{sender[:20]}' is not a phone number, and an alphanumeric "
                "sender is at most 11 letters, digits and spaces",
                "shorten it, or use a phone number of the account (+47…)",
            )
        return Check(
            "twilio sender",
            True,
            f"alphanumeric sender '{sender}' (one-way: candidates cannot answer it; "
            "allowed in Norway)",
        )
    if _SHORT_CODE.fullmatch(sender):
        codes = client.api.v2010.accounts(client.account_sid).short_codes.list(
            short_code=sender, limit=1
        )
        if codes:
            return Check("twilio sender", True, f"short code {sender} of this account")
        return Check(
            "twilio sender",
            False,
            f"TWILIO_FROM {sender} is not a short code of this account",
            "use a phone number or short code listed in the Twilio console",
        )
    if not sender.startswith("+"):
        return Check(
            "twilio sender",
            False,
            f"TWILIO_FROM {sender} is not in E.164 form",
            "write the number with its country code, e.g. +4759440000",
        )
    numbers = client.incoming_phone_numbers.list(phone_number=sender, limit=1)
    if not numbers:
        return Check(
            "twilio sender",
            False,
            f"TWILIO_FROM {sender} is not a phone number of this account",
            "use a number listed under Phone Numbers → Active numbers in the Twilio console",
        )
    capabilities = numbers[0].capabilities or {}
    if capabilities.get("sms") is False:
        return Check(
            "twilio sender",
            False,
            f"TWILIO_FROM {sender} cannot send SMS",
            "use a number of the account with SMS capability",
        )
    return Check("twilio sender", True, f"TWILIO_FROM {sender} is a number of this account")


# ---------------------------------------------------------------- e-mail


def check_email(settings: Settings, *, online: bool) -> Check:
    from notifications.transports import SmtpTransport

    url = Settings.secret(settings.smtp_url)
    if not url:
        return Check(
            "e-mail",
            True,
            NOT_CONFIGURED + "e-mails are written to the log only, never sent (R13: candidates "
            "of home exams over 6 hours, assignments and theses are not told by e-mail)",
            "to send them, set SMTP_URL (smtp://user:password@host:587) and MAIL_FROM",
        )
    try:
        transport = SmtpTransport(url, settings.mail_from or "")
    except ValueError as error:
        return Check("e-mail", False, str(error), "correct SMTP_URL")
    where = f"{transport.host}:{transport.port}"
    if not settings.mail_from or "@" not in settings.mail_from:
        return Check(
            "e-mail",
            False,
            "MAIL_FROM is not set to an address: `examdesk serve` cannot start the notifier"
            if not settings.mail_from
            else f"MAIL_FROM '{settings.mail_from[:60]}' is not an e-mail address",
            "set MAIL_FROM to the sender address, e.g. exam-support@example.org",
        )
    if not online:
        return Check("e-mail", True, f"e-mail through {where} from {settings.mail_from}")
    return _smtp_login(transport, where)


def _smtp_login(transport: Any, where: str) -> Check:
    fix_address = "check host and port in SMTP_URL (587 with STARTTLS, or smtps:// on 465)"
    try:
        if transport.secure:
            smtp: smtplib.SMTP = smtplib.SMTP_SSL(
                transport.host,
                transport.port,
                timeout=TIMEOUT_S,
                context=ssl.create_default_context(),
            )
            security = "TLS"
        else:
            smtp = smtplib.SMTP(transport.host, transport.port, timeout=TIMEOUT_S)
            smtp.ehlo()
            security = "no TLS"
            if smtp.has_extn("starttls"):
                smtp.starttls(context=ssl.create_default_context())
                smtp.ehlo()
                security = "STARTTLS"
    except ssl.SSLError as error:
        return Check(
            "e-mail",
            False,
            f"TLS with {where} failed ({_first_line(error)})",
            "check the server's certificate and SMTP_URL's scheme (smtps:// for port 465)",
        )
    except (OSError, smtplib.SMTPException) as error:
        return Check(
            "e-mail", False, f"cannot connect to {where} ({_first_line(error)})", fix_address
        )
    try:
        if not transport.user:
            return Check(
                "e-mail",
                True,
                f"connected to {where} ({security}); no login, as SMTP_URL has no user",
            )
        smtp.login(transport.user, transport.password or "")
        return Check("e-mail", True, f"logged in to {where} as {transport.user} ({security})")
    except smtplib.SMTPAuthenticationError as error:
        return Check(
            "e-mail",
            False,
            f"{where} refused the login of {transport.user} ({error.smtp_code} "
            f"{_smtp_text(error.smtp_error)})",
            "check user and password in SMTP_URL (write @ : / in them as %40 %3A %2F)",
        )
    except smtplib.SMTPNotSupportedError:
        return Check(
            "e-mail",
            False,
            f"{where} offers no login ({security})",
            "use the mail server's submission port (587 with STARTTLS, or smtps:// on 465)",
        )
    except (OSError, smtplib.SMTPException) as error:
        return Check("e-mail", False, f"{where} broke off the login ({_first_line(error)})", None)
    finally:
        with contextlib.suppress(OSError, smtplib.SMTPException):
            smtp.quit()


def _smtp_text(raw: bytes | str) -> str:
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
    return text.strip()[:200]


# ---------------------------------------------------------------- public URL


def check_public_url(settings: Settings) -> Check:
    url = settings.public_url
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.scheme not in ("http", "https") or not host:
        return Check(
            "public url",
            False,
            f"PUBLIC_URL '{url[:80]}' is not an http(s) address",
            "set PUBLIC_URL to the https address candidates' phones reach, e.g. "
            "https://exams.example.org",
        )
    base = url.rstrip("/")
    # What each live service needs from outside this machine, said where it would break.
    live = [
        (name, breaks)
        for name, on, breaks in (
            (
                "Slack over HTTP",
                slack_mode(settings) == "http",
                f"Slack could not post to {base}/slack/events",
            ),
            (
                "Twilio",
                bool(settings.twilio_account_sid and settings.twilio_auth_token),
                "links in SMS would not open on candidates' phones and Twilio could not report "
                "delivery",
            ),
            ("e-mail", settings.smtp_url is not None, "links in e-mails would not open"),
        )
        if on
    ]
    local = _only_here(host)
    if live and (parts.scheme != "https" or local):
        why = "points at this machine or a private network" if local else "is not https"
        names = [name for name, _ in live]
        return Check(
            "public url",
            False,
            f"PUBLIC_URL {url} {why}, but {' and '.join(names)} "
            f"{'is' if len(names) == 1 else 'are'} live: {'; '.join(b for _, b in live)}",
            "set PUBLIC_URL to the https address the outside world reaches examdesk at, e.g. "
            "https://exams.example.org",
        )
    if not live:
        return Check(
            "public url",
            True,
            f"{url}: fine while no SMS, e-mail or Slack request comes from outside this machine",
        )
    return Check(
        "public url",
        True,
        f"{url}: candidates' links go to {base}/notices/…, Twilio reports to {base}/twilio/status",
    )


def _only_here(host: str) -> bool:
    if host == "localhost" or host.endswith((".localhost", ".local", ".internal")):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_private or address.is_loopback or address.is_unspecified


# ---------------------------------------------------------------- webhooks


TEST_EVENT_TYPE = "doctor.test"


def check_webhooks(settings: Settings, *, online: bool) -> list[Check]:
    urls = settings.webhook_urls.split()
    secret = Settings.secret(settings.webhook_secret)
    if not urls:
        return [
            Check(
                "webhooks",
                True,
                NOT_CONFIGURED + "changes are not sent to other systems such as an exam "
                "platform connector (WEBHOOK_URLS is not set)",
            )
        ]
    if not secret:
        return [
            Check(
                "webhooks",
                False,
                "WEBHOOK_URLS is set but WEBHOOK_SECRET is not: events cannot be signed",
                _SECRET_FIX,
            )
        ]
    problem = _secret_problem(secret)
    if problem:
        return [Check("webhooks", False, problem, _SECRET_FIX)]
    checks = []
    for url in urls:
        shown = _public_part(url)
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            checks.append(
                Check(
                    "webhook", False, f"{shown[:80]} is not an http(s) URL", "correct WEBHOOK_URLS"
                )
            )
        elif not online:
            checks.append(Check("webhook", True, f"{shown}, signed with WEBHOOK_SECRET"))
        else:
            checks.append(_send_test_event(url, shown, secret, settings.tz))
    return checks


_SECRET_FIX = (
    "set WEBHOOK_SECRET to whsec_ followed by base64 of 24 to 64 random bytes, the same in the "
    "receivers: python3 -c \"import base64, secrets; print('whsec_' + "
    'base64.b64encode(secrets.token_bytes(32)).decode())"'
)


def _secret_problem(secret: str) -> str | None:
    if not secret.startswith("whsec_"):
        return "WEBHOOK_SECRET does not start with whsec_ (Standard Webhooks)"
    try:
        key = base64.b64decode(secret.removeprefix("whsec_"), validate=True)
    except (binascii.Error, ValueError):
        return "WEBHOOK_SECRET is not whsec_ followed by base64"
    if len(key) < 24:
        return f"WEBHOOK_SECRET holds {len(key)} bytes; use 24 to 64 random bytes"
    return None


def _public_part(url: str) -> str:
    """A URL without credentials or query, which may hold tokens, for showing."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def test_event(now_iso: str) -> dict[str, Any]:
    return {
        "type": TEST_EVENT_TYPE,
        "timestamp": now_iso,
        "data": {
            "test": None,
            "actor": "examdesk doctor",
            "reason": "a test event from `examdesk doctor`; nothing has changed",
            "candidates": [],
        },
    }


def signed_request(url: str, secret: str, event: dict[str, Any]) -> urllib.request.Request:
    from standardwebhooks.webhooks import Webhook

    body = json.dumps(event, ensure_ascii=False)
    message_id = f"msg_{uuid.uuid4().hex}"
    # Receivers check the timestamp against their own wall clock, as they do Slack's.
    sent = clock.wall(clock.now())
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "examdesk-doctor",
        "webhook-id": message_id,
        "webhook-timestamp": str(int(sent.timestamp())),
        "webhook-signature": Webhook(secret).sign(message_id, sent, body),
    }
    return urllib.request.Request(url, data=body.encode(), headers=headers, method="POST")


def _send_test_event(url: str, shown: str, secret: str, tz: ZoneInfo) -> Check:
    event = test_event(iso(clock.now(), tz) or "")
    request = signed_request(url, secret, event)
    try:
        with _opened(request) as response:
            status = response.status
    except urllib.error.HTTPError as error:
        status = error.code
    except (urllib.error.URLError, OSError) as error:
        reason = str(getattr(error, "reason", error))[:200]
        return Check(
            "webhook",
            False,
            f"{shown} cannot be reached ({reason})",
            "check the URL in WEBHOOK_URLS and that the receiver runs",
        )
    if 200 <= status < 300:
        return Check("webhook", True, f"{shown} answered {status} to a signed test event")
    hint = (
        "the receiver must verify with the same WEBHOOK_SECRET"
        if status in (401, 403)
        else "the receiver must accept the event (any type) and answer 2xx"
    )
    return Check("webhook", False, f"{shown} answered {status} to a signed test event", hint)


@contextlib.contextmanager
def _opened(request: urllib.request.Request) -> Iterator[Any]:
    # Redirects are not followed: a receiver that moved should be configured where it is.
    opener = urllib.request.build_opener(_NoRedirect)
    response = opener.open(request, timeout=TIMEOUT_S)
    try:
        yield response
    finally:
        response.close()


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


# ---------------------------------------------------------------- registry folder


def check_registry(settings: Settings, *, read_exports: bool) -> Check:
    """The folder readable, and (``read_exports``) its newest exports usable as files."""
    from commands import registry
    from commands.errors import InvalidInput

    folder = settings.registry_dir
    if folder is None:
        return Check(
            "registry",
            True,
            NOT_CONFIGURED + "REGISTRY_DIR is not set: tests and candidates come only from "
            "`examdesk import`; deadlines are not refreshed every 30 minutes (R11)",
            "to refresh them, set REGISTRY_DIR to the folder where the student registry's "
            "exports land",
        )
    if not folder.exists():
        return Check(
            "registry",
            False,
            f"REGISTRY_DIR {folder} does not exist",
            "create the folder or correct the path",
        )
    if not folder.is_dir():
        return Check("registry", False, f"REGISTRY_DIR {folder} is not a folder", None)
    if not os.access(folder, os.R_OK | os.X_OK):
        return Check(
            "registry",
            False,
            f"REGISTRY_DIR {folder} cannot be read by user {getpass.getuser()}",
            "give that user read access to the folder and its files",
        )
    found = []
    kinds = (
        ("tests", registry.TEST_COLUMNS, registry.TEST_REQUIRED),
        ("candidates", registry.CANDIDATE_COLUMNS, registry.CANDIDATE_REQUIRED),
    )
    for prefix, columns, required in kinds:
        path = registry.newest_export(folder, prefix)
        if path is None:
            continue
        if not read_exports:
            found.append(path.name)
            continue
        try:
            rows = registry.read_rows(path, columns, required)
        except InvalidInput as error:
            return Check(
                "registry",
                False,
                f"the newest {prefix} export is not usable: {error.message}",
                "ask for a new export from the student registry",
            )
        found.append(f"{path.name} ({len(rows)} rows)")
    if not found:
        return Check(
            "registry",
            True,
            f"REGISTRY_DIR {folder} is readable; no export in it yet (tests*.csv|xlsx, "
            "candidates*.csv|xlsx)",
        )
    return Check("registry", True, f"REGISTRY_DIR {folder} is readable; newest: {', '.join(found)}")
