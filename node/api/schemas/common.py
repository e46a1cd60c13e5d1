"""Field types validated at the edge: addresses are checksummed, ids are 0x-hex bytes32."""

from __future__ import annotations

from typing import Annotated

from eth_utils import is_address, to_checksum_address
from pydantic import AfterValidator

from node.exceptions import InvalidRequest


def _address(value: str) -> str:
    if not isinstance(value, str) or not is_address(value):
        raise ValueError("not an Ethereum address (0x followed by 40 hex digits)")
    return to_checksum_address(value)


def _hex32(value: str) -> str:
    if not isinstance(value, str) or not value.startswith("0x") or len(value) != 66:
        raise ValueError("must be 0x followed by 64 hex digits")
    try:
        bytes.fromhex(value[2:])
    except ValueError:
        raise ValueError("must be 0x followed by 64 hex digits") from None
    return value.lower()


def _hexbytes(value: str) -> str:
    if not isinstance(value, str) or not value.startswith("0x"):
        raise ValueError("must be 0x-prefixed hex")
    try:
        bytes.fromhex(value[2:])
    except ValueError:
        raise ValueError("must be 0x-prefixed hex") from None
    return value


Address = Annotated[str, AfterValidator(_address)]
Hex32 = Annotated[str, AfterValidator(_hex32)]
HexBytes = Annotated[str, AfterValidator(_hexbytes)]


def parse_address(name: str, value: str) -> str:
    """A request field (form, query, path) as a checksummed address; 400 naming the field."""
    try:
        return _address(value)
    except ValueError as err:
        raise InvalidRequest(f"{name}: {err}") from None


def parse_hex32(name: str, value: str) -> bytes:
    """A request field (form, query, path) as 32 bytes; 400 naming the field."""
    try:
        return to_bytes(_hex32(value))
    except ValueError as err:
        raise InvalidRequest(f"{name}: {err}") from None


def to_bytes(hex_value: str) -> bytes:
    return bytes.fromhex(hex_value[2:])


def to_hex(raw: bytes) -> str:
    return "0x" + raw.hex()
