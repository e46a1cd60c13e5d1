"""Errors of the zero-knowledge toolkit: one root, ``ZKError``, and a subclass per failure."""

from __future__ import annotations


class ZKError(Exception):
    """Root of every error raised by ``zk``."""


class CircuitError(ZKError):
    """A circuit is unknown, malformed or does not compile."""


class BudgetExceeded(CircuitError):
    """A compiled circuit has more constraints than its spec allows."""


class SetupError(ZKError):
    """Key generation or a ceremony step failed, or its artifacts are inconsistent."""


class InputError(ZKError):
    """Circuit inputs are missing, of the wrong shape, or not field elements."""


class WitnessError(InputError):
    """The witness could not be computed: an input is missing or an assertion failed."""


class ProofInvalid(ZKError):
    """A proof is malformed or does not verify for the given public inputs."""
