"""Errors raised by the chain layer. One root, ``ChainError``; no PHI in messages."""

from __future__ import annotations

from typing import Any


class ChainError(Exception):
    """Root of every chain error."""


class ChainUnavailable(ChainError):
    """The chain node cannot be reached."""


class ContractReverted(ChainError):
    """A contract call or transaction reverted.

    ``name`` is the decoded custom error (e.g. ``"ConsentRegistryInvalidSignature"``,
    ``"InvalidAccountNonce"``), ``"Error"``/``"Panic"`` for the built-in ones, ``"Reverted"``
    when there was no revert data; ``error_args`` holds its decoded arguments.
    """

    def __init__(self, name: str, args: tuple[Any, ...] | list[Any] = ()) -> None:
        self.name = name
        self.error_args: tuple[Any, ...] = tuple(args)
        super().__init__(name, self.error_args)

    def __str__(self) -> str:
        rendered = ", ".join(_render(a) for a in self.error_args)
        return f"{self.name}({rendered})"


class DeploymentFailed(ChainError):
    """Deploying the contracts failed (no contract created, unusable account, bad arguments)."""


def _render(value: Any) -> str:
    if isinstance(value, bytes | bytearray):
        return "0x" + bytes(value).hex()
    return repr(value)
