"""Make sure the PostgreSQL server named by TEST_DATABASE_URL answers; start the local one if not.

Fails loudly (exit 1) rather than letting the suite quietly run on SQLite only.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
import time

import psycopg
from sqlalchemy.engine import make_url


def answers(dsn: str) -> str | None:
    try:
        with psycopg.connect(dsn, connect_timeout=3) as connection:
            connection.execute("SELECT 1")
        return None
    except psycopg.Error as exc:
        return str(exc).strip().splitlines()[0]


def start_local_cluster() -> None:
    versions = sorted(os.path.basename(p) for p in glob.glob("/etc/postgresql/*"))
    if not versions or not shutil.which("pg_ctlcluster"):
        return
    print(f"PostgreSQL is not answering; starting cluster {versions[-1]}/main", file=sys.stderr)
    subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", versions[-1], "main", "start"],
                   check=False)


def main() -> int:
    url = make_url(os.environ["TEST_DATABASE_URL"]).set(drivername="postgresql")
    dsn = url.render_as_string(hide_password=False)
    if answers(dsn) is None:
        return 0
    start_local_cluster()
    error = None
    for _ in range(30):
        error = answers(dsn)
        if error is None:
            return 0
        time.sleep(1)
    print(f"FATAL: PostgreSQL at {url.render_as_string()} does not answer: {error}\n"
          "Start it, point TEST_DATABASE_URL at a running server, or run "
          "`TEST_DATABASE_URL= make test` to test on SQLite only.", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
