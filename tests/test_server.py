"""`examdesk serve` as a real process: starts with or without Slack, answers signed requests,
reports health and shuts down cleanly."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from conftest import SUPPORT, World
from fake_slack import FakeSlack
from slack_signing import SECRET, SlackSender


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Process:
    def __init__(self, env: dict[str, str], cwd: Path) -> None:
        self.port = int(env["PORT"])
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = cwd / "serve.log"
        self._log_file = self.log.open("w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bot.runtime.cli", "serve"],
            cwd=cwd,
            env=env,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
        )

    def wait_healthy(self, timeout: float = 30) -> httpx.Response:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.output()
            try:
                return httpx.get(f"{self.url}/healthz", timeout=2)
            except httpx.TransportError:
                time.sleep(0.1)
        raise AssertionError("serve did not come up:\n" + self.output())

    def output(self) -> str:
        if not self._log_file.closed:
            self._log_file.flush()
        return self.log.read_text()

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(20)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
            self._log_file.close()


@pytest.fixture
def start(database_url, tmp_path, session_factory) -> Iterator:
    started: list[Process] = []

    def run(**extra: str) -> Process:
        env = {
            k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "TWILIO_", "SMTP"))
        }
        env |= {"DATABASE_URL": database_url, "PORT": str(free_port()), **extra}
        process = Process(env, tmp_path)
        started.append(process)
        return process

    yield run
    for process in started:
        process.stop()


def test_serve_without_slack_starts_and_says_what_to_set(start):
    server = start()
    health = server.wait_healthy()
    assert health.status_code == 200
    assert health.json() == {
        "status": "ok",
        "database": "ok",
        "slack": "off",
        "sms": "log",
        "email": "log",
        "outbox": {"pending": 0, "failed": 0},
    }
    events = httpx.post(f"{server.url}/slack/events", content="x")
    assert events.status_code == 503 and "SLACK_SIGNING_SECRET" in events.json()["error"]
    assert server.stop() == 0
    log = server.output()
    assert "Slack is off (SLACK_BOT_TOKEN is not set)" in log
    assert "manifest.yml" in log and "SLACK_APP_TOKEN" in log


def test_serve_over_http_answers_signed_commands_and_posts_the_change_log(start, world: World):
    # The server the test starts lives at the world's time (10:00): before the end.
    world.add_test("FUT-1", start="2026-12-01 09:00", end="2026-12-01 13:00")
    world.add_candidates("FUT-1", [5])
    fake = FakeSlack()
    try:
        server = start(
            SLACK_BOT_TOKEN="xoxb-serve",
            SLACK_SIGNING_SECRET=SECRET,
            SLACK_API_URL=fake.api_url,
            SLACK_SUPPORT_CHANNEL="C0LOG",
        )
        assert server.wait_healthy().json()["slack"] == "http"
        slack = SlackSender(server.url)
        response = slack.command(
            "/incident-time", "FUT-1 5 add 10 clock", user=SUPPORT, response_url=fake.response_url()
        )
        assert response.status_code == 200, server.output()
        assert response.json()["text"].startswith("Incident time for candidate 5 of FUT-1")
        (post,) = fake.wait_for("chat.postMessage")
        assert post.body["channel"] == "C0LOG" and "add 10 min" in post.body["text"]
        slack.close()
        assert server.stop() == 0
    finally:
        fake.close()
    assert world.candidate("FUT-1", "5").incident_minutes == 10


def test_serve_in_socket_mode_connects_with_the_app_token(start):
    fake = FakeSlack()
    fake.answers["apps.connections.open"] = {"ok": False, "error": "invalid_auth"}
    try:
        server = start(
            SLACK_BOT_TOKEN="xoxb-serve", SLACK_APP_TOKEN="xapp-1-serve", SLACK_API_URL=fake.api_url
        )
        assert server.wait_healthy().json()["slack"] == "socket"
        (call,) = fake.wait_for("apps.connections.open")
        assert call.headers["Authorization"] == "Bearer xapp-1-serve"
        deadline = time.monotonic() + 10
        while "Socket Mode could not connect" not in server.output():
            assert time.monotonic() < deadline, server.output()
            time.sleep(0.1)
        assert server.stop() == 0
    finally:
        fake.close()


def test_serve_on_a_busy_port_fails_with_a_plain_message(start):
    with socket.socket() as busy:
        busy.bind(("0.0.0.0", 0))
        busy.listen()
        server = start(PORT=str(busy.getsockname()[1]))
        assert server.proc.wait(30) == 1
    assert "cannot listen on port" in server.output()
    assert "Traceback" not in server.output()


def _scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(f"{url}/metrics", timeout=5).text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_metrics_count_requests_by_route_deliveries_by_state_and_the_scheduler(
    start, cli, world: World
):
    world.add_test("MET-1", start="2026-12-01 09:00", end="2026-12-01 13:00")
    world.add_candidates("MET-1", [1, 2, 3])
    world.add_staff(SUPPORT)
    server = start()
    server.wait_healthy()
    assert httpx.get(f"{server.url}/notices/not-a-real-token").status_code == 404
    notice = cli("run", "--as", SUPPORT, "--yes", "/notice MET-1 Task 3 (b) reads 40 %, not 4 %.")
    assert notice.returncode == 0, notice.stderr
    deadline = time.monotonic() + 30
    while True:
        metrics = _scrape(server.url)
        logged = metrics.get(
            ("examdesk_messages_sent_total", (("channel", "sms"), ("outcome", "logged"))), 0
        )
        # The counter counts each send as it returns; the rows are written a moment later.
        stored = metrics.get(("examdesk_deliveries", (("channel", "sms"), ("state", "logged"))))
        if (logged, stored) == (3, 3) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    # Without Twilio the notifier writes SMS to the log: counted as logged, never as sent.
    assert logged == 3, server.output()
    assert metrics[("examdesk_deliveries", (("channel", "sms"), ("state", "logged")))] == 3
    assert (
        "examdesk_messages_sent_total",
        (("channel", "sms"), ("outcome", "sent")),
    ) not in metrics
    # Routes are labelled by their template: a page token never becomes a label.
    page = ("examdesk_http_requests_total", (("route", "/notices/{token}"), ("status", "404")))
    assert metrics[page] == 1
    assert not any("not-a-real-token" in str(key) for key in metrics)
    assert (
        metrics[("examdesk_http_requests_total", (("route", "/healthz"), ("status", "200")))] >= 1
    )
    assert metrics[("examdesk_scheduler_leader", ())] == 1
    assert (
        metrics[
            ("examdesk_scheduler_job_runs_total", (("job", "deliver-sweep"), ("outcome", "ok")))
        ]
        >= 1
    )
    assert server.stop() == 0
