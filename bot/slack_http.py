"""A Slack Web API client that keeps one HTTP connection open between calls.

slack_sdk's `WebClient` opens a new connection (TCP and TLS handshakes) for every call through
`urllib`. The outbox worker makes its calls one after another from one thread, so it keeps one
`http.client` connection to Slack and reuses it. Everything else — arguments, headers, the
`SlackResponse`, `SlackApiError` on `ok: false`, `Retry-After` on a 429 — stays slack_sdk's:
only the transport underneath (`_perform_urllib_http_request_internal`) changes.

A connection idle for longer than `IDLE_SECONDS` is closed before the next call rather than
reused, so that a call is not lost to a connection the server has quietly dropped; any failure
closes the connection, and the next call opens a fresh one. A failed call is never repeated
here: the outbox decides (and looks a post up before repeating it).
"""

from __future__ import annotations

import http.client
import io
import threading
import time
from typing import Any
from urllib.error import HTTPError
from urllib.parse import urlsplit
from urllib.request import Request

from slack_sdk import WebClient

# Slack's load balancers keep idle connections for about a minute; stay well under it.
IDLE_SECONDS = 20.0


class KeepAliveWebClient(WebClient):
    """`WebClient` over one persistent connection (HTTP or HTTPS, no proxy)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._connection: http.client.HTTPConnection | None = None
        self._origin: tuple[str, str, int | None] | None = None
        self._last_used = 0.0
        self._lock = threading.Lock()
        self.connections_opened = 0

    def close(self) -> None:
        with self._lock:
            self._drop()

    def _drop(self) -> None:
        if self._connection is not None:
            self._connection.close()
        self._connection = None

    def _connect(self, url: str) -> http.client.HTTPConnection:
        parts = urlsplit(url)
        origin = (parts.scheme, parts.hostname or "", parts.port)
        stale = time.monotonic() - self._last_used > IDLE_SECONDS
        if self._connection is None or origin != self._origin or stale:
            self._drop()
            if parts.scheme == "https":
                self._connection = http.client.HTTPSConnection(
                    origin[1], origin[2], timeout=self.timeout, context=self.ssl)
            else:
                self._connection = http.client.HTTPConnection(origin[1], origin[2],
                                                              timeout=self.timeout)
            self._origin = origin
            self.connections_opened += 1
        self._connection.timeout = self.timeout
        if self._connection.sock is not None:
            self._connection.sock.settimeout(self.timeout)
        return self._connection

    def _perform_urllib_http_request_internal(self, url: str, req: Request) -> dict[str, Any]:
        if self.proxy is not None or not url.lower().startswith(("http://", "https://")):
            return super()._perform_urllib_http_request_internal(url, req)  # type: ignore
        with self._lock:
            connection = self._connect(url)
            parts = urlsplit(url)
            target = parts.path + (f"?{parts.query}" if parts.query else "")
            try:
                connection.request(req.get_method(), target, body=req.data,  # type: ignore
                                   headers=dict(req.header_items()))
                response = connection.getresponse()
                body = response.read()
            except http.client.HTTPException as exc:  # a malformed or cut-off answer
                self._drop()
                raise ConnectionError(f"{type(exc).__name__}: {exc}") from exc
            except BaseException:
                self._drop()
                raise
            if response.will_close:
                self._drop()
            self._last_used = time.monotonic()
        headers = response.msg
        if not 200 <= response.status < 300:
            # What urllib raises; slack_sdk reads the status, headers and body from it.
            raise HTTPError(url, response.status, response.reason, headers, io.BytesIO(body))
        charset = headers.get_content_charset() or "utf-8"
        decoded: Any = body if headers.get_content_type() == "application/gzip" \
            else body.decode(charset)
        return {"status": response.status, "headers": headers, "body": decoded}
