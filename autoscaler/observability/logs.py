"""Logging set-up: one line per event, as text for people or JSON for log shippers.

Structured fields travel in ``extra=`` (``event``, ``service``, ``desired``...): the text
format shows the message alone (it already reads as a sentence), the JSON format adds every
extra field so a shipper can filter on ``event="action"`` without parsing prose.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any, Literal, TextIO

# A log line quotes outside text (Docker's and Prometheus' answers, exception messages):
# each source bounds its own, and these are the last bounds before the log, so a 5 MB
# answer can never become a 5 MB line per tick. A traceback keeps its end (the exception).
MAX_MESSAGE_CHARS = 4000
MAX_TRACEBACK_CHARS = 8000

# Attributes every LogRecord has; anything else on a record came from ``extra=``.
_STANDARD_ATTRIBUTES = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


def _clip(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text):,} characters)"


def _clip_traceback(text: str) -> str:
    if len(text) <= MAX_TRACEBACK_CHARS:
        return text
    head = MAX_TRACEBACK_CHARS // 2
    return f"{text[:head]}\n... ({len(text) - MAX_TRACEBACK_CHARS:,} characters cut) ...\n{text[-head:]}"


class BoundedTextFormatter(logging.Formatter):
    """The text format, with the message and the traceback bounded as in JSON."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = _clip(record.message, MAX_MESSAGE_CHARS)
        return super().formatMessage(record)

    def formatException(self, ei: Any) -> str:
        return _clip_traceback(super().formatException(ei))


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, then the ``extra=`` fields."""

    def format(self, record: logging.LogRecord) -> str:
        body: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": _clip(record.getMessage(), MAX_MESSAGE_CHARS),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD_ATTRIBUTES and not key.startswith("_"):
                body[key] = value
        if record.exc_info:
            body["exception"] = _clip_traceback(self.formatException(record.exc_info))
        return json.dumps(body, default=str)


TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


def configure_logging(
    fmt: Literal["text", "json"] = "text", level: str = "INFO", stream: TextIO | None = None
) -> logging.Handler:
    """Send the ``autoscaler`` loggers to ``stream`` (stderr) in ``fmt``; returns the handler."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else BoundedTextFormatter(TEXT_FORMAT))
    logger = logging.getLogger("autoscaler")
    for old in list(logger.handlers):
        logger.removeHandler(old)
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False
    return handler
