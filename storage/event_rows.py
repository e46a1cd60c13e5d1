"""Chain events as SQL rows, shared by the audit mirrors (MySQL, SQLite).

An event is shaped like ``dataclasses.asdict(AuditEvent)``; its arguments are stored as
lossless JSON (bytes become ``{"$bytes": hex}`` and come back as bytes).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

CONSENT_EVENTS = frozenset(
    {
        "ConsentGranted",
        "ConsentRevoked",
        "BreakGlassOpened",
        "ClassConsentGranted",
        "ClassConsentRevoked",
    }
)
# Row order of event_row(); a mirror's SELECT must return EVENT_SELECT's order.
EVENT_COLUMNS = (
    "block_number, log_index, event, contract, tx_hash, patient, subject, actor, args, block_time"
)
EVENT_SELECT = "block_number, log_index, event, contract, tx_hash, args, block_time"
_BYTES_TAG = "$bytes"
_HASH_SIZE = 32


def encode_args(args: Mapping[str, Any]) -> str:
    def default(value: Any) -> Any:
        if isinstance(value, bytes | bytearray | memoryview):
            return {_BYTES_TAG: bytes(value).hex()}
        raise TypeError(f"cannot store a {type(value).__name__} in an event's arguments")

    try:
        return json.dumps(dict(args), default=default, sort_keys=True, separators=(",", ":"))
    except (TypeError, ValueError) as err:
        raise ValueError(f"event arguments are not storable: {err}") from err


def decode_args(text: str | bytes) -> dict[str, Any]:
    def hook(obj: dict[str, Any]) -> Any:
        if obj.keys() == {_BYTES_TAG}:
            return bytes.fromhex(obj[_BYTES_TAG])
        return obj

    decoded: dict[str, Any] = json.loads(text, object_hook=hook)
    return decoded


def as_bytes(value: Any, what: str) -> bytes:
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    if isinstance(value, str):
        try:
            return bytes.fromhex(value.removeprefix("0x"))
        except ValueError as err:
            raise ValueError(f"{what} is not hex") from err
    raise ValueError(f"{what} must be bytes or a hex string")


def event_row(event: Mapping[str, Any]) -> tuple[str, tuple[Any, ...]]:
    """Return the mirror table of ``event`` and its row for ``_EVENT_COLUMNS``."""
    try:
        name = str(event["event"])
        block_number = int(event["block_number"])
        log_index = int(event["log_index"])
        tx_hash = as_bytes(event["tx_hash"], "tx_hash")
        timestamp = int(event["timestamp"])
        args: Mapping[str, Any] = event.get("args") or {}
    except KeyError as err:
        raise ValueError(f"chain event lacks {err.args[0]!r}") from err
    if block_number < 0 or log_index < 0:
        raise ValueError("block_number and log_index must not be negative")
    patient = args.get("patient")
    subject_value = args.get("recordId", args.get("scope"))
    subject = None if subject_value is None else as_bytes(subject_value, "record id or scope")
    if subject is not None and len(subject) != _HASH_SIZE:
        raise ValueError(f"record id or scope must be {_HASH_SIZE} bytes")
    # The third indexed topic of each event, as the chain client's ``actor`` filter reads it.
    actor = next(
        (args[k] for k in ("grantee", "clinician", "actor", "hospital") if args.get(k)), None
    )
    table = "consent_events" if name in CONSENT_EVENTS else "audit_events"
    return table, (
        block_number,
        log_index,
        name,
        str(event.get("contract") or ""),
        tx_hash,
        None if patient is None else str(patient),
        subject,
        None if actor is None else str(actor),
        encode_args(args),
        timestamp,
    )


def row_event(row: Sequence[Any]) -> dict[str, Any]:
    """An event from a row selected as ``EVENT_SELECT``."""
    return {
        "event": row[2],
        "contract": row[3],
        "block_number": int(row[0]),
        "log_index": int(row[1]),
        "tx_hash": bytes(row[4]),
        "timestamp": int(row[6]),
        "args": decode_args(row[5]),
    }


def event_filters(
    placeholder: str,
    *,
    patient: str | None,
    record_id: bytes | None,
    actor: str | None,
    since: int | None,
    until: int | None,
) -> tuple[list[str], list[Any]]:
    """SQL conditions and parameters for a mirror query (``placeholder``: ``?`` or ``%s``)."""
    clauses: list[str] = []
    params: list[Any] = []
    for column, value in (
        ("patient =", patient),
        ("subject =", None if record_id is None else bytes(record_id)),
        ("actor =", actor),
        ("block_time >=", since),
        ("block_time <=", until),
    ):
        if value is not None:
            clauses.append(f"{column} {placeholder}")
            params.append(value)
    return clauses, params
