"""Anonymous reads (v2): a clinician proves "my credential (issued by a member hospital, with
the role and licence expiry that hospital set) is in the consortium tree, my role is in the
patient's reader-class consent and the consortium's category policy, my licence is valid"
and gets the record sealed to a one-time key only they hold.

The node fills the patient and the category from its own index, then checks everything it
can off-chain, in this order, so that a bad request never costs gas: record exists and is
not erased (404/410), the patient's class consent is live (403), the class and the category
policy leave a role (403), the time window (400), the proof (422), the root (403), replay
(409), the index row against the record's ciphertext (its patient and category are bound
to it: ``node.flows.record_binding``). Then ZkAccessGate re-checks and records the access
on-chain, many requests per transaction. Only once the gate accepted does any record
content leave the node.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hsm.abc import KeyStoreAPI
from node.chain.abc import ChainClientAPI, ZkGateAPI
from node.chain.exceptions import ContractReverted
from node.chain.models import TxResult, ZkAccessEvent, ZkAccessRequest
from node.coalescer import Coalescer
from node.consent.typed_data import category_hash
from node.exceptions import Conflict, ConsentDenied, Forbidden, InvalidRequest
from node.flows.read_record import check_not_erased, open_record
from node.zkaccess.credential_mirror import CredentialMirror
from node.zkaccess.sealed_box import SealedBox, SealedBoxError, check_recipient, seal
from storage.abc import BlobStoreAPI, CacheAPI, RecordIndexAPI
from storage.models import RecordRow
from zk.abc import VerifierAPI
from zk.credentials import access_context, access_scope, epoch_of, request_id
from zk.exceptions import ProofInvalid
from zk.field import R
from zk.models import Proof

log = logging.getLogger(__name__)

SCOPE_RECORD, SCOPE_CATEGORY, SCOPE_ALL = 0, 1, 2

# Contract errors that a concurrent request (or a change between the checks and the
# transaction: a revoke, a vote) can still cause after the off-chain checks.
_REVERT_MEANING: dict[str, type[Exception]] = {
    "ZkAccessGateReplayed": Conflict,
    "ZkAccessGateUnknownRoot": Forbidden,
    "ZkAccessGateRolesNotAllowed": Forbidden,
    "ZkAccessGateNoConsent": ConsentDenied,
    "ZkAccessGateInvalidProof": ProofInvalid,
    "ZkAccessGateStaleProof": InvalidRequest,
    "ZkAccessGateFutureProof": InvalidRequest,
}


@dataclass(frozen=True)
class ZkKeys:
    """What clinicians need to prove against this node's gate: the circuit, its keys and
    where they came from (a dev setup or the consortium's ceremony)."""

    circuit: str
    circuit_hash: str
    kind: str  # "dev" | "ceremony"
    public_inputs: tuple[str, ...]
    verification_key: dict[str, Any]
    proving_key_path: Path


@dataclass(frozen=True, slots=True)
class ZkReadRequest:
    record_id: bytes
    root: int
    current_time: int
    signal: bytes  # the requester's one-time X25519 public key
    epoch_nullifier: int
    scope_kind: int  # which of the patient's class consents: 0 record, 1 category, 2 all
    class_hospital: int  # member id, 0 = any member hospital
    class_roles: int  # 16-bit roles mask of the consent
    proof: tuple[int, ...]  # 8 words, EVM order


@dataclass(frozen=True, slots=True)
class ZkReadResult:
    record_id: bytes
    category: str
    content_type: str
    box: SealedBox
    tx: TxResult


@dataclass(frozen=True, slots=True)
class ReaderClass:
    """A live reader-class consent covering a record (no patient address)."""

    scope_kind: int
    hospital: int
    roles: int
    mask: int  # roles AND the category policy: who may actually read with it
    expires_at: int


@dataclass(frozen=True, slots=True)
class RecordAccess:
    record_id: bytes
    patient: str
    category: str
    policy: int
    classes: tuple[ReaderClass, ...]


@dataclass(frozen=True, slots=True)
class EpochReaders:
    epoch: int
    accesses: int
    distinct_readers: int  # distinct epoch nullifiers: credentials, not people's names


def record_scope(kind: int, row: RecordRow) -> bytes:
    """The consent scope a class consent of ``kind`` names for this record."""
    if kind == SCOPE_RECORD:
        return row.record_id
    if kind == SCOPE_CATEGORY:
        return category_hash(row.category)
    if kind == SCOPE_ALL:
        return bytes(32)
    raise InvalidRequest("scope_kind must be 0 (record), 1 (category) or 2 (everything)")


class ZkAccessService:
    def __init__(
        self,
        *,
        keys_info: ZkKeys,
        verifier: VerifierAPI,
        gate: ZkGateAPI,
        chain: ChainClientAPI,
        mirror: CredentialMirror,
        index: RecordIndexAPI,
        blobs: BlobStoreAPI,
        keys: KeyStoreAPI,
        cache: CacheAPI | None,
        max_proof_age: int,
        max_clock_skew: int,
        batch_window: float,
        max_batch: int,
    ) -> None:
        self.keys_info = keys_info
        self.verifier = verifier
        self.gate = gate
        self.chain = chain
        self.mirror = mirror
        self._index = index
        self._blobs = blobs
        self._keys = keys
        self._cache = cache
        self.max_proof_age = max_proof_age
        self.max_clock_skew = max_clock_skew
        self._submitter: Coalescer[ZkAccessRequest, TxResult | Exception] = Coalescer(
            self._submit_batch, window=batch_window, max_batch=max_batch, name="zk-access"
        )

    def close(self) -> None:
        self._submitter.close()

    def public_inputs(
        self, request: ZkReadRequest, row: RecordRow, mask: int
    ) -> tuple[int, int, int, int]:
        """The circuit's four public inputs, built the way ZkAccessGate builds them from the
        request this node relays (patient and category from its own index)."""
        epoch = epoch_of(request.current_time, self.gate.epoch_length())
        scope = access_scope(
            self.gate.chain_id,
            self.gate.gate_address,
            request.record_id,
            row.patient,
            category_hash(row.category),
            epoch,
        )
        return (
            request.root,
            access_context(request.current_time, mask, request.class_hospital, request.signal),
            scope,
            request.epoch_nullifier,
        )

    # -- what a clinician needs to know before proving -----------------------------------
    def record_access(self, record_id: bytes) -> RecordAccess:
        """The record's category, the consortium's policy for it and the patient's live
        reader-class consents that cover it."""
        row = self._index.get_record(record_id)
        check_not_erased(row)
        category = category_hash(row.category)
        policy = self.gate.category_policy(category)
        scopes = {
            SCOPE_RECORD: row.record_id,
            SCOPE_CATEGORY: category,
            SCOPE_ALL: bytes(32),
        }
        classes = tuple(
            ReaderClass(
                scope_kind=int(c.scope_kind),
                hospital=c.hospital,
                roles=c.roles,
                mask=c.roles & policy,
                expires_at=c.expires_at,
            )
            for c in self.chain.class_consents(row.patient)
            if scopes.get(int(c.scope_kind)) == bytes(c.scope)
        )
        return RecordAccess(row.record_id, row.patient, row.category, policy, classes)

    # -- the read ----------------------------------------------------------------------
    def read(self, request: ZkReadRequest) -> ZkReadResult:
        row = self._index.get_record(request.record_id)  # 404
        check_not_erased(row)  # 410, before the proof spends its request id on-chain
        if not 0 < request.class_roles < 1 << 16 or not 0 <= request.class_hospital < 1 << 32:
            raise InvalidRequest(
                "class_roles must be a nonzero 16-bit mask, class_hospital a uint32"
            )
        scope = record_scope(request.scope_kind, row)
        # 1. The patient's consent for this reader class, live now.
        expiry = self.chain.class_consent_expiry(
            row.patient, request.class_hospital, request.class_roles, request.scope_kind, scope
        )
        now = int(time.time())
        if expiry <= now:
            raise ConsentDenied(
                "the patient has no live consent for this reader class over this record"
            )
        # 2. The consortium's category policy leaves a role of the class.
        category = category_hash(row.category)
        mask = request.class_roles & self.gate.category_policy(category)
        if mask == 0:
            raise Forbidden(
                "the consortium's policy for this category allows none of the class's roles"
            )
        # 3. Time window.
        if request.current_time > now + self.max_clock_skew:
            raise InvalidRequest("current_time is in the future")
        if request.current_time < now - self.max_proof_age:
            raise InvalidRequest("the proof is too old: prove again with a fresh current_time")
        if not 0 <= request.root < R or not 0 <= request.epoch_nullifier < R:
            raise InvalidRequest("root and epoch_nullifier must be field elements")
        try:
            check_recipient(request.signal)  # the record is sealed to it once the gate accepts
        except SealedBoxError:
            raise InvalidRequest(
                "signal: not a usable X25519 public key (the record is sealed to it)"
            ) from None
        # 4. The proof, off-chain.
        proof = Proof.from_words(request.proof, self.public_inputs(request, row, mask))
        if not self.verifier.verify(proof):
            raise ProofInvalid("the proof does not verify for this record, class and request")
        # 5. The root: known, recent, and no revocation since.
        if not self.gate.is_valid_root(request.root):
            raise Forbidden("the credential root is unknown, too old or was revoked since")
        # 6. Replay.
        if self.gate.request_used(request.record_id, request.signal):
            raise Conflict("this request (record, signal) was already served")
        # 7. The row the proof and the gate rely on (patient, category) matches the record's
        # ciphertext: a rewritten index row fails here (500 integrity_check_failed), before
        # the gate spends the request. The content stays in memory until the gate accepts.
        content = open_record(row, blobs=self._blobs, keys=self._keys, cache=self._cache)
        outcome = self._submitter.submit(
            ZkAccessRequest(
                record_id=request.record_id,
                patient=row.patient,
                category=category,
                scope_kind=request.scope_kind,
                class_hospital=request.class_hospital,
                class_roles=request.class_roles,
                root=request.root,
                current_time=request.current_time,
                signal=request.signal,
                epoch_nullifier=request.epoch_nullifier,
                proof=tuple(request.proof),
            )
        )
        if isinstance(outcome, Exception):
            raise outcome
        box = seal(request.signal, content, request.record_id)
        log.info(
            "zk access to record 0x%s accepted in tx 0x%s",
            request.record_id.hex(),
            outcome.tx_hash.hex(),
        )
        return ZkReadResult(request.record_id, row.category, row.content_type, box, outcome)

    # -- auditors --------------------------------------------------------------------------
    def accesses(self, record_id: bytes | None = None) -> list[ZkAccessEvent]:
        return self.gate.access_events(record_id=record_id)

    def readers(
        self, record_id: bytes, from_time: int | None, to_time: int | None
    ) -> tuple[int, list[EpochReaders]]:
        """(epoch length, per epoch of [from_time, to_time]: accesses and distinct epoch
        nullifiers) for one record. Epochs without an access are left out."""
        length = self.gate.epoch_length()
        first = None if from_time is None else from_time // length
        last = None if to_time is None else to_time // length
        per_epoch: dict[int, tuple[int, set[int]]] = {}
        for e in self.gate.access_events(record_id=record_id):
            if (first is not None and e.epoch < first) or (last is not None and e.epoch > last):
                continue
            count, seen = per_epoch.setdefault(e.epoch, (0, set()))
            seen.add(e.epoch_nullifier)
            per_epoch[e.epoch] = (count + 1, seen)
        return length, [
            EpochReaders(epoch, count, len(seen))
            for epoch, (count, seen) in sorted(per_epoch.items())
        ]

    # -- batching ----------------------------------------------------------------
    def _submit_batch(self, requests: Sequence[ZkAccessRequest]) -> list[TxResult | Exception]:
        """One gate transaction for the batch. If the contract refuses it (a request went
        stale, a consent was revoked, or two raced for one request id), resend one by one so
        that only the offending request fails."""
        results: list[TxResult | Exception | None] = [None] * len(requests)
        seen: set[bytes] = set()
        batch: list[int] = []
        for i, request in enumerate(requests):
            key = request_id(request.record_id, request.signal)
            if key in seen:
                results[i] = Conflict("this request (record, signal) was already served")
            else:
                seen.add(key)
                batch.append(i)
        if batch:
            try:
                tx = self.gate.access_batch([requests[i] for i in batch])
                for i in batch:
                    results[i] = tx
            except ContractReverted as err:
                if len(batch) == 1:
                    results[batch[0]] = _meaning(err)
                else:
                    for i in batch:
                        try:
                            results[i] = self.gate.access_batch([requests[i]])
                        except ContractReverted as single:
                            results[i] = _meaning(single)
        return [r if r is not None else RuntimeError("unreachable") for r in results]


def _meaning(err: ContractReverted) -> Exception:
    cls = _REVERT_MEANING.get(err.name)
    if cls is None:
        return err
    return cls(f"the access gate refused the request ({err.name})")
