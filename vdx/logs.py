"""Structured logs: one JSON object per line, never document content.

Callers put facts in ``extra`` (event, code, sender, document_id, delivery_id, …); the
message text is short and fixed. Subjects, contents and attachments are never logged.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from datetime import UTC, datetime

_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        entry |= {k: v for k, v in vars(record).items() if k not in _STANDARD}
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


class _LineHandler(logging.Handler):
    """Writes each record with ONE write(2): worker processes share stderr (often a file
    opened for append), and a buffered stream would split long lines between them."""

    def __init__(self, fd: int) -> None:
        super().__init__()
        self.fd = fd

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = (self.format(record) + "\n").encode("utf-8", "backslashreplace")
            os.write(self.fd, line)
        except Exception:  # a log line must never take the worker down
            self.handleError(record)


def configure(level: int = logging.INFO) -> None:
    sys.stderr.flush()
    handler = _LineHandler(sys.stderr.fileno())
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("pika").setLevel(logging.WARNING)
