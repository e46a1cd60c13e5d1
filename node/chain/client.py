"""``ChainClientAPI`` over web3: works with the embedded py-evm chain and any JSON-RPC node.

Reads and simulations go through ``w3``; signing and sending is a ``TransactionSenderAPI``'s
job: a ``LocalTransactionSender`` (one lock with a locally tracked nonce: the node is the
only sender of its account) in the worker or a single-process node, a
``RemoteTransactionSender`` (the worker sends) in API processes.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from functools import lru_cache
from typing import Any, NamedTuple, TypeVar

from eth_abi import decode as abi_decode
from eth_abi import encode as abi_encode
from eth_account.signers.base import BaseAccount
from eth_utils import keccak, to_checksum_address
from eth_utils.abi import function_abi_to_4byte_selector, get_abi_input_types
from hexbytes import HexBytes
from web3 import EthereumTesterProvider, Web3
from web3._utils.events import get_event_data
from web3.contract.contract import ContractFunction
from web3.exceptions import Web3Exception, Web3ValidationError
from web3.logs import DISCARD
from web3.types import RPCEndpoint

from hsm.abc import SignerAPI
from node.chain.abc import ChainClientAPI, TransactionSenderAPI
from node.chain.artifacts import load_artifact
from node.chain.class_consents import ClassConsent, ClassConsentGrant, ClassConsentRevoke
from node.chain.deploy import Deployment
from node.chain.exceptions import ChainError, ChainUnavailable, ContractReverted
from node.chain.models import (
    AccessEntry,
    AnchorResult,
    AuditEvent,
    BatchInfo,
    ConsentGrant,
    ConsentRevoke,
    TxResult,
)
from node.chain.proposals import CALL, Proposal
from node.chain.reverts import as_reverted
from node.chain.sender import LocalTransactionSender
from node.consent.typed_data import AccessBasis, ScopeKind

log = logging.getLogger(__name__)

T = TypeVar("T")
ZERO32 = b"\x00" * 32
# Events whose topics are (patient, record-or-scope, actor): filterable by each.
_AUDIT_EVENTS = {
    # RecordErased is left out: its topics are (record, hospital), not (patient, record, actor).
    "RecordRegistry": ("RecordAnchored",),
    # Class consents: topics (patient, scope, hospital id): the actor filter never matches.
    "ConsentRegistry": (
        "ConsentGranted",
        "ConsentRevoked",
        "BreakGlassOpened",
        "ClassConsentGranted",
        "ClassConsentRevoked",
    ),
    "AccessLog": ("AccessRecorded",),
}


# Gas limits of the batched calls, with headroom over docs/gas.md (anchorBatch: ~84k + ~3.4k
# a record; recordAccesses: ~27k + ~5k an entry). The simulation proves they suffice.
MAX_ACCESS_BATCH = 2000
ROTATE_PROPOSAL = 2  # IConsortium.ProposalKind.Rotate  # keeps a batch well inside a 30M block


def anchor_gas_limit(records: int) -> int:
    return 150_000 + 4_500 * records


def access_log_gas_limit(entries: int) -> int:
    return 80_000 + 6_500 * entries


def erase_gas_limit(records: int) -> int:
    # A new tombstone: one cold SSTORE (~22k) and a 3-topic log (~2k) a record.
    return 80_000 + 30_000 * records


@lru_cache(maxsize=65_536)
def _checksummed(address: str) -> str:
    """``to_checksum_address`` (a keccak each) of a 0x-hex address, cached: an audit log
    names the same patients, actors and hospitals over and over."""
    return to_checksum_address(address)


def _address_bytes(address: str) -> bytes:
    """An address for eth_abi as its 20 bytes (a hex string would be checksum-validated,
    a keccak each). Raises ValueError for anything but 40 hex digits, as
    ``to_checksum_address`` does."""
    raw = bytes.fromhex(address.removeprefix("0x").removeprefix("0X"))
    if len(raw) != 20:
        raise ValueError(f"not an address: {address!r}")
    return raw


def _bytes32(value: bytes) -> bytes:
    if not isinstance(value, bytes | bytearray) or len(value) != 32:
        raise Web3ValidationError("expected 32 bytes for a bytes32 argument")
    return bytes(value)


def _quantity(value: Any) -> int:
    """A JSON-RPC quantity as the provider answered it: an int, or hex over HTTP."""
    return int(value, 16) if isinstance(value, str) else int(value)


def _topic_bytes(value: Any) -> bytes:
    return bytes(HexBytes(value))


class _EventLayout(NamedTuple):
    """How to decode one event's log without web3's generic (and per-value) machinery."""

    indexed: tuple[tuple[str, str], ...]  # (name, type) in topic order
    data_names: tuple[str, ...]
    data_types: tuple[str, ...]


def _decode_topic(kind: str, topic: bytes) -> Any:
    if kind == "address":
        return _checksummed("0x" + topic[-20:].hex())
    if kind == "bytes32":
        return topic
    if kind.startswith("uint"):
        return int.from_bytes(topic, "big")
    if kind == "bool":
        return topic != ZERO32
    # Indexed dynamic values (string/bytes) are topic hashes; web3 keeps them as bytes.
    return topic if kind in ("string", "bytes") else abi_decode([kind], topic)[0]


@contextlib.contextmanager
def simulation_errors() -> Iterator[None]:
    """How a simulation (``eth_call`` / ``eth_estimateGas`` before a send) fails: the chain
    unreachable, the contract refusing (nothing was sent), or another chain error."""
    try:
        yield
    except (ConnectionError, OSError) as err:
        raise ChainUnavailable("the chain node cannot be reached") from err
    except Exception as err:
        reverted = as_reverted(err)
        if reverted is not None:  # refused in simulation: nothing was sent
            raise reverted from err
        if isinstance(err, Web3Exception):
            raise ChainError(f"transaction failed: {type(err).__name__}") from err
        raise


class Web3ChainClient(ChainClientAPI):
    def __init__(
        self,
        w3: Web3,
        deployment: Deployment,
        account: BaseAccount | None,
        sender: TransactionSenderAPI | None = None,
        *,
        simulate_batches: bool | None = None,
    ) -> None:
        """Read through ``w3``; send through ``sender`` (default: a
        ``LocalTransactionSender`` signing with ``account`` through ``w3``).

        ``simulate_batches``: simulate the worker's batches (anchorBatch, recordAccesses)
        before sending them. Default: only when the EVM runs elsewhere (a JSON-RPC node,
        where a simulation costs this process a round trip, not an EVM run); on the
        embedded in-process chain a refused batch is mined as a revert instead (see
        ``_send_batch``).
        """
        if sender is None:
            if account is None:
                raise ValueError("Web3ChainClient needs an account or a sender")
            sender = LocalTransactionSender(w3, account)
        self._w3 = w3
        self._deployment = deployment
        self._sender = sender
        self._simulate_batches = (
            not isinstance(w3.provider, EthereumTesterProvider)
            if simulate_batches is None
            else simulate_batches
        )
        self._timestamps: dict[int, int] = {}
        self._c = {
            name: w3.eth.contract(address=getattr(deployment, attr), abi=load_artifact(name).abi)
            for name, attr in (
                ("Consortium", "consortium"),
                ("RecordRegistry", "record_registry"),
                ("ConsentRegistry", "consent_registry"),
                ("AccessLog", "access_log"),
            )
        }
        self._events: dict[bytes, tuple[str, dict[str, Any]]] = {}
        # topic0 -> layout, for events of plain value types (every one of ours today);
        # anything else is decoded by web3.
        self._layouts: dict[bytes, _EventLayout] = {}
        # (contract, function) -> (selector, input types), for the worker's batches.
        self._functions: dict[tuple[str, str], tuple[bytes, list[str]]] = {}
        for name, contract in self._c.items():
            for item in contract.abi:
                if item.get("type") == "function":
                    self._functions[(name, item["name"])] = (
                        function_abi_to_4byte_selector(item),
                        list(get_abi_input_types(item)),
                    )
                if item.get("type") != "event":
                    continue
                types = ",".join(i["type"] for i in item["inputs"])
                topic0 = keccak(text=f"{item['name']}({types})")
                self._events[topic0] = (name, item)
                if not item.get("anonymous") and all(
                    "[" not in i["type"] and not i["type"].startswith("tuple")
                    for i in item["inputs"]
                ):
                    data = [i for i in item["inputs"] if not i["indexed"]]
                    self._layouts[topic0] = _EventLayout(
                        tuple((i["name"], i["type"]) for i in item["inputs"] if i["indexed"]),
                        tuple(i["name"] for i in data),
                        tuple(i["type"] for i in data),
                    )

    # -- plumbing ----------------------------------------------------------------
    @property
    def chain_id(self) -> int:
        return self._deployment.chain_id

    @property
    def hospital(self) -> str:
        return self._sender.address

    @property
    def sender(self) -> TransactionSenderAPI:
        """Who signs and sends this client's transactions."""
        return self._sender

    # The local sender's lock, account and nonce under their historical names (tests that
    # send with the node's account outside the client use them).
    @property
    def _lock(self) -> threading.RLock:
        return self._local_sender().lock

    @property
    def _account(self) -> BaseAccount:
        return self._local_sender().account

    @property
    def _nonce(self) -> None:
        return None

    @_nonce.setter
    def _nonce(self, value: None) -> None:
        self._local_sender().reset_nonce()

    def _local_sender(self) -> LocalTransactionSender:
        if not isinstance(self._sender, LocalTransactionSender):
            raise ChainError("this process does not sign: the worker sends its transactions")
        return self._sender

    @property
    def deployment(self) -> Deployment:
        return self._deployment

    def _read(self, fn: Callable[[], T]) -> T:
        # No lock: reads must not wait for a send's receipt (a block period on QBFT). The
        # HTTP provider is thread-safe and the embedded provider serialises itself.
        try:
            return fn()
        except (ConnectionError, OSError) as err:
            raise ChainUnavailable("the chain node cannot be reached") from err
        except Exception as err:
            reverted = as_reverted(err)
            if reverted is not None:
                raise reverted from err
            raise

    def _send(
        self, fn: ContractFunction, gas_limit: int | None = None
    ) -> tuple[bytes, dict[str, Any]]:
        """Simulate (reverts surface here, before anything is sent), have the sender sign,
        send and wait for it; return (tx hash, receipt).

        Without ``gas_limit`` the simulation is a gas estimate. Batched calls pass a limit
        from their measured gas (docs/gas.md) and are simulated with one ``eth_call``:
        py-evm estimates by binary search, running a 1,000-record anchor ~20 times.

        The simulation runs under ``sender.exclusive()``: with a local sender no other send
        of this account lands between simulation and send.
        """
        with self._sender.exclusive():
            sender = self._sender.address
            with simulation_errors():
                if gas_limit is None:
                    estimate = fn.estimate_gas({"from": sender})
                    gas_limit = estimate + estimate // 5 + 10_000
                else:
                    fn.call({"from": sender, "gas": gas_limit})
            data = bytes(HexBytes(fn._encode_transaction_data()))
            tx_hash = self._sender.send(fn.address, data, gas_limit)
        receipt = self._read(lambda: self._w3.eth.get_transaction_receipt(HexBytes(tx_hash)))
        return tx_hash, dict(receipt)

    def _send_batch(
        self, contract: str, function: str, args: Sequence[Any], gas_limit: int
    ) -> tuple[bytes, dict[str, Any]]:
        """Send one of the worker's own batches (anchorBatch, recordAccesses), its calldata
        encoded once with eth_abi (web3 encodes per call and checksums every address).

        Without ``simulate_batches`` (the embedded chain) it is sent without a simulation:
        the in-process EVM runs once instead of twice. A batch the contract refuses is then
        mined as a revert (gas spent, nothing stored): the sender raises ContractReverted
        and this method names it by simulating the same call afterwards (``"Reverted"`` if
        it no longer reverts). Callers leave the batch pending on ContractReverted, as for
        a refused simulation.

        Returns (tx hash, receipt as the provider answered it: ``blockNumber`` and ``logs``
        unformatted; see ``_raw_receipt``).
        """
        to = self._c[contract].address
        selector, types = self._functions[(contract, function)]
        data = selector + abi_encode(types, list(args))
        with self._sender.exclusive():
            if self._simulate_batches:
                self._simulate(to, data, gas_limit)
            try:
                tx_hash = self._sender.send(to, data, gas_limit)
            except ContractReverted as err:
                if err.name != "Reverted":
                    raise
                named = self._name_revert(to, data, gas_limit)
                if named is None:
                    raise
                raise named from err
        return tx_hash, self._read(lambda: self._raw_receipt(tx_hash))

    def _simulate(self, to: str, data: bytes, gas_limit: int) -> None:
        """``eth_call`` the transaction; raise as ``_send``'s simulation does."""
        call: dict[str, Any] = {
            "from": self._sender.address,
            "to": to,
            "data": HexBytes(data),
            "gas": gas_limit,
        }
        with simulation_errors():
            self._w3.eth.call(call)  # type: ignore[arg-type]

    def _name_revert(self, to: str, data: bytes, gas_limit: int) -> ContractReverted | None:
        """The decoded error of a mined revert, from a simulation of the same call now."""
        try:
            self._simulate(to, data, gas_limit)
        except ContractReverted as reverted:
            return reverted
        except ChainError:
            return None
        return None

    def _raw_receipt(self, tx_hash: bytes) -> dict[str, Any]:
        """The receipt without web3's result formatting (per-log dicts, checksums and
        AttributeDicts: most of a 1,000-log receipt's cost). Values are as the provider
        sends them (hex strings over HTTP): read them with ``_quantity``/``_topic_bytes``."""
        receipt = self._w3.manager.request_blocking(
            RPCEndpoint("eth_getTransactionReceipt"), ["0x" + bytes(tx_hash).hex()]
        )
        if receipt is None:
            raise ChainError("the transaction was mined but its receipt is missing")
        return dict(receipt)

    def _decode_log(self, entry: Any) -> tuple[str, dict[str, Any], dict[str, Any]]:
        """(contract name, event ABI, args) of one of our logs; args as web3's
        ``get_event_data`` gives them (checksummed addresses, indexed first)."""
        topics = entry["topics"]
        topic0 = bytes(topics[0])
        contract, abi = self._events[topic0]
        layout = self._layouts.get(topic0)
        if layout is None or len(topics) != len(layout.indexed) + 1:
            data = get_event_data(self._w3.codec, abi, entry)
            return contract, abi, dict(data["args"])
        args = {
            name: _decode_topic(kind, bytes(topic))
            for (name, kind), topic in zip(layout.indexed, topics[1:], strict=True)
        }
        if layout.data_types:
            values = abi_decode(layout.data_types, bytes(entry["data"]))
            for name, kind, value in zip(layout.data_names, layout.data_types, values, strict=True):
                args[name] = _checksummed(value) if kind == "address" else value
        return contract, abi, args

    def call(self, fn: Callable[[], T]) -> T:
        """A read through the client's error mapping (for companion clients: the ZK gate)."""
        return self._read(fn)

    def transact(
        self, fn: ContractFunction, gas_limit: int | None = None
    ) -> tuple[bytes, dict[str, Any]]:
        """A send through the client's nonce lock: the node's account has one sender."""
        return self._send(fn, gas_limit)

    @property
    def web3(self) -> Web3:
        return self._w3

    def block_time(self, block_number: int) -> int:
        """Cached: audit queries ask for the same blocks again (the ZK gate too)."""
        return self._read(lambda: self._block_timestamp(block_number))

    def _block_timestamp(self, block_number: int) -> int:
        ts = self._timestamps.get(block_number)
        if ts is None:
            ts = int(self._w3.eth.get_block(block_number)["timestamp"])
            if len(self._timestamps) >= 100_000:  # bounded: audit queries touch old blocks
                self._timestamps.clear()
            self._timestamps[block_number] = ts
        return ts

    def head_block(self) -> int:
        return int(self._read(lambda: self._w3.eth.block_number))

    # -- records -----------------------------------------------------------------
    def anchor_batch(
        self, root: bytes, record_ids: Sequence[bytes], patients: Sequence[str]
    ) -> AnchorResult:
        args = (
            _bytes32(root),
            [_bytes32(r) for r in record_ids],
            [_address_bytes(p) for p in patients],
        )
        tx_hash, receipt = self._send_batch(
            "RecordRegistry", "anchorBatch", args, anchor_gas_limit(len(record_ids))
        )
        registry = self._deployment.record_registry.lower()
        topic0 = self._topic0(["BatchAnchored"])[0]
        batch_id = next(
            int.from_bytes(_topic_bytes(entry["topics"][1]), "big")
            for entry in receipt["logs"]
            if str(entry["address"]).lower() == registry
            and "0x" + _topic_bytes(entry["topics"][0]).hex() == topic0
        )
        block = _quantity(receipt["blockNumber"])
        return AnchorResult(
            batch_id, tx_hash, block, self._read(lambda: self._block_timestamp(block))
        )

    def batch(self, batch_id: int) -> BatchInfo | None:
        root, hospital, timestamp, count, member_id = self._read(
            lambda: self._c["RecordRegistry"].functions.batch(batch_id).call()
        )
        if root == ZERO32:
            return None
        return BatchInfo(bytes(root), hospital, int(timestamp), int(count), int(member_id))

    def sends_in_flight(self) -> int:
        sender = self.hospital
        pending = self._read(lambda: self._w3.eth.get_transaction_count(sender, "pending"))
        mined = self._read(lambda: self._w3.eth.get_transaction_count(sender, "latest"))
        return max(0, int(pending) - int(mined))

    def find_batch(self, root: bytes, hospital: str) -> AnchorResult | None:
        params: dict[str, Any] = {
            "fromBlock": self._deployment.block_number,
            "toBlock": "latest",
            "address": self._deployment.record_registry,
            "topics": [
                self._topic0(["BatchAnchored"]),
                None,
                "0x" + bytes(root).hex(),
                "0x" + "00" * 12 + to_checksum_address(hospital)[2:].lower(),
            ],
        }
        logs = self._read(lambda: self._w3.eth.get_logs(params))  # type: ignore[arg-type]
        if not logs:
            return None
        first = min(logs, key=lambda e: (int(e["blockNumber"]), int(e["logIndex"])))
        block = int(first["blockNumber"])
        return AnchorResult(
            int.from_bytes(bytes(first["topics"][1]), "big"),
            bytes(first["transactionHash"]),
            block,
            self._read(lambda: self._block_timestamp(block)),
        )

    def verify_record(
        self,
        batch_id: int,
        record_id: bytes,
        patient: str,
        content_hash: bytes,
        previous_id: bytes | None,
        proof: Sequence[bytes],
    ) -> bool:
        fn = self._c["RecordRegistry"].functions.verifyRecord(
            batch_id, record_id, patient, content_hash, previous_id or ZERO32, list(proof)
        )
        return bool(self._read(fn.call))

    def erase_records(self, record_ids: Sequence[bytes], reason_hash: bytes) -> TxResult:
        fn = self._c["RecordRegistry"].functions.eraseRecords(list(record_ids), reason_hash)
        tx_hash, receipt = self._send(fn, erase_gas_limit(len(record_ids)))
        return TxResult(tx_hash, int(receipt["blockNumber"]))

    def is_erased(self, record_id: bytes) -> bool:
        return bool(self._read(self._c["RecordRegistry"].functions.isErased(record_id).call))

    # -- consent -----------------------------------------------------------------
    def consent_domain(self) -> dict[str, Any]:
        _fields, name, version, chain_id, contract, _salt, _ext = self._read(
            self._c["ConsentRegistry"].functions.eip712Domain().call
        )
        return {
            "name": name,
            "version": version,
            "chainId": chain_id,
            "verifyingContract": contract,
        }

    def consent_nonce(self, patient: str) -> int:
        return int(self._read(self._c["ConsentRegistry"].functions.nonces(patient).call))

    def grant_with_sig(self, grant: ConsentGrant, signature: bytes) -> TxResult:
        return self._relay_signed("grantWithSig", grant.message(), signature)

    def revoke_with_sig(self, revoke: ConsentRevoke, signature: bytes) -> TxResult:
        return self._relay_signed("revokeWithSig", revoke.message(), signature)

    def grant_class_with_sig(self, grant: ClassConsentGrant, signature: bytes) -> TxResult:
        return self._relay_signed("grantClassWithSig", grant.message(), signature)

    def revoke_class_with_sig(self, revoke: ClassConsentRevoke, signature: bytes) -> TxResult:
        return self._relay_signed("revokeClassWithSig", revoke.message(), signature)

    def _relay_signed(self, function: str, message: dict[str, Any], signature: bytes) -> TxResult:
        """Send a patient-signed ConsentRegistry call: ``message`` lists the EIP-712 struct's
        fields in declaration order, which is also the Solidity struct's tuple order."""
        fn = getattr(self._c["ConsentRegistry"].functions, function)(
            tuple(message.values()), signature
        )
        tx_hash, receipt = self._send(fn)
        return TxResult(tx_hash, int(receipt["blockNumber"]))

    def class_consent_expiry(
        self, patient: str, hospital: int, roles: int, scope_kind: int, scope: bytes
    ) -> int:
        fn = self._c["ConsentRegistry"].functions.classConsentExpiry(
            to_checksum_address(patient), hospital, roles, int(scope_kind), scope
        )
        return int(self._read(fn.call))

    def class_consents(self, patient: str) -> list[ClassConsent]:
        params: dict[str, Any] = {
            "fromBlock": self._deployment.block_number,
            "toBlock": "latest",
            "address": self._deployment.consent_registry,
            "topics": [
                self._topic0(["ClassConsentGranted"]),
                "0x" + "00" * 12 + to_checksum_address(patient)[2:].lower(),
            ],
        }
        logs = self._read(lambda: self._w3.eth.get_logs(params))  # type: ignore[arg-type]
        abi = next(a for _c, a in self._events.values() if a["name"] == "ClassConsentGranted")
        keys: dict[tuple[int, int, int, bytes], None] = {}
        for entry in sorted(logs, key=lambda e: (int(e["blockNumber"]), int(e["logIndex"]))):
            args = get_event_data(self._w3.codec, abi, entry)["args"]  # type: ignore[arg-type]
            keys[
                (
                    int(args["hospital"]),
                    int(args["roles"]),
                    int(args["scopeKind"]),
                    bytes(args["scope"]),
                )
            ] = None
        now = int(self._read(lambda: self._w3.eth.get_block("latest"))["timestamp"])
        live = []
        for hospital, roles, kind, scope in keys:
            expires = self.class_consent_expiry(patient, hospital, roles, kind, scope)
            if expires > now:
                live.append(ClassConsent(hospital, roles, kind, scope, expires))
        return live

    def open_break_glass(
        self,
        patient: str,
        clinician: str,
        record_id: bytes | None,
        duration: int,
        reason_hash: bytes,
    ) -> TxResult:
        fn = self._c["ConsentRegistry"].functions.openBreakGlass(
            patient, clinician, record_id or ZERO32, duration, reason_hash
        )
        tx_hash, receipt = self._send(fn)
        return TxResult(tx_hash, int(receipt["blockNumber"]))

    def access_basis(
        self, patient: str, grantee: str, record_id: bytes, category_hash: bytes
    ) -> AccessBasis:
        fn = self._c["ConsentRegistry"].functions.accessBasis(
            patient, grantee, record_id, category_hash
        )
        return AccessBasis(int(self._read(fn.call)))

    def access_expiry(
        self, patient: str, grantee: str, record_id: bytes, category_hash: bytes, basis: AccessBasis
    ) -> int:
        f = self._c["ConsentRegistry"].functions
        if basis is AccessBasis.BREAK_GLASS:
            # A record-specific or an all-records break-glass: the later one decides.
            return max(
                int(self._read(f.breakGlassExpiry(patient, grantee, record_id).call)),
                int(self._read(f.breakGlassExpiry(patient, grantee, ZERO32).call)),
            )
        scope = {
            AccessBasis.RECORD_CONSENT: (ScopeKind.RECORD, record_id),
            AccessBasis.CATEGORY_CONSENT: (ScopeKind.CATEGORY, category_hash),
            AccessBasis.ALL_CONSENT: (ScopeKind.ALL, ZERO32),
        }.get(basis)
        if scope is None:
            return 0
        return int(self._read(f.consentExpiry(patient, grantee, int(scope[0]), scope[1]).call))

    def _topic0(self, names: Sequence[str]) -> list[str]:
        """Event-signature topics of the named events, for a get_logs OR filter."""
        return ["0x" + t.hex() for t, (_c, abi) in self._events.items() if abi["name"] in names]

    def consent_changes(self, from_block: int, to_block: int) -> list[tuple[str, int]]:
        params: dict[str, Any] = {
            "fromBlock": from_block,
            "toBlock": to_block,
            "address": self._deployment.consent_registry,
            "topics": [self._topic0(_AUDIT_EVENTS["ConsentRegistry"])],
        }
        logs = self._read(lambda: self._w3.eth.get_logs(params))  # type: ignore[arg-type]
        return [
            (to_checksum_address(bytes(entry["topics"][1])[-20:]), int(entry["blockNumber"]))
            for entry in logs
        ]

    # -- audit -------------------------------------------------------------------
    def record_accesses(self, entries: Sequence[AccessEntry]) -> TxResult:
        args = [
            [
                (
                    _address_bytes(e.patient),
                    _bytes32(e.record_id),
                    _address_bytes(e.actor),
                    bool(e.granted),
                    int(e.basis),
                )
                for e in entries
            ]
        ]
        tx_hash, receipt = self._send_batch(
            "AccessLog", "recordAccesses", args, access_log_gas_limit(len(entries))
        )
        return TxResult(tx_hash, _quantity(receipt["blockNumber"]))

    def audit_events(
        self,
        *,
        patient: str | None = None,
        record_id: bytes | None = None,
        actor: str | None = None,
        from_block: int | None = None,
        to_block: int | None = None,
    ) -> list[AuditEvent]:
        def topic_addr(a: str | None) -> str | None:
            return None if a is None else "0x" + "00" * 12 + to_checksum_address(a)[2:].lower()

        names = [n for group in _AUDIT_EVENTS.values() for n in group]
        if patient is None and record_id is None:
            names.append("BatchAnchored")  # topics (batchId, root, hospital): actor still applies
        topics: list[Any] = [
            self._topic0(names),
            topic_addr(patient),
            None if record_id is None else "0x" + record_id.hex(),
            topic_addr(actor),
        ]
        while topics and topics[-1] is None:
            topics.pop()
        params: dict[str, Any] = {
            # Nothing of ours precedes the deployment: start there, not at genesis.
            "fromBlock": self._deployment.block_number if from_block is None else from_block,
            "toBlock": "latest" if to_block is None else to_block,
            "address": [
                self._deployment.record_registry,
                self._deployment.consent_registry,
                self._deployment.access_log,
            ],
            "topics": topics,
        }
        logs = self._read(lambda: self._w3.eth.get_logs(params))  # type: ignore[arg-type]
        events: list[AuditEvent] = []
        for entry in logs:
            contract, abi, args = self._decode_log(entry)
            block = int(entry["blockNumber"])
            events.append(
                AuditEvent(
                    event=abi["name"],
                    contract=contract,
                    block_number=block,
                    timestamp=self._read(lambda b=block: self._block_timestamp(b)),
                    tx_hash=bytes(entry["transactionHash"]),
                    log_index=int(entry["logIndex"]),
                    args=args,
                )
            )
        events.sort(key=lambda e: (e.block_number, e.log_index))
        return events

    def anchor_key_audit(self, head: bytes, seq: int) -> TxResult:
        fn = self._c["AccessLog"].functions.anchorKeyAudit(head, seq)
        tx_hash, receipt = self._send(fn)
        return TxResult(tx_hash, int(receipt["blockNumber"]))

    def key_audit_anchors(self, hospitals: Sequence[str]) -> list[tuple[int, bytes]]:
        if not hospitals:
            return []
        params: dict[str, Any] = {
            "fromBlock": self._deployment.block_number,
            "toBlock": "latest",
            "address": self._deployment.access_log,
            "topics": [
                self._topic0(["KeyAuditAnchored"]),
                [
                    "0x" + "00" * 12 + to_checksum_address(h)[2:].lower()
                    for h in dict.fromkeys(hospitals)
                ],
            ],
        }
        logs = self._read(lambda: self._w3.eth.get_logs(params))  # type: ignore[arg-type]
        logs = sorted(logs, key=lambda e: (int(e["blockNumber"]), int(e["logIndex"])))
        return [(int.from_bytes(bytes(e["topics"][2]), "big"), bytes(e["data"])[:32]) for e in logs]

    # -- consortium ----------------------------------------------------------------
    def propose_rotation(self, new_address: str) -> tuple[int, bool]:
        consortium = self._c["Consortium"]
        fn = consortium.functions.propose(ROTATE_PROPOSAL, to_checksum_address(new_address), "")
        _tx, receipt = self._send(fn)
        created = consortium.events.ProposalCreated().process_receipt(receipt, errors=DISCARD)
        executed = consortium.events.ProposalExecuted().process_receipt(receipt, errors=DISCARD)
        return int(created[0]["args"]["id"]), bool(executed)

    def member_id(self, address: str) -> int:
        fn = self._c["Consortium"].functions.memberId(to_checksum_address(address))
        return int(self._read(fn.call))

    def member_address(self, member_id: int) -> str | None:
        if not 0 < member_id < 2**32:
            return None
        address = self._read(self._c["Consortium"].functions.memberAddress(member_id).call)
        if int(address, 16) == 0:
            return None
        return to_checksum_address(address)

    def propose_membership(self, kind: int, subject: str, name: str) -> tuple[int, bool]:
        consortium = self._c["Consortium"]
        fn = consortium.functions.propose(kind, to_checksum_address(subject), name)
        _tx, receipt = self._send(fn)
        created = consortium.events.ProposalCreated().process_receipt(receipt, errors=DISCARD)
        executed = consortium.events.ProposalExecuted().process_receipt(receipt, errors=DISCARD)
        return int(created[0]["args"]["id"]), bool(executed)

    def propose_call(self, target: str, data: bytes, description: str) -> tuple[int, bool]:
        consortium = self._c["Consortium"]
        fn = consortium.functions.proposeCall(to_checksum_address(target), data, description)
        _tx, receipt = self._send(fn)
        created = consortium.events.ProposalCreated().process_receipt(receipt, errors=DISCARD)
        executed = consortium.events.ProposalExecuted().process_receipt(receipt, errors=DISCARD)
        return int(created[0]["args"]["id"]), bool(executed)

    def vote(self, proposal_id: int) -> bool:
        consortium = self._c["Consortium"]
        _tx, receipt = self._send(consortium.functions.vote(proposal_id))
        executed = consortium.events.ProposalExecuted().process_receipt(receipt, errors=DISCARD)
        return bool(executed)

    def proposal(self, proposal_id: int) -> Proposal | None:
        f = self._c["Consortium"].functions
        if not 0 < proposal_id <= int(self._read(f.proposalCount().call)):
            return None
        kind, subject, proposer, created, expires, votes, executed = self._read(
            f.proposal(proposal_id).call
        )
        target = data = description = None
        if int(kind) == CALL:
            target, raw, description = self._read(f.proposalCall(proposal_id).call)
            target, data = to_checksum_address(target), bytes(raw)
        return Proposal(
            proposal_id=proposal_id,
            kind=int(kind),
            subject=to_checksum_address(subject),
            proposer=to_checksum_address(proposer),
            created_at=int(created),
            expires_at=int(expires),
            votes=int(votes),
            executed=bool(executed),
            member_count=int(self._read(f.memberCount().call)),
            target=target,
            data=data,
            description=description,
        )

    def call_proposals(self, target: str, data_prefix: bytes = b"") -> list[Proposal]:
        params: dict[str, Any] = {
            "fromBlock": self._deployment.block_number,
            "toBlock": "latest",
            "address": self._deployment.consortium,
            "topics": [
                self._topic0(["CallProposed"]),
                None,
                "0x" + "00" * 12 + to_checksum_address(target)[2:].lower(),
            ],
        }
        logs = self._read(lambda: self._w3.eth.get_logs(params))  # type: ignore[arg-type]
        abi = next(a for _c, a in self._events.values() if a["name"] == "CallProposed")
        ids = sorted(
            {
                int.from_bytes(bytes(e["topics"][1]), "big")
                for e in logs
                if bytes(
                    get_event_data(self._w3.codec, abi, e)["args"]["data"]  # type: ignore[arg-type]
                ).startswith(data_prefix)
            }
        )
        return [p for i in ids if (p := self.proposal(i)) is not None]

    def switch_signer(self, signer: SignerAPI, *, move_funds: bool = True) -> None:
        self._local_sender().switch_signer(signer, move_funds=move_funds)

    def close(self) -> None:
        self._sender.close()

    def is_member(self, address: str) -> bool:
        return bool(self._read(self._c["Consortium"].functions.isMember(address).call))

    def members(self) -> list[tuple[str, str]]:
        consortium = self._c["Consortium"].functions
        addresses = self._read(consortium.members().call)
        return [(a, self._read(consortium.memberName(a).call)) for a in addresses]
