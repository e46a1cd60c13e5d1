"""A Besu QBFT genesis file for the consortium's validators.

QBFT with block-header validator selection keeps the initial validators in the genesis
block's ``extraData``: the RLP list ``[vanity (32 zero bytes), [validator addresses],
vote ([] for none), round (scalar 0, encoded as empty bytes), commit seals ([])]``, as
Besu's ``QbftExtraDataCodec.encodeFromAddresses`` writes it and ``besu rlp encode
--type=QBFT_EXTRA_DATA`` prints it. The RLP encoder is written out here (a few lines) so the
tests can decode with the independent ``rlp`` package.

Free gas ("zero gas price") follows Besu's free-gas guide for London and later forks:
``zeroBaseFee: true`` in the config, ``baseFeePerGas: 0x0`` in the genesis block and
``min-gas-price=0`` on every node (``besu.py`` writes that).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from eth_utils import is_hex_address, to_checksum_address

VANITY = bytes(32)
# QBFT/IBFT 2.0 blocks carry this constant mixHash ("ctical byzantine fault tolerance").
BFT_MIX_HASH = "0x63746963616c2062797a616e74696e65206661756c7420746f6c6572616e6365"
# Besu's free-gas guide: blocks bounded by time, not gas; contracts of any size.
FREE_GAS_LIMIT = 0x1FFFFFFFFFFFFF
MAX_CONTRACT_SIZE = 2147483647
DEFAULT_GAS_LIMIT = 0x1C9C380  # 30M: Ethereum's, for networks where gas has a price


# -- RLP (Ethereum Yellow Paper, appendix B) ---------------------------------------------------
RlpItem = bytes | Sequence["RlpItem"]


def _length_prefix(length: int, offset: int) -> bytes:
    if length < 56:
        return bytes([offset + length])
    encoded = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes([offset + 55 + len(encoded)]) + encoded


def rlp_encode(item: RlpItem) -> bytes:
    """RLP of a byte string or a (nested) list of them."""
    if isinstance(item, bytes | bytearray):
        data = bytes(item)
        if len(data) == 1 and data[0] < 0x80:
            return data
        return _length_prefix(len(data), 0x80) + data
    payload = b"".join(rlp_encode(x) for x in item)
    return _length_prefix(len(payload), 0xC0) + payload


def _scalar(value: int) -> bytes:
    """An RLP scalar: big-endian without leading zeros; 0 is the empty string (0x80)."""
    return value.to_bytes((value.bit_length() + 7) // 8, "big") if value else b""


# -- extraData ---------------------------------------------------------------------------------
def validator_addresses(validators: Sequence[str]) -> list[str]:
    """Checksummed addresses; raises ValueError for a malformed, duplicate or empty list."""
    if not validators:
        raise ValueError("a QBFT network needs at least one validator")
    out: list[str] = []
    for v in validators:
        if not isinstance(v, str) or not is_hex_address(v):
            raise ValueError(f"not a 20-byte hex address: {v!r}")
        address = to_checksum_address(v)
        if address in out:
            raise ValueError(f"validator {address} is listed twice")
        out.append(address)
    return out


def qbft_extra_data(validators: Sequence[str]) -> str:
    """The genesis ``extraData`` (0x-hex) naming ``validators`` in the given order: the
    output of Besu's ``QbftExtraDataCodec.encodeFromAddresses`` for the same list."""
    addresses = [bytes.fromhex(a[2:]) for a in validator_addresses(validators)]
    return "0x" + rlp_encode([VANITY, addresses, [], _scalar(0), []]).hex()


# -- genesis -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class QbftOptions:
    """The network's consensus and fee settings."""

    chain_id: int
    block_period: int = 2  # blockperiodseconds
    epoch: int = 30000  # epochlength: pending votes are dropped every epoch
    request_timeout: int | None = None  # requesttimeoutseconds; default 2 x block period
    zero_gas: bool = True
    # Funded accounts (address -> wei) in the genesis alloc; required when gas has a price.
    alloc: Mapping[str, int] = field(default_factory=dict)
    timestamp: int | None = None  # genesis timestamp; default: now

    def __post_init__(self) -> None:
        if not 0 < self.chain_id < 2**63:
            raise ValueError("the chain id must be a positive integer below 2**63")
        if self.chain_id in (1, 31337, 1337):
            raise ValueError(
                f"chain id {self.chain_id} belongs to Ethereum mainnet or a dev chain: "
                "pick an unused one so signatures cannot be replayed elsewhere"
            )
        if not 1 <= self.block_period <= 3600:
            raise ValueError("the block period must be 1..3600 seconds")
        if not 1 <= self.epoch < 2**63:
            raise ValueError("the epoch length must be a positive number of blocks")
        if self.request_timeout is not None and self.request_timeout < 1:
            raise ValueError("the request timeout must be at least 1 second")
        for address, wei in self.alloc.items():
            if not is_hex_address(address):
                raise ValueError(f"not a 20-byte hex address: {address!r}")
            if not 0 <= wei < 2**256:
                raise ValueError(f"balance out of range for {address}")

    @property
    def request_timeout_seconds(self) -> int:
        # Besu's guidance: start at twice the block period, tune down to where round
        # changes begin, then back up.
        return self.request_timeout or 2 * self.block_period


def besu_genesis(validators: Sequence[str], options: QbftOptions) -> dict[str, Any]:
    """A Besu genesis (JSON object) for a QBFT network with block-header validator
    selection (validators voted in and out with ``qbft_proposeValidatorVote``).

    EVM: Cancun from block 0 (the contracts are compiled for evmVersion cancun); needs a
    Besu release that runs Shanghai and Cancun on QBFT (24.x or later)."""
    config: dict[str, Any] = {
        "chainId": options.chain_id,
        "berlinBlock": 0,
        "londonBlock": 0,
        "shanghaiTime": 0,
        "cancunTime": 0,
        "qbft": {
            "blockperiodseconds": options.block_period,
            "epochlength": options.epoch,
            "requesttimeoutseconds": options.request_timeout_seconds,
        },
    }
    if options.zero_gas:
        config["zeroBaseFee"] = True
        config["contractSizeLimit"] = MAX_CONTRACT_SIZE
    timestamp = int(time.time()) if options.timestamp is None else options.timestamp
    genesis: dict[str, Any] = {
        "config": config,
        "nonce": "0x0",
        "timestamp": hex(timestamp),
        "extraData": qbft_extra_data(validators),
        "gasLimit": hex(FREE_GAS_LIMIT if options.zero_gas else DEFAULT_GAS_LIMIT),
        "difficulty": "0x1",
        "mixHash": BFT_MIX_HASH,
        "coinbase": "0x" + "00" * 20,
        "alloc": {
            to_checksum_address(a)[2:].lower(): {"balance": hex(wei)}
            for a, wei in sorted(options.alloc.items())
        },
        "number": "0x0",
        "gasUsed": "0x0",
        "parentHash": "0x" + "00" * 32,
    }
    if options.zero_gas:
        genesis["baseFeePerGas"] = "0x0"
    return genesis
