"""``ChainClientAPI`` over web3: works with the embedded py-evm chain and any JSON-RPC node.

All sends go through one lock with a locally tracked nonce: the node is the only sender
of its account, and serialising avoids nonce races between the anchorer, the access-log
flusher and API requests.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from eth_account.signers.base import BaseAccount
from eth_utils import keccak, to_checksum_address
from web3 import Web3
from web3._utils.events import get_event_data
from web3.contract.contract import ContractFunction
from web3.exceptions import TimeExhausted, Web3Exception
from web3.logs import DISCARD

from hsm.abc import SignerAPI
from hsm.account import SignerAccount
from node.chain.abc import ChainClientAPI
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


class Web3ChainClient(ChainClientAPI):
    def __init__(self, w3: Web3, deployment: Deployment, account: BaseAccount) -> None:
        self._w3 = w3
        self._deployment = deployment
        self._account = account
        self._lock = threading.RLock()
        self._nonce: int | None = None
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
        for name, contract in self._c.items():
            for item in contract.abi:
                if item.get("type") == "event":
                    types = ",".join(i["type"] for i in item["inputs"])
                    self._events[keccak(text=f"{item['name']}({types})")] = (name, item)

    # -- plumbing ----------------------------------------------------------------
    @property
    def chain_id(self) -> int:
        return self._deployment.chain_id

    @property
    def hospital(self) -> str:
        return self._account.address

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
        """Simulate (reverts surface here, before anything is sent), sign with the node's key
        and send; return (tx hash, receipt).

        Without ``gas_limit`` the simulation is a gas estimate. Batched calls pass a limit
        from their measured gas (docs/gas.md) and are simulated with one ``eth_call``:
        py-evm estimates by binary search, running a 1,000-record anchor ~20 times.
        """
        with self._lock:
            sender = self._account.address
            try:
                if gas_limit is None:
                    estimate = fn.estimate_gas({"from": sender})
                    gas_limit = estimate + estimate // 5 + 10_000
                else:
                    fn.call({"from": sender, "gas": gas_limit})
                if self._nonce is None:
                    self._nonce = self._w3.eth.get_transaction_count(sender, "pending")
                tx = fn.build_transaction({"from": sender, "nonce": self._nonce, "gas": gas_limit})
                signed = self._account.sign_transaction(tx)
                tx_hash = self._w3.eth.send_raw_transaction(signed.raw_transaction)
                self._nonce += 1
                receipt = self._w3.eth.wait_for_transaction_receipt(tx_hash, timeout=120)
            except (ConnectionError, OSError) as err:
                self._nonce = None
                raise ChainUnavailable("the chain node cannot be reached") from err
            except TimeExhausted as err:
                # Sent but not mined in time (e.g. QBFT lost quorum): re-read the nonce next.
                self._nonce = None
                raise ChainUnavailable("the transaction was not mined in time") from err
            except Exception as err:
                reverted = as_reverted(err)
                if reverted is not None:  # refused in simulation: nothing was sent
                    raise reverted from err
                self._nonce = None
                if isinstance(err, Web3Exception):
                    raise ChainError(f"transaction failed: {type(err).__name__}") from err
                raise
            if receipt["status"] != 1:
                raise ContractReverted("Reverted", ())
            return bytes(tx_hash), dict(receipt)

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
        fn = self._c["RecordRegistry"].functions.anchorBatch(
            root, list(record_ids), [to_checksum_address(p) for p in patients]
        )
        tx_hash, receipt = self._send(fn, anchor_gas_limit(len(record_ids)))
        events = (
            self._c["RecordRegistry"]
            .events.BatchAnchored()
            .process_receipt(receipt, errors=DISCARD)
        )
        batch_id = int(events[0]["args"]["batchId"])
        block = int(receipt["blockNumber"])
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
        fn = self._c["AccessLog"].functions.recordAccesses(
            [(e.patient, e.record_id, e.actor, e.granted, int(e.basis)) for e in entries]
        )
        tx_hash, receipt = self._send(fn, access_log_gas_limit(len(entries)))
        return TxResult(tx_hash, int(receipt["blockNumber"]))

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
            contract, abi = self._events[bytes(entry["topics"][0])]
            data = get_event_data(self._w3.codec, abi, entry)  # type: ignore[arg-type]
            block = int(entry["blockNumber"])
            events.append(
                AuditEvent(
                    event=abi["name"],
                    contract=contract,
                    block_number=block,
                    timestamp=self._read(lambda b=block: self._block_timestamp(b)),
                    tx_hash=bytes(entry["transactionHash"]),
                    log_index=int(entry["logIndex"]),
                    args=dict(data["args"]),
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
        account = SignerAccount(signer)
        with self._lock:  # no send of the old account is in flight past this point
            old = self._account.address
            if account.address == old:
                return
            if move_funds:
                self._move_funds(account.address)
            self._account = account
            self._nonce = None
        log.info("chain client now sends as %s (was %s)", account.address, old)

    def _move_funds(self, to: str) -> None:
        sender = self._account.address
        gas_price = int(self._read(lambda: self._w3.eth.gas_price))
        balance = int(self._read(lambda: self._w3.eth.get_balance(sender)))
        value = balance - 21_000 * gas_price
        if value <= 0:
            return
        nonce = self._read(lambda: self._w3.eth.get_transaction_count(sender, "pending"))
        tx = {
            "to": to,
            "value": value,
            "gas": 21_000,
            "gasPrice": gas_price,
            "nonce": nonce,
            "chainId": self._deployment.chain_id,
        }
        try:
            signed = self._account.sign_transaction(tx)  # type: ignore[arg-type]
            tx_hash = self._w3.eth.send_raw_transaction(signed.raw_transaction)
            self._w3.eth.wait_for_transaction_receipt(tx_hash, timeout=120)
        except (ConnectionError, OSError) as err:
            raise ChainUnavailable("the chain node cannot be reached") from err
        except TimeExhausted as err:
            raise ChainUnavailable("the transfer was not mined in time") from err

    def is_member(self, address: str) -> bool:
        return bool(self._read(self._c["Consortium"].functions.isMember(address).call))

    def members(self) -> list[tuple[str, str]]:
        consortium = self._c["Consortium"].functions
        addresses = self._read(consortium.members().call)
        return [(a, self._read(consortium.memberName(a).call)) for a in addresses]
