"""How much a client may send, and how slowly: bodies and request headers.

`RequestLimits` (ASGI middleware) bounds every route's body in size and in time;
`HeaderDeadlineProtocol` (uvicorn's h11 protocol) closes a connection whose request headers do not
arrive in time, which no middleware can see. Each refusal is counted in `quorum_http_refused`.
"""

from __future__ import annotations

import asyncio
import json

import h11
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

from bot import metrics

# Slack's payloads and every webhook fit in a few kilobytes; Slack caps its own at 3 MB of
# message text split over many requests. A larger body is refused before it is read.
BODY_LIMIT = 1024 * 1024
# A whole body must arrive within this many seconds: a client that dribbles it byte by byte
# must not hold its connection (and what it buffered) for ever; uvicorn has no such deadline.
BODY_READ_SECONDS = 10.0
# The same for a request's line and headers, from the connection (or the previous response).
HEADER_READ_SECONDS = 10.0


class HeaderDeadlineProtocol(H11Protocol):
    """uvicorn's h11 protocol, closing connections whose request headers do not arrive in time.

    uvicorn has no such deadline: its keep-alive timer runs only between requests and every
    byte received cancels it, so a client sending a header byte now and then (slow-loris) would
    hold its connection for ever. The ASGI app only sees a request once its headers are complete,
    so this cannot be a middleware; bodies are `RequestLimits`' business.
    """

    header_seconds = HEADER_READ_SECONDS
    _header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_header_deadline()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE:  # the headers are in
            self._disarm_header_deadline()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing() and self.conn.their_state is h11.IDLE:
            self._arm_header_deadline()  # the next request on this kept-alive connection

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_header_deadline()
        super().connection_lost(exc)

    def _arm_header_deadline(self) -> None:
        self._disarm_header_deadline()
        self._header_timer = self.loop.call_later(self.header_seconds, self._headers_too_slow)

    def _disarm_header_deadline(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        if self.transport.is_closing() or self.conn.their_state is not h11.IDLE:
            return
        metrics.http_refused.labels("header_timeout").inc()
        # h11 cannot answer a request it has not parsed: the 408 is written by hand.
        self.transport.write(b"HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\n"
                             b"connection: close\r\n\r\n")
        self.transport.close()


def header_deadline_protocol(seconds: float) -> type[HeaderDeadlineProtocol]:
    """The protocol class to give uvicorn (`http=`), with its own header deadline."""
    return type("HeaderDeadlineProtocol", (HeaderDeadlineProtocol,), {"header_seconds": seconds})


class RequestLimits:
    """Every route's body: at most `limit` bytes, arriving within `read_seconds` (pure ASGI).

    An announced `Content-Length` over the limit is refused before a byte of the body is read;
    a chunked body is counted as it streams and refused once it passes the limit. The body is
    read here, once, and handed on, so no endpoint ever waits on a slow client.
    """

    def __init__(self, app: ASGIApp, limit: int = BODY_LIMIT,
                 read_seconds: float = BODY_READ_SECONDS) -> None:
        self.app = app
        self.limit = limit
        self.read_seconds = read_seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        announced = dict(scope["headers"]).get(b"content-length")
        if announced is not None:
            try:
                length = int(announced)
            except ValueError:
                length = -1
            if length < 0:
                await _refuse(send, 400, "invalid_content_length",
                              "Content-Length must be a number of bytes.")
                return
            if length > self.limit:
                await _refuse(send, 413, "body_too_large", self._too_large())
                return
        try:
            async with asyncio.timeout(self.read_seconds):
                body = await self._read(receive)
        except TimeoutError:
            await _refuse(send, 408, "request_timeout",
                          f"The request body did not arrive within {self.read_seconds:g} s.")
            return
        if body is None:  # the client went away
            return
        if len(body) > self.limit:
            await _refuse(send, 413, "body_too_large", self._too_large())
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # later calls wait for the disconnect, as usual

        await self.app(scope, replay, send)

    async def _read(self, receive: Receive) -> bytes | None:
        """The whole body, or as soon as it passes the limit what came so far; None on hang-up."""
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            chunks.append(chunk)
            size += len(chunk)
            if size > self.limit or not message.get("more_body", False):
                return b"".join(chunks)

    def _too_large(self) -> str:
        return f"The request body is larger than {self.limit} bytes."


async def _refuse(send: Send, status: int, error: str, reason: str) -> None:
    """Answer without reading the rest of the request, and close the connection after it."""
    metrics.http_refused.labels(error).inc()
    body = json.dumps({"ok": False, "error": error, "reason": reason}).encode()
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
        (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})
