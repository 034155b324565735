"""Running the `quorum` command line inside the test process (a subprocess costs seconds)."""

from __future__ import annotations

import io
import os
from contextlib import redirect_stderr, redirect_stdout

import pytest

from bot import cli


def run_quorum(monkeypatch: pytest.MonkeyPatch, *argv: str,
               **env: str) -> tuple[int, str, str]:
    """`quorum ARGV` with no Quorum variables in the environment but `env`: (code, out, err)."""
    for key in list(os.environ):
        if key.startswith(("SLACK_", "QUORUM_")) or key == "DATABASE_URL":
            monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = cli.main(list(argv))
    return code, out.getvalue(), err.getvalue()
