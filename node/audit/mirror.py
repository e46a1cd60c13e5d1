"""Keep the audit mirror (SQL) in step with the chain, and check it against the chain."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from node.chain.abc import ChainClientAPI
from storage.abc import AuditMirrorAPI

_MAX_BLOCKS_PER_ROUND = 2000  # bounds one get_logs call on a long chain


def sync_mirror(*, chain: ChainClientAPI, mirror: AuditMirrorAPI) -> int:
    """Mirror the events of the next blocks (up to the head); return how many blocks it
    advanced (0: caught up)."""
    start = max(mirror.mirror_cursor() + 1, chain.deployment.block_number)
    head = chain.head_block()
    if start > head:
        return 0
    end = min(head, start + _MAX_BLOCKS_PER_ROUND - 1)
    events = chain.audit_events(from_block=start, to_block=end)
    mirror.mirror_events([dataclasses.asdict(e) for e in events], end)
    return end - start + 1


def _key(event: dict[str, Any]) -> tuple[int, int]:
    return int(event["block_number"]), int(event["log_index"])


def _normal(value: Any) -> Any:
    if isinstance(value, bytes | bytearray):
        return "0x" + bytes(value).hex()
    if isinstance(value, str) and value.startswith("0x"):
        return value.lower()
    return value


def _same(a: dict[str, Any], b: dict[str, Any]) -> bool:
    if a["event"] != b["event"] or _normal(a["tx_hash"]) != _normal(b["tx_hash"]):
        return False
    args_a = {k: _normal(v) for k, v in (a.get("args") or {}).items()}
    args_b = {k: _normal(v) for k, v in (b.get("args") or {}).items()}
    return args_a == args_b


@dataclass
class MirrorReport:
    cursor: int
    checked: int = 0
    missing: list[tuple[int, int]] = field(default_factory=list)  # on chain, not mirrored
    extra: list[tuple[int, int]] = field(default_factory=list)  # mirrored, not on chain
    different: list[tuple[int, int]] = field(default_factory=list)

    @property
    def consistent(self) -> bool:
        return not (self.missing or self.extra or self.different)


def verify_mirror(
    *, chain: ChainClientAPI, mirror: AuditMirrorAPI, limit: int = 1_000_000
) -> MirrorReport:
    """Compare every mirrored event with the chain's, up to the mirror's cursor."""
    cursor = mirror.mirror_cursor()
    report = MirrorReport(cursor)
    if cursor < 0:
        return report
    on_chain = {
        _key(e): e for e in (dataclasses.asdict(x) for x in chain.audit_events(to_block=cursor))
    }
    # The mirror worker may have synced further blocks since the cursor was read (the
    # chain query above takes a while): only the blocks up to the cursor are compared.
    mirrored = {
        _key(e): e for e in mirror.mirrored_events(limit=limit) if int(e["block_number"]) <= cursor
    }
    report.checked = len(on_chain)
    report.missing = sorted(on_chain.keys() - mirrored.keys())
    report.extra = sorted(mirrored.keys() - on_chain.keys())
    report.different = sorted(
        k for k in on_chain.keys() & mirrored.keys() if not _same(on_chain[k], mirrored[k])
    )
    return report
