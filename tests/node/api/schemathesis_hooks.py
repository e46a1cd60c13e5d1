"""Schemathesis hooks for tests/node/api/test_schemathesis.py (loaded by the CLI by module
name). Addresses are documented as ``format: eth-address``: 0x and 40 hex digits, where mixed
case must be a valid EIP-55 checksum. A pattern cannot say the last part, so valid addresses
are generated here: lower case, upper case or checksummed."""

from __future__ import annotations

import schemathesis
from eth_utils import to_checksum_address
from hypothesis import strategies as st


def _spellings(raw: bytes) -> st.SearchStrategy[str]:
    digits = raw.hex()
    return st.sampled_from(["0x" + digits, "0x" + digits.upper(), to_checksum_address(raw)])


schemathesis.openapi.format("eth-address", st.binary(min_size=20, max_size=20).flatmap(_spellings))
