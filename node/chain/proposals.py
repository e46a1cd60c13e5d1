"""Consortium proposals as the chain client reports them."""

from __future__ import annotations

from dataclasses import dataclass

ADMIT, REMOVE, ROTATE, CALL = 0, 1, 2, 3  # IConsortium.ProposalKind
KIND_NAMES = {ADMIT: "admit", REMOVE: "remove", ROTATE: "rotate", CALL: "call"}


@dataclass(frozen=True, slots=True)
class Proposal:
    """A Consortium proposal and its state now. ``votes`` counts the voters that are still
    members; it executes at ``votes * 2 > member_count``. For a call proposal (kind 3)
    ``target``/``data``/``description`` say what the Consortium calls on a majority."""

    proposal_id: int
    kind: int
    subject: str
    proposer: str
    created_at: int
    expires_at: int
    votes: int
    executed: bool
    member_count: int
    target: str | None = None
    data: bytes | None = None
    description: str | None = None

    @property
    def kind_name(self) -> str:
        return KIND_NAMES.get(self.kind, str(self.kind))

    def state(self, now: int) -> str:
        """ "executed", "expired" (7 days passed without a majority) or "open"."""
        if self.executed:
            return "executed"
        return "expired" if now >= self.expires_at else "open"
