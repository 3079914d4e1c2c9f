"""The fake Slack Web API and response_url of bench/commands.py, in a process of its own.

The real Slack is on other machines: a fake inside the benchmark process would parse every
change log and receipt the server posts while the clients there wait for and time their
responses, both under one GIL. Run as ``python -m bench._fake_slack PORT``; the benchmark
counts what arrived through ``GET /_calls`` (tests/fake_slack.py).
"""

from __future__ import annotations

import signal
import sys
import threading

import httpx

from bench._support import Child, FakeSlack, child_env, free_port, wait_for


class RemoteSlack:
    """Starts the fake in a child process and asks it what it has received."""

    def __init__(self) -> None:
        port = free_port()
        self.base_url = f"http://127.0.0.1:{port}"
        self.api_url = f"{self.base_url}/api/"
        self.child = Child(
            [sys.executable, "-m", "bench._fake_slack", str(port)], child_env(), "fake-slack"
        )
        self._http = httpx.Client(base_url=self.base_url, timeout=5)
        wait_for(self._up, timeout=30, what="the fake Slack API")
        self._responses = 0

    def _up(self) -> bool:
        if not self.child.alive():
            raise RuntimeError("the fake Slack API exited:\n" + self.child.output())
        try:
            return self._http.get("/_calls").status_code == 200
        except httpx.HTTPError:
            return False

    def response_url(self) -> str:
        self._responses += 1
        return f"{self.base_url}/commands/T1/{self._responses}/hook"

    def count(self, method: str, contains: str | None = None) -> int:
        params = {"contains": contains} if contains is not None else None
        return self._http.get("/_calls", params=params).json().get(method, 0)

    def wait_for(self, method: str, count: int, timeout: float = 30) -> None:
        wait_for(
            lambda: self.count(method) >= count,
            timeout=timeout,
            what=f"{count} {method} call(s) at the fake Slack API",
            every=0.002,
        )

    def close(self) -> None:
        self._http.close()
        self.child.stop()


def main(port: int) -> int:
    slack = FakeSlack(port=port)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    while not stop.wait(0.5):
        pass
    slack.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1])))
