"""Field types validated at the edge: addresses are checksummed, ids are 0x-hex bytes32.

Each type carries its pattern in the OpenAPI document, and the validator accepts exactly the
strings the pattern matches (plus, for addresses, a valid EIP-55 checksum when the letters are
mixed case): a schema-valid value is never refused and a schema-invalid one never accepted.

Request bodies use ``Address``, ``Hex32`` and ``HexBytes`` (422 on a bad value). Path, query
and form fields that a handler parses itself with ``parse_address`` / ``parse_hex32`` (400
naming the field) are declared ``AddressParam`` / ``Hex32Param``: documented with the same
pattern, checked by the handler.
"""

from __future__ import annotations

import functools
import re
import types
from typing import Annotated, Any, Union, get_args, get_origin

from eth_utils import is_checksum_address, to_checksum_address
from pydantic import AfterValidator, BaseModel, WithJsonSchema, model_validator

from node.exceptions import InvalidRequest

# A free-text reason must hold a character that no one counts as whitespace: Python's
# str.strip (the flows' check) also strips \x1c-\x1f and \x85, JSON Schema's \s (clients)
# also counts U+FEFF. Literal characters, so every regex engine reads the class alike.
REASON_PATTERN = "[^\\s\x1c\x1d\x1e\x1f\x85\ufeff]"

ADDRESS_PATTERN = r"^0x[0-9a-fA-F]{40}$"
HEX32_PATTERN = r"^0x[0-9a-fA-F]{64}$"
HEX_PATTERN = r"^0x(?:[0-9a-fA-F]{2})*$"
# A record category: what uploads, consents (by keccak256) and ZK policies name.
CATEGORY_PATTERN = r"^[a-z0-9][a-z0-9_.-]{0,63}$"

_ADDRESS = re.compile(ADDRESS_PATTERN)
_HEX32 = re.compile(HEX32_PATTERN)
_HEX = re.compile(HEX_PATTERN)

ADDRESS_SCHEMA: dict[str, Any] = {
    "type": "string",
    "pattern": ADDRESS_PATTERN,
    "format": "eth-address",
    "description": "Ethereum address: 0x and 40 hex digits; mixed case must be EIP-55 checksummed",
    "examples": ["0x5B38Da6a701c568545dCfcB03FcB875f56beddC4"],
}
HEX32_SCHEMA: dict[str, Any] = {
    "type": "string",
    "pattern": HEX32_PATTERN,
    "description": "32 bytes: 0x and 64 hex digits",
    "examples": ["0x" + "00" * 31 + "01"],
}
HEX_SCHEMA: dict[str, Any] = {
    "type": "string",
    "pattern": HEX_PATTERN,
    "description": "bytes: 0x and an even number of hex digits",
    "examples": ["0x" + "ab" * 65],
}


def _address(value: str) -> str:
    if not isinstance(value, str) or not _ADDRESS.fullmatch(value):
        raise ValueError("not an Ethereum address (0x followed by 40 hex digits)")
    return _checksummed(value)


# EIP-55 costs a keccak256 plus eth_utils' argument checks per call, and the same few
# addresses (a hospital's patients, its clinicians) come back request after request.
# Bounded: at most this many distinct spellings are kept (about 250 bytes each).
_CHECKSUM_CACHE_SIZE = 8192


@functools.lru_cache(maxsize=_CHECKSUM_CACHE_SIZE)
def _checksummed(value: str) -> str:
    """``value`` (0x and 40 hex digits) EIP-55 checksummed; ValueError (never cached) for
    mixed case with a bad checksum."""
    digits = value[2:]
    if digits != digits.lower() and digits != digits.upper() and not is_checksum_address(value):
        raise ValueError("mixed-case address with a bad EIP-55 checksum")
    return to_checksum_address(value)


def _hex32(value: str) -> str:
    if not isinstance(value, str) or not _HEX32.fullmatch(value):
        raise ValueError("must be 0x followed by 64 hex digits")
    return value.lower()


def _hexbytes(value: str) -> str:
    if not isinstance(value, str) or not _HEX.fullmatch(value):
        raise ValueError("must be 0x-prefixed hex (an even number of digits)")
    return value


Address = Annotated[str, AfterValidator(_address), WithJsonSchema(ADDRESS_SCHEMA)]
Hex32 = Annotated[str, AfterValidator(_hex32), WithJsonSchema(HEX32_SCHEMA)]
HexBytes = Annotated[str, AfterValidator(_hexbytes), WithJsonSchema(HEX_SCHEMA)]

# Documented like the types above, parsed by the handler (parse_address / parse_hex32: 400).
AddressParam = Annotated[str, WithJsonSchema(ADDRESS_SCHEMA)]
Hex32Param = Annotated[str, WithJsonSchema(HEX32_SCHEMA)]
CategoryParam = Annotated[
    str, WithJsonSchema({"type": "string", "pattern": CATEGORY_PATTERN, "examples": ["lab"]})
]

