"""uvicorn's access log without query strings.

A query string can carry what a path never does: filters such as ``?patient=...&category=``
(which patient has which kind of record) or whatever a client mistakenly put there. The
access log keeps the method, the path (ids and addresses only), the parameter names and
the status; the values are dropped before any handler sees the line.
"""

from __future__ import annotations

import logging
from urllib.parse import parse_qsl

__all__ = ["install_access_log_redaction", "redact_query"]

_ACCESS_LOGGER = "uvicorn.access"


def redact_query(path: str) -> str:
    """``/records?patient=0x..&limit=5`` -> ``/records?patient&limit``."""
    base, sep, query = path.partition("?")
    if not sep:
        return path
    names = dict.fromkeys(name for name, _ in parse_qsl(query, keep_blank_values=True))
    return f"{base}?{'&'.join(names)}" if names else base


class _RedactQuery(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        # uvicorn logs: '%s - "%s %s HTTP/%s" %d' with (client, method, path, version, status)
        args = record.args
        if isinstance(args, tuple) and len(args) >= 3 and isinstance(args[2], str):
            record.args = (*args[:2], redact_query(args[2]), *args[3:])
        return True


_FILTER = _RedactQuery()


def install_access_log_redaction() -> None:
    """Strip query values from uvicorn's access log (idempotent)."""
    logger = logging.getLogger(_ACCESS_LOGGER)
    if _FILTER not in logger.filters:
        logger.addFilter(_FILTER)
