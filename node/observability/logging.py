"""Structured logs: one JSON object per line (``EMR_LOG__FORMAT=json``, the default) or
plain text, with the request id, route template, status and duration of the request being
served. A last line of defence scrubs API tokens, wallet sessions and bearer credentials
from every message; the code itself logs ids and hashes, never PHI or key material."""

from __future__ import annotations

import contextvars
import json
import logging
import re
import secrets
import sys
import time
from typing import Any, Literal, TextIO

LogFormat = Literal["json", "text"]

REQUEST_ID_HEADER = "X-Request-ID"
# A caller's X-Request-ID is kept only when it is a short token of safe characters.
_SAFE_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "emr_request_id", default=None
)

_SECRETS = re.compile(
    r"(emrs?_[A-Za-z0-9_\-]{8,})"  # API tokens and wallet sessions
    r"|((?i:bearer)\s+[A-Za-z0-9._~+/\-]+=*)"  # any bearer credential
    r"|((?i:passphrase|password|pin|secret)[\"']?\s*[=:]\s*[\"']?[^\s,\"'}]+)"
)


def new_request_id(offered: str | None) -> str:
    """``offered`` when it is a safe token (1-64 of ``A-Za-z0-9._:-``), else a new one."""
    if offered is not None and _SAFE_ID.fullmatch(offered):
        return offered
    return secrets.token_hex(16)


def current_request_id() -> str | None:
    return request_id_var.get()


def scrub(text: str) -> str:
    """``text`` with credentials replaced by ``[redacted]``."""
    return _SECRETS.sub("[redacted]", text)


_EXTRA = ("route", "method", "status", "duration", "worker")


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, message, request_id and, when set on
    the record (``extra=``), route, method, status, duration (seconds)."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": scrub(record.getMessage()),
        }
        request_id = getattr(record, "request_id", None) or current_request_id()
        if request_id is not None:
            entry["request_id"] = request_id
        for key in _EXTRA:
            value = getattr(record, key, None)
            if value is not None:
                entry[key] = value
        if record.exc_info:
            entry["exception"] = scrub(self.formatException(record.exc_info))
        return json.dumps(entry, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = scrub(super().format(record))
        request_id = getattr(record, "request_id", None) or current_request_id()
        return f"{text} request_id={request_id}" if request_id else text


class StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is when a record is emitted, as logging's own
    last-resort handler does: a host that swaps stderr (a test runner's capture, an
    embedding CLI runner) and closes its stand-in leaves no handler on a closed file."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property  # type: ignore[override]
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, _value: TextIO) -> None:
        pass  # always the current sys.stderr


def configure_logging(
    fmt: LogFormat = "json", level: str = "INFO", stream: TextIO | None = None
) -> None:
    """Replace the root logger's handlers with one on ``stream`` (stderr) in ``fmt``;
    uvicorn's loggers propagate to it (their own handlers removed)."""
    handler = logging.StreamHandler(stream) if stream is not None else StderrHandler()
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        uv = logging.getLogger(name)
        uv.handlers.clear()
        uv.propagate = True
    # HTTP client libraries log every URL at INFO: paths can name a patient's address.
    for name in ("httpx", "httpcore", "urllib3", "web3.providers.HTTPProvider"):
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))
