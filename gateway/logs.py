"""Structured logs: one JSON object per line, so operators can grep and ship them.

`log_event` is the one way the code logs a business event. It never receives secrets:
callers pass ids (sessionId, trxId, streamId, eventId), never tokens or keys.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

import msgspec


def log_event(logger: logging.Logger, event: str, *, level: int = logging.INFO,
              **fields: Any) -> None:
    if logger.isEnabledFor(level):
        logger.log(level, event, extra={"event_fields": fields})


class JsonFormatter(logging.Formatter):
    """Cheap enough for a line per request: msgspec encodes, and the timestamp's
    seconds part is formatted once per second, not once per line."""

    _second = -1
    _second_text = ""

    def format(self, record: logging.LogRecord) -> str:
        second = int(record.created)
        if second != self._second:
            self._second = second
            self._second_text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        entry: dict[str, Any] = {
            "ts": f"{self._second_text}.{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        entry.update(getattr(record, "event_fields", {}))
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return msgspec.json.encode(entry, enc_hook=str).decode()


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        fields = getattr(record, "event_fields", {})
        line = f"{self.formatTime(record)} {record.levelname} {record.name} {record.getMessage()}"
        if fields:
            line += " " + " ".join(f"{key}={value}" for key, value in fields.items())
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def configure_logging(level: str, fmt: str) -> None:
    # The logging HOWTO's "Optimization" switches: we never log the caller's file and
    # line, thread or process, and looking them up costs more than the line itself.
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # aiohttp's access log duplicates what the gate logs, at a line per segment.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
