"""Structured logs: one JSON object per line, so operators can grep and ship them.

`log_event` is the one way the code logs a business event. It never receives secrets:
callers pass ids (sessionId, trxId, streamId, eventId), never tokens or keys.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from typing import Any

import msgspec
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestPayloadError


def log_event(logger: logging.Logger, event: str, *, level: int = logging.INFO,
              **fields: Any) -> None:
    if logger.isEnabledFor(level):
        logger.log(level, event, extra={"event_fields": fields})


class JsonFormatter(logging.Formatter):
    """Cheap enough for a line per request: msgspec encodes, and the timestamp's
    seconds part is formatted once per second, not once per line."""

    _second = -1
    _second_text = ""

    def __init__(self, worker: int | None = None) -> None:
        super().__init__()
        # Which of GATEWAY_WORKERS wrote the line, on every line of that process.
        self._worker = {} if worker is None else {"worker": worker}

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
            **self._worker,
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


class LoopBatchedHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes the lines logged during one turn of the event loop in one write.

    stderr is line-buffered: a line per request is a syscall per request. Here a burst of
    requests costs one. Lines wait at most until the loop's next turn; outside a running
    loop (start-up, shutdown, other threads) they are written at once.
    """

    def __init__(self, stream: Any) -> None:
        super().__init__(stream)
        self._pending: list[str] = []
        self._scheduled = False

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
        except Exception:
            self.handleError(record)
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._write([*self._take(), line])
            return
        self._pending.append(line)
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._write_pending)

    def _take(self) -> list[str]:
        lines, self._pending = self._pending, []
        return lines

    def _write_pending(self) -> None:
        with self.lock:  # type: ignore[union-attr]
            self._scheduled = False
            self._write(self._take())

    def _write(self, lines: list[str]) -> None:
        if lines:
            self.stream.write("\n".join(lines) + "\n")
            self.flush()

    def close(self) -> None:
        with self.lock:  # type: ignore[union-attr]
            self._write(self._take())
        super().close()


class MalformedHttpFilter(logging.Filter):
    """aiohttp logs a request it cannot even parse (invalid bytes in the URL, a broken
    header) as an error with a traceback. That is the client's fault, and on the open
    internet it is routine: one warning line with the reason instead. So is a body that
    cannot be read. A client that hangs up while sending its body is one info line."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, ConnectionResetError):
            # The client hung up while we read its request: its business, one line.
            record.levelno, record.levelname = logging.INFO, "INFO"
            record.msg, record.args, record.exc_info = "client_gone_mid_request", (), None
            return True
        if isinstance(exc, RequestPayloadError):
            # A body that ends early, lies about its length or has a broken encoding:
            # answered 400 by the handler; aiohttp then meets it again while draining.
            record.levelno, record.levelname = logging.WARNING, "WARNING"
            record.msg, record.args, record.exc_info = "request_body_unreadable", (), None
            return True
        if isinstance(exc, HttpProcessingError):
            record.levelno, record.levelname = logging.WARNING, "WARNING"
            record.msg, record.args, record.exc_info = "malformed_http_request", (), None
            record.event_fields = {"status": exc.code,
                                   "reason": str(exc.message).split("\n", 1)[0][:200]}
        return True


def quiet_malformed_requests() -> None:
    """Install MalformedHttpFilter on aiohttp's server logger, once per process."""
    server_log = logging.getLogger("aiohttp.server")
    if not any(isinstance(f, MalformedHttpFilter) for f in server_log.filters):
        server_log.addFilter(MalformedHttpFilter())


def configure_logging(level: str, fmt: str, worker: int | None = None) -> None:
    # The logging HOWTO's "Optimization" switches: we never log the caller's file and
    # line, thread or process, and looking them up costs more than the line itself.
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    handler = LoopBatchedHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(worker) if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # aiohttp's access log duplicates what the gate logs, at a line per segment.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