# A media type as uploads declare it (ASCII: it is served back as the Content-Type header).
MEDIA_TYPE_PATTERN = r"^[A-Za-z0-9_.+-]+/[A-Za-z0-9_.+-]+(?:[ \t]*;[ -~]*)?$"
MEDIA_TYPE_MAX_LENGTH = 255
MediaTypeParam = Annotated[
    str,
    WithJsonSchema(
        {
            "type": "string",
            "pattern": MEDIA_TYPE_PATTERN,
            "maxLength": MEDIA_TYPE_MAX_LENGTH,
            "examples": ["text/plain", "application/fhir+json; charset=utf-8"],
        }
    ),
]

_DECIMAL_DIGITS = "0123456789"
_HEX_DIGITS = "0123456789abcdef"


def _char(c: str) -> str:
    return f"[{c}{c.upper()}]" if c.isalpha() else c


def _chars(alphabet: str) -> str:
    """A regex class for ``alphabet`` (hex letters in either case)."""
    letters = "".join(c for c in alphabet if c.isalpha())
    digits = "".join(c for c in alphabet if not c.isalpha())
    parts = []
    if digits:
        parts.append(digits if len(digits) < 3 else f"{digits[0]}-{digits[-1]}")
    if letters:
        span = letters if len(letters) < 3 else f"{letters[0]}-{letters[-1]}"
        parts.append(span + span.upper())
    return "[" + "".join(parts) + "]"


def _spellings_below(bound: str, alphabet: str) -> str:
    """A regex for the strings of ``len(bound)`` digits that read below ``bound``."""
    options = []
    for i, digit in enumerate(bound):
        smaller = alphabet[: alphabet.index(digit)]
        if not smaller:
            continue
        rest = len(bound) - i - 1
        tail = f"{_chars(alphabet)}{{{rest}}}" if rest else ""
        options.append("".join(_char(c) for c in bound[:i]) + _chars(smaller) + tail)
    return "|".join(options)


def uint_pattern(modulus: int) -> str:
    """A regex matching exactly the decimal and 0x-hex spellings of the integers in
    [0, modulus): at most as many digits as ``modulus - 1`` has, and below it."""
    decimal = str(modulus)
    hexa = format(modulus, "x")
    return (
        f"^(?:[0-9]{{1,{len(decimal) - 1}}}|{_spellings_below(decimal, _DECIMAL_DIGITS)}"
        f"|0x(?:[0-9a-fA-F]{{1,{len(hexa) - 1}}}|{_spellings_below(hexa, _HEX_DIGITS)}))$"
    )


def uint_text(modulus: int, what: str, *, nonzero: bool = False) -> Any:
    """An integer in [0, modulus) (or [1, modulus)) as text: a decimal string (the snarkjs
    convention) or a 0x-hex string, documented by an exact pattern. JSON numbers are refused:
    above 2**53 they do not survive most JSON readers, and no schema bound on them does."""
    pattern = uint_pattern(modulus)
    text = re.compile(pattern)
    message = f"must be {'a nonzero' if nonzero else 'an'} element of {what} (decimal or 0x-hex)"

    def check(value: str) -> str:
        if not text.fullmatch(value):
            raise ValueError(message)
        number = int(value, 16) if value.startswith("0x") else int(value, 10)
        if nonzero and number == 0:
            raise ValueError(message)
        return str(number)

    schema: dict[str, Any] = {
        "type": "string",
        "pattern": pattern,
        "description": f"{what}: a decimal or 0x-hex string",
    }
    if nonzero:
        schema["not"] = {"pattern": "^(?:0x)?0+$"}
    return Annotated[str, AfterValidator(check), WithJsonSchema(schema)]


@functools.cache
def _integer_fields(model: type[BaseModel]) -> frozenset[str]:
    names = set()
    for name, field in model.model_fields.items():
        annotation = field.annotation
        union = get_origin(annotation) in (Union, types.UnionType)
        if annotation is int or (union and int in get_args(annotation)):
            names.add(field.alias or name)
    return frozenset(names)


class JsonBody(BaseModel):
    """A JSON request body whose integer fields take what JSON Schema calls an integer (1 and
    1.0), never true, false or "1", which pydantic's lax mode would read as integers."""

    @model_validator(mode="before")
    @classmethod
    def _json_integers(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for name in _integer_fields(cls):
                value = data.get(name)
                if isinstance(value, bool | str):
                    raise ValueError(f"{name}: must be a JSON integer")
        return data


# A pair of integers (JSON array of two), described without prefixItems: schemathesis 4
# cannot read prefixItems in response schemas.
IntPair = Annotated[
    tuple[int, int],
    WithJsonSchema({"type": "array", "items": {"type": "integer"}, "minItems": 2, "maxItems": 2}),
]

# Unsigned integers as SQLite and MySQL store them (signed 64-bit): larger values are refused
# with 422 instead of overflowing in the driver.
MAX_INT64 = 2**63 - 1


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
