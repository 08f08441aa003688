"""Logs: one JSON object per line, in every process (web, workers, commands).

Each line carries the ids that tie one piece of work together across processes: the web
request's ``request_id`` travels with the Celery task it queues (``appliance.tracing``), so
an answer worker's lines for a question carry the id of the request that asked it, beside
``question_id`` or ``document_id``. Operators follow one question from the browser to the
model with one search.

What people wrote stays out of the logs: question text and document text are logged only
through ``content()``, which writes their length unless ``APPLIANCE_LOG_CONTENT=true``
(a debugging aid, never for production: logs are read by more people than the audit log).

This module imports nothing of the project and reads Django's settings only when asked, so
uvicorn's parent process can use the formatter before Django is set up
(``deploy/logging.json``).
"""

from __future__ import annotations

import json
import logging
import logging.config
import os
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar, Token
from datetime import UTC, datetime
from typing import Any

# The ids bound to what this thread (or asyncio task) is doing now.
_context: ContextVar[dict[str, Any]] = ContextVar("log_context", default={})  # noqa: B039 - never mutated

# Every attribute a LogRecord has of its own; anything else came in ``extra=`` and is logged.
_RECORD_FIELDS = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
}


def configure(config: dict[str, Any]) -> None:
    """Django's LOGGING_CONFIG (and the workers' logging set-up): the dictionary config, and
    Python's warnings as log records, so a library's warning is a JSON line too."""
    logging.config.dictConfig(config)
    logging.captureWarnings(True)


def bind(**fields: Any) -> Token:
    """Add ids to every line logged from here on in this context; ``unbind`` the token."""
    return _context.set({**_context.get(), **{k: v for k, v in fields.items() if v is not None}})


def unbind(token: Token) -> None:
    _context.reset(token)


@contextmanager
def bound(**fields: Any) -> Iterator[None]:
    token = bind(**fields)
    try:
        yield
    finally:
        unbind(token)


def current() -> dict[str, Any]:
    """The ids bound now (a copy), e.g. to hand to another thread or a queued task."""
    return dict(_context.get())


def content_logged() -> bool:
    from django.conf import settings

    try:
        return bool(getattr(settings, "LOG_CONTENT", False))
    except Exception:  # settings not configured: the safe answer
        return False


def content(text: str | bytes | None) -> str:
    """Question or document text as a log may show it: its length only, unless
    ``APPLIANCE_LOG_CONTENT`` is on."""
    if text is None:
        return ""
    if content_logged():
        return text.decode(errors="replace") if isinstance(text, bytes) else text
    return f"<{len(text)} characters, not logged>"


def process_name() -> str:
    """Which of the appliance's processes this is, as the lines name it."""
    return (
        os.environ.get("APPLIANCE_WORKER_ROLE")
        or os.environ.get("APPLIANCE_PROCESS")
        or os.environ.get("APPLIANCE_LOG_PROCESS", "command")
    )


class JsonFormatter(logging.Formatter):
    """``{"time", "level", "logger", "message", "process", "pid", <bound ids>, <extra>}``,
    with a traceback as one string field, so every event is exactly one line."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "process": process_name(),
            "pid": record.process,
        }
        entry.update(_context.get())
        for name, value in vars(record).items():
            if name not in _RECORD_FIELDS and not name.startswith("_"):
                entry[name] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=False, default=str)
