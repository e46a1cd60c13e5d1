"""The audit trail as CSV for spreadsheets, with every cell safe to open in one: a cell
that a spreadsheet would read as a formula (it begins with = + - @, a tab or a carriage
return) is prefixed with ' (OWASP "CSV injection")."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

CSV_COLUMNS = (
    "block_number",
    "timestamp",
    "time_utc",
    "event",
    "contract",
    "tx_hash",
    "log_index",
    "patient",
    "record_id",
    "actor",
    "granted",
    "reason",
    "args_json",
)
MAX_CSV_ROWS = 100_000
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_ACTOR_ARGS = ("actor", "grantee", "clinician")
_HOSPITAL_ACTED = ("RecordAnchored", "BatchAnchored")  # the hospital is the event's actor


def safe_cell(value: str) -> str:
    """``value``, prefixed with ' if a spreadsheet would take it for a formula."""
    return "'" + value if value.startswith(_FORMULA_STARTS) else value


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def csv_row(event: Mapping[str, Any]) -> list[str]:
    """One event, as GET /audit/events gives it (``args`` JSON-ready), in CSV_COLUMNS order."""
    args: Mapping[str, Any] = event["args"]
    actor = next((args[k] for k in _ACTOR_ARGS if args.get(k) is not None), None)
    if actor is None and event["event"] in _HOSPITAL_ACTED:
        actor = args.get("hospital")
    values = [
        event["block_number"],
        event["timestamp"],
        datetime.fromtimestamp(event["timestamp"], UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        event["event"],
        event["contract"],
        event["tx_hash"],
        event["log_index"],
        args.get("patient"),
        args.get("recordId"),
        actor,
        args.get("granted") if event["event"] == "AccessRecorded" else None,
        event.get("reason"),
        json.dumps(args, sort_keys=True, separators=(",", ":"), ensure_ascii=False),
    ]
    return [safe_cell(_text(v)) for v in values]


def audit_csv(events: Iterable[Mapping[str, Any]]) -> str:
    """A header row and one row per event (RFC 4180: CRLF line ends, quoted as needed)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    writer.writerows(csv_row(e) for e in events)
    return out.getvalue()
