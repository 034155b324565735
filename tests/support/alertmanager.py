"""A real Alertmanager (Debian's `prometheus-alertmanager`) on a loopback port, its webhook
receiver pointing at a Quorum under test."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from support.processes import free_port, running

BINARY = "prometheus-alertmanager"
CONFIG = """\
route:
  receiver: quorum
  group_by: [alertname, project]
  group_wait: 1s
  group_interval: 2s
  repeat_interval: 1h
receivers:
  - name: quorum
    webhook_configs:
      - url: {url}/hooks/alertmanager
        send_resolved: true
        http_config:
          authorization:
            type: Bearer
            credentials: {token}
"""


def binary() -> str:
    """The installed program, or a failure that says how to install it."""
    found = shutil.which(BINARY) or (f"/usr/bin/{BINARY}"
                                     if os.access(f"/usr/bin/{BINARY}", os.X_OK) else None)
    if found is None:
        pytest.fail(f"{BINARY} is not installed: run scripts/ensure_alertmanager.sh "
                    f"(make test does)")
    return found


@contextmanager
def running_alertmanager(quorum_url: str, token: str, directory: Path,
                         port: int | None = None) -> Iterator[str]:
    """Alertmanager notifying `quorum_url` with `token`, grouping quickly; yields its URL."""
    port = port or free_port()
    url = f"http://127.0.0.1:{port}"
    config = directory / "alertmanager.yml"
    config.write_text(CONFIG.format(url=quorum_url, token=token))
    (directory / "data").mkdir(exist_ok=True)
    command = [binary(), f"--config.file={config}", f"--storage.path={directory / 'data'}",
               f"--web.listen-address=127.0.0.1:{port}", f"--web.external-url={url}",
               "--cluster.listen-address=", "--log.level=warn"]
    with running(command, ready_url=f"{url}/-/ready", log_path=directory / "alertmanager.log",
                 timeout=15):
        yield url
