"""`quorum portal --dev-user NAME`: the pages on loopback with no Slack, as a shell person."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import httpx
import pytest

from bot.database import Database
from bot.shell.slack import TEAM_ID
from support.cli import run_quorum
from support.processes import free_port, running

from .conftest import seed

pytestmark = pytest.mark.slow


def test_dev_portal_serves_every_project_on_loopback_only(database_url: str,
                                                          tmp_path: Path) -> None:
    db = Database(database_url)
    seeded = seed(db, TEAM_ID)
    db.dispose()
    port = free_port()
    command = [sys.executable, "-m", "bot.cli", "portal", "--dev-user", "alice",
               "--port", str(port)]
    env = {"DATABASE_URL": database_url, "HOST": "0.0.0.0"}
    with running(command, ready_url=f"http://127.0.0.1:{port}/portal/static/portal.css",
                 log_path=tmp_path / "portal.log", env={**os.environ, **env}), \
            httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:
        home = client.get("/portal/")
        assert home.status_code == 200
        assert "Signed in as <strong>alice</strong> (dev)" in home.text
        assert "ml-churn" in home.text and "secret-launch" in home.text
        assert "Sign out" not in home.text  # nothing to sign out of
        page = client.get(f"/portal/decisions/{seeded.refs['old']}")
        assert page.status_code == 200 and "Superseded by" in page.text
        assert client.get("/", follow_redirects=True).url.path == "/portal/"
    log = (tmp_path / "portal.log").read_text()
    assert f"http://127.0.0.1:{port}/portal/ as alice (UALICE); loopback only" in log


def test_dev_portal_refuses_a_bad_name_in_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(SystemExit) as exit_info:
        run_quorum(monkeypatch, "portal", "--dev-user", "<b>")
    assert exit_info.value.code == 2
    code, _, err = run_quorum(monkeypatch, "portal", "--dev-user", "alice", "--port", "0")
    assert code == 2 and err.strip() == ("quorum: configuration error: --port: must be between "
                                         "1 and 65535")
