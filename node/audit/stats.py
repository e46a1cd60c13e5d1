"""Counts over the audit trail for charts: reads, denied reads and break-glass per UTC day
and per hospital, and anonymous (zero-knowledge) reads."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from node.chain.models import AuditEvent


@dataclass(slots=True)
class Counts:
    reads: int = 0  # granted AccessRecorded
    denied: int = 0  # refused AccessRecorded
    break_glass: int = 0  # BreakGlassOpened


@dataclass(frozen=True, slots=True)
class AuditStats:
    days: dict[str, Counts] = field(default_factory=dict)  # "YYYY-MM-DD" (UTC), ascending
    hospitals: dict[str, Counts] = field(default_factory=dict)  # hospital address
    anonymous_reads: int = 0  # ZkAccessGranted


def utc_day(timestamp: int) -> str:
    return datetime.fromtimestamp(timestamp, UTC).date().isoformat()


def audit_stats(events: Iterable[AuditEvent]) -> AuditStats:
    """Count ``events``; days and hospitals without a read, denial or break-glass are left
    out. Anonymous reads name no hospital and count only in ``anonymous_reads``."""
    days: dict[str, Counts] = {}
    hospitals: dict[str, Counts] = {}
    anonymous = 0
    for e in events:
        if e.event == "ZkAccessGranted":
            anonymous += 1
            continue
        if e.event not in ("AccessRecorded", "BreakGlassOpened"):
            continue
        for counts in (
            days.setdefault(utc_day(e.timestamp), Counts()),
            hospitals.setdefault(str(e.args["hospital"]), Counts()),
        ):
            if e.event == "BreakGlassOpened":
                counts.break_glass += 1
            elif e.args["granted"]:
                counts.reads += 1
            else:
                counts.denied += 1
    return AuditStats(dict(sorted(days.items())), hospitals, anonymous)
