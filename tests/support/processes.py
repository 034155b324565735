"""Real server processes beside the tests (Alertmanager, MLflow, `quorum serve`)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import httpx

from support.slack_requests import SIGNING_SECRET
from support.waiting import eventually

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def running(command: Sequence[str], *, ready_url: str, log_path: Path,
            env: Mapping[str, str] | None = None, cwd: Path | None = None,
            timeout: float = 30) -> Iterator[subprocess.Popen[bytes]]:
    """Start `command`, wait until `ready_url` answers 200, and stop it afterwards.

    Its output goes to `log_path`; if it dies while starting, the failure shows the log's end.
    """
    with log_path.open("w") as log:
        process = subprocess.Popen(list(command), stdout=log, stderr=subprocess.STDOUT,
                                   env=dict(env) if env is not None else None, cwd=cwd)
        try:
            def ready() -> bool:
                assert process.poll() is None, log_path.read_text()[-3000:]
                try:
                    return httpx.get(ready_url, timeout=1).status_code == 200
                except httpx.TransportError:
                    return False

            eventually(ready, timeout=timeout)
            yield process
        finally:
            stop(process)


def stop(process: subprocess.Popen[bytes], grace: float = 10) -> None:
    """SIGTERM, then SIGKILL if it has not exited within `grace` seconds."""
    process.terminate()
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@contextmanager
def quorum_serve(database_url: str, slack_api_url: str, slack_token: str, log_path: Path,
                 *, args: Sequence[str] = (), ready_timeout: float = 90,
                 **settings: str) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """A real `quorum serve` process on a free port, talking to the fake Slack at
    `slack_api_url`; yields the process and its base URL. `settings` are extra environment
    variables (e.g. QUORUM_OUTBOX_LEASE_SECONDS="3"); `args` go to `serve` (`--no-worker`)."""
    base = {key: value for key, value in os.environ.items()
            if not key.startswith(("SLACK_", "QUORUM_", "DATABASE_URL", "PORT", "HOST"))}
    port = free_port()
    env = {**base, "SLACK_BOT_TOKEN": slack_token, "SLACK_SIGNING_SECRET": SIGNING_SECRET,
           "SLACK_API_URL": slack_api_url, "DATABASE_URL": database_url, "HOST": "127.0.0.1",
           "PORT": str(port), "PYTHONPATH": str(ROOT), **settings}
    url = f"http://127.0.0.1:{port}"
    with running([sys.executable, "-m", "bot.cli", "serve", *args], env=env, cwd=ROOT,
                 timeout=ready_timeout,
                 ready_url=f"{url}/healthz", log_path=log_path) as process:
        yield process, url
