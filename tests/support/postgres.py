"""PostgreSQL for tests: a scratch schema on the shared server (`scratch_schema`), and a private
cluster for tests that stop and restart the server (`private_postgres`).

The shared server on 5432 is never touched: this one lives in a temporary directory owned by
`postgres`, listens on a free loopback port, and is stopped and removed afterwards, even when
the test fails.

    with private_postgres() as pg:
        Database(pg.url) ...
        pg.stop("immediate"); pg.start()
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from support.processes import free_port


@contextmanager
def scratch_schema(server_url: str, prefix: str) -> Iterator[str]:
    """A new, empty schema `<prefix>_<random>` on `server_url`: the URL of a database whose
    search path is that schema, as a fresh deployment's; dropped afterwards."""
    schema = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = create_engine(server_url)
    with admin.begin() as connection:
        connection.execute(text(f"CREATE SCHEMA {schema}"))
    try:
        url = make_url(server_url).set(drivername="postgresql+psycopg").update_query_dict(
            {"options": f"-csearch_path={schema}"})
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.begin() as connection:
            connection.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


PG_BIN = Path(os.environ.get("QUORUM_TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))
OWNER = "postgres"


class PrivateCluster:
    """One initdb'ed cluster; `pg_ctl` runs as its owner."""

    def __init__(self, directory: Path, port: int) -> None:
        self.directory = directory
        self.data = directory / "data"
        self.log = directory / "postgres.log"
        self.port = port
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"

    def _pg_ctl(self, *args: str) -> None:
        command = ["runuser", "-u", OWNER, "--", str(PG_BIN / "pg_ctl"), "-D", str(self.data),
                   *args]
        result = subprocess.run(command, capture_output=True, text=True, timeout=60)
        if result.returncode != 0:
            raise AssertionError(f"{' '.join(args)} failed: {result.stdout}{result.stderr}\n"
                                 f"{self.log.read_text()[-2000:] if self.log.exists() else ''}")

    @property
    def _options(self) -> str:
        # fsync off: nothing here survives the machine anyway, and the tests stay fast.
        return (f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1 "
                f"-c fsync=off")

    def start(self) -> None:
        self._pg_ctl("-o", self._options, "-l", str(self.log), "-w", "start")

    def stop(self, mode: str = "fast") -> None:
        """`fast` rolls back sessions and shuts down cleanly; `immediate` is a crash."""
        self._pg_ctl("-m", mode, "-w", "stop")

    def processes(self) -> list[int]:
        """The postmaster and its children (backends, background workers)."""
        postmaster = int((self.data / "postmaster.pid").read_text().split()[0])
        children = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == postmaster:
                children.append(int(stat.parent.name))
        return [postmaster, *children]

    def freeze(self) -> None:
        """SIGSTOP the whole server: connections stay open and nothing answers (a paused VM,
        a lost network), unlike a stop, where connections are refused at once."""
        for pid in self.processes():
            os.kill(pid, signal.SIGSTOP)

    def thaw(self) -> None:
        for pid in self.processes():
            os.kill(pid, signal.SIGCONT)

    def restart(self, mode: str = "fast") -> None:
        self._pg_ctl("-m", mode, "-o", self._options, "-l", str(self.log), "-w", "restart")


@contextmanager
def private_postgres() -> Iterator[PrivateCluster]:
    """initdb, start, yield, and always stop and remove the cluster; skips where it cannot run
    (not root, or no PostgreSQL binaries)."""
    if os.geteuid() != 0 or not (PG_BIN / "initdb").exists() or not shutil.which("runuser"):
        pytest.skip(f"a private PostgreSQL needs root and {PG_BIN}/initdb")
    directory = Path(tempfile.mkdtemp(prefix="quorum-pg-"))
    try:
        shutil.chown(directory, OWNER, OWNER)
        cluster = PrivateCluster(directory, free_port())
        subprocess.run(["runuser", "-u", OWNER, "--", str(PG_BIN / "initdb"), "-D",
                        str(cluster.data), "-A", "trust", "-U", "postgres", "--no-sync",
                        "-E", "UTF8", "--locale=C"],
                       check=True, capture_output=True, timeout=120)
        cluster.start()
        try:
            yield cluster
        finally:
            subprocess.run(["runuser", "-u", OWNER, "--", str(PG_BIN / "pg_ctl"), "-D",
                            str(cluster.data), "-m", "immediate", "-w", "stop"],
                           capture_output=True, timeout=60)
    finally:
        shutil.rmtree(directory, ignore_errors=True)
