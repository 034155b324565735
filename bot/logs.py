"""Logging for every `quorum` command: plain text, or one JSON object a line
(`QUORUM_LOG_FORMAT=json`) for log pipelines.

What a request was (its id, the workspace, the slash command) is kept in a context variable
while it is served, so that every line logged on its behalf carries it, on whichever thread.
"""

from __future__ import annotations

import json
import logging
import sys
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

# Set by `bot.web` while it serves a request: request_id, and team and command when known.
request_context: ContextVar[dict[str, str] | None] = ContextVar("quorum_request",
                                                                 default=None)

# Fields a log call may add with `extra=` and the JSON line then carries.
EXTRA_FIELDS = ("request_id", "team", "command", "route", "status", "latency_ms")
# Libraries that are chatty at INFO about things an operator does not act on.
QUIET_LOGGERS = ("alembic", "apscheduler")


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message, the request's context and any
    of EXTRA_FIELDS, and the traceback (as one string) when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(
                timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update(request_context.get() or {})
        for name in EXTRA_FIELDS:
            value = record.__dict__.get(name)
            if value is not None:
                entry[name] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """The plain format, with the request id appended when the line belongs to a request."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        context = request_context.get()
        return f"{line} [request {context['request_id']}]" if context else line


def configure_logging(fmt: str = "text", level: int = logging.INFO) -> None:
    """Send every logger's records to standard error in `fmt` ("text" or "json").

    Like `logging.basicConfig`, this leaves a root logger that already has handlers alone
    (a test runner's, or a program embedding Quorum's, which then decides the format)."""
    root = logging.getLogger()
    if not root.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
        root.addHandler(handler)
        root.setLevel(level)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
