"""Turn a reverted call, whatever the provider, into a ContractReverted naming the error.

Reverts reach web3 in three shapes: ``ContractCustomError`` with hex data (web3's own
decoding), ``ContractLogicError`` whose data is ``{"message", "data": hex}`` (JSON-RPC
nodes such as Hardhat), and eth-tester's ``TransactionFailed("execution reverted: b'..'")``
(the embedded chain), whose bytes survive only as a Python literal in the message.
"""

from __future__ import annotations

import ast
from functools import cache
from typing import Any

from eth_abi import decode
from eth_utils import function_signature_to_4byte_selector
from web3.exceptions import ContractLogicError

from node.chain.artifacts import load_artifact
from node.chain.exceptions import ContractReverted

_CONTRACTS = (
    "Consortium",
    "RecordRegistry",
    "ConsentRegistry",
    "AccessLog",
    "CredentialRegistry",
    "ZkAccessGate",
    "RecoverableWallet",
    "RecoverableWalletFactory",
)


@cache
def _error_table() -> dict[bytes, tuple[str, tuple[str, ...]]]:
    """Selector -> (name, argument types) for every error our contracts can raise."""
    table = {
        function_signature_to_4byte_selector("Error(string)"): ("Error", ("string",)),
        function_signature_to_4byte_selector("Panic(uint256)"): ("Panic", ("uint256",)),
    }
    for name in _CONTRACTS:
        for item in load_artifact(name).abi:
            if item.get("type") == "error":
                types = tuple(i["type"] for i in item["inputs"])
                selector = function_signature_to_4byte_selector(
                    f"{item['name']}({','.join(types)})"
                )
                table[selector] = (item["name"], types)
    return table


def _hex_bytes(data: Any) -> bytes | None:
    if isinstance(data, bytes | bytearray):
        return bytes(data)
    if isinstance(data, str):
        try:
            return bytes.fromhex(data.removeprefix("0x"))
        except ValueError:
            return None
    return None


def revert_data(err: BaseException) -> bytes | None:
    """The raw revert data carried by ``err``, or None if it is not a revert."""
    if isinstance(err, ContractLogicError):
        data = err.data.get("data") if isinstance(err.data, dict) else err.data
        return _hex_bytes(data) or b""
    if type(err).__name__ == "TransactionFailed" and err.args:
        message = err.args[0]
        if isinstance(message, bytes):
            return message
        if isinstance(message, str):
            _, sep, literal = message.partition("execution reverted: ")
            if sep and literal.startswith(("b'", 'b"')):
                try:
                    value = ast.literal_eval(literal)
                except (ValueError, SyntaxError):
                    return b""
                return value if isinstance(value, bytes) else b""
            return b""
    return None


def decode_revert(data: bytes) -> ContractReverted:
    if len(data) < 4:
        return ContractReverted("Reverted", ())
    entry = _error_table().get(data[:4])
    if entry is None:
        return ContractReverted("UnknownError", ("0x" + data.hex(),))
    name, types = entry
    try:
        args = tuple(decode(list(types), data[4:]))
    except Exception:  # malformed payload: keep the name, drop the arguments
        args = ()
    return ContractReverted(name, args)


def as_reverted(err: BaseException) -> ContractReverted | None:
    """A ContractReverted for ``err`` if it is a revert, else None."""
    data = revert_data(err)
    return None if data is None else decode_revert(data)
