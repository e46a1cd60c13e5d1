"""Key-audit anchoring: the head of the hash-chained key log goes on-chain periodically, so
the log cannot be rewritten without the chain showing it."""

from __future__ import annotations

import re

from hsm.abc import KeyStoreAPI
from node.audit.abc import KeyAuditLogAPI
from node.audit.key_log import KeyAction
from node.chain.abc import ChainClientAPI
from node.flows.rotate_signer import finish_signer_rotation

_ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")


def key_audit_addresses(log: KeyAuditLogAPI, current: str) -> list[str]:
    """Every address this node signed as: the current one and those it rotated away from
    (their anchors count too)."""
    seen = [current]
    after = 0
    while batch := log.entries(after=after, action=KeyAction.SIGNER_ROTATE):
        for e in batch:
            seen += _ADDRESS.findall(e.subject)
        after = batch[-1].seq
    return list(dict.fromkeys(seen))


class KeyAuditAnchoring:
    """One round: finish a signer rotation voted meanwhile, then anchor the log's head if
    anything but the previous anchor's own signature was appended since."""

    def __init__(self, keys: KeyStoreAPI, log: KeyAuditLogAPI, chain: ChainClientAPI) -> None:
        self._keys = keys
        self._log = log
        self._chain = chain
        self._anchored: int | None = None  # the last seq anchored, read from the chain once

    def __call__(self) -> int:
        finish_signer_rotation(self._keys, self._chain)  # cheap when none is pending
        head = self._log.head()
        if head is None:
            return 0
        if self._anchored is None:
            found = self._chain.key_audit_anchors(
                key_audit_addresses(self._log, self._chain.hospital)
            )
            self._anchored = max((seq for seq, _h in found), default=0)
        # Signing the anchor adds one entry: with nothing else new, the head is anchored.
        if head.seq <= self._anchored + 1:
            return 0
        self._chain.anchor_key_audit(head.hash, head.seq)
        self._anchored = head.seq
        return 0  # one anchor per round: the next round sees the anchor's own signature
