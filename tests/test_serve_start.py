"""What `examdesk serve` says at start: one block of what is live and what is not, the bot
token checked once with auth.test, and no false alarms."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fake_slack import FakeSlack
from test_server import Process, free_port

SIGNING_SECRET = "0123456789abcdef0123456789abcdef"


@pytest.fixture
def fake() -> Iterator[FakeSlack]:
    slack = FakeSlack()
    yield slack
    slack.close()


@pytest.fixture
def serve(database_url: str, tmp_path: Path, session_factory) -> Iterator:
    started: list[Process] = []

    def run(**extra: str) -> Process:
        prefixes = ("SLACK_", "TWILIO_", "SMTP", "MAIL_", "WEBHOOK_", "REGISTRY_", "PUBLIC_URL")
        env = {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}
        env |= {"DATABASE_URL": database_url, "PORT": str(free_port()), **extra}
        process = Process(env, tmp_path)
        started.append(process)
        return process

    yield run
    for process in started:
        process.stop()


def http_slack(fake: FakeSlack, **extra: str) -> dict[str, str]:
    return {
        "SLACK_BOT_TOKEN": "xoxb-serve-start",
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "SLACK_API_URL": fake.api_url,
        "SLACK_SUPPORT_CHANNEL": "C0SUPPORT",
        "PUBLIC_URL": "https://exams.example.org",
        **extra,
    }


def test_a_token_slack_refuses_turns_slack_off_and_says_so(serve, fake: FakeSlack):
    """A made-up xoxb token is not "slack": "http": Slack said no, so Slack is off."""
    fake.answers["auth.test"] = {"ok": False, "error": "invalid_auth"}
    server = serve(**http_slack(fake))
    assert server.wait_healthy().json()["slack"] == "off"
    events = httpx.post(f"{server.url}/slack/events", content="x")
    assert events.status_code == 503
    assert server.stop() == 0
    log = server.output()
    assert "(Slack: off)" in log
    assert "✗ slack token: Slack refused SLACK_BOT_TOKEN (invalid_auth): Slack is off" in log
    assert "Bot User OAuth Token (xoxb-…)" in log
    assert len(fake.of("auth.test")) == 1


def test_serve_checks_the_token_once_and_logs_one_quiet_block(serve, fake: FakeSlack):
    server = serve(**http_slack(fake))
    assert server.wait_healthy().json()["slack"] == "http"
    assert server.stop() == 0
    log = server.output()
    assert log.count("What is live:") == 1
    assert "(Slack: HTTP at /slack/events)" in log
    assert "✓ slack token: SLACK_BOT_TOKEN works: bot @examdesk in workspace Exam Office" in log
    assert "✓ slack channel: SLACK_SUPPORT_CHANNEL is C0SUPPORT" in log
    assert "✓ twilio: not configured: SMS are written to the log only" in log
    # Bolt's "As you gave `client` as well, `token` will be unused": not said, not true.
    assert "will be unused" not in log
    assert "WARNING" not in log and "ERROR" not in log, log
    # Only auth.test: scopes and the channel are left to `examdesk doctor`.
    assert [c.method for c in fake.calls] == ["auth.test"]


def test_slack_out_of_reach_at_start_is_said_and_slack_stays_as_set(serve, fake: FakeSlack):
    closed = f"http://127.0.0.1:{free_port()}/api/"
    server = serve(**http_slack(fake, SLACK_API_URL=closed))
    assert server.wait_healthy().json()["slack"] == "http"
    assert server.stop() == 0
    log = server.output()
    assert "✗ slack token: cannot reach Slack at http://127.0.0.1:" in log
    assert "WARNING bot.server examdesk is serving" in log  # something set up is not working


def test_a_half_set_up_service_makes_the_block_a_warning(serve):
    server = serve(TWILIO_ACCOUNT_SID="AC" + "1" * 32)
    server.wait_healthy()
    assert server.stop() == 0
    log = server.output()
    assert "WARNING bot.server examdesk is serving on port" in log
    assert "✗ twilio: TWILIO_AUTH_TOKEN is not set: SMS are written to the log only" in log
