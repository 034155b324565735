"""A Socket Mode endpoint on a loopback port, for `quorum socket` tests: the fake Slack's
`apps.connections.open` hands out its URL (`fake_slack.socket_mode_url = server.url`)."""

from __future__ import annotations

import json
import queue
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from websockets.sync.server import ServerConnection, serve


class FakeSocketMode:
    """A Socket Mode endpoint: sends queued envelopes to the client, records what it answers."""

    def __init__(self) -> None:
        self.outgoing: queue.Queue[dict[str, Any]] = queue.Queue()
        self.acks: queue.Queue[dict[str, Any]] = queue.Queue()
        self.server = serve(self._session, "127.0.0.1", 0)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.server.socket.getsockname()[1]}/link/?ticket=t1"

    def _session(self, connection: ServerConnection) -> None:
        connection.send(json.dumps({
            "type": "hello", "num_connections": 1, "connection_info": {"app_id": "A0001"},
            "debug_info": {"host": "fake", "approximate_connection_time": 3600}}))
        sender = threading.Thread(target=self._send, args=(connection,), daemon=True)
        sender.start()
        for message in connection:
            self.acks.put(json.loads(message))

    def _send(self, connection: ServerConnection) -> None:
        while True:
            envelope = self.outgoing.get()
            try:
                connection.send(json.dumps(envelope))
            except Exception:
                return

    def send(self, envelope: dict[str, Any]) -> None:
        self.outgoing.put(envelope)

    def ack_of(self, envelope_id: str, timeout: float = 10) -> dict[str, Any]:
        while True:
            ack = self.acks.get(timeout=timeout)
            if ack.get("envelope_id") == envelope_id:
                return ack


@contextmanager
def fake_socket_mode() -> Iterator[FakeSocketMode]:
    server = FakeSocketMode()
    server.thread.start()
    try:
        yield server
    finally:
        server.server.shutdown()
