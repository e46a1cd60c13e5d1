"""Errors of the node's flows. Only node/api/errors.py maps them to HTTP."""


class NodeError(Exception):
    """Root of every node error. Messages are safe to show: ids and reasons, never PHI."""


class InvalidRequest(NodeError):
    """The request is well-formed but cannot be carried out as asked (bad field values)."""


class NotFound(NodeError):
    """The requested record, batch or resource does not exist."""


class Unauthenticated(NodeError):
    """No valid credential (API token or wallet session) was presented."""


class Forbidden(NodeError):
    """The caller is authenticated but its role may not do this."""


class ConsentDenied(NodeError):
    """No consent, break-glass or ownership allows this read (the denial is logged)."""


class Erased(NodeError):
    """The record was erased (crypto-shredded): its content can never be read again."""


class Conflict(NodeError):
    """The request clashes with current state (a used nonce, an existing id)."""


class LimitExceeded(NodeError):
    """A policy cap is reached (e.g. break-glass openings per clinician in a rolling window);
    ``retry_after``: seconds until the cap frees a slot, when known."""

    def __init__(self, message: str, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PayloadTooLarge(InvalidRequest):
    """The upload exceeds the configured size limit."""


class ThrottleUnavailable(NodeError):
    """The shared rate limiter cannot be reached (Redis down)."""
