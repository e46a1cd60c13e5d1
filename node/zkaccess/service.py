"""Anonymous reads: a clinician proves "my credential is in the consortium tree, my role may
read this category and my licence is valid" and gets the record sealed to a key only they
hold.

The node checks everything it can off-chain first (policy, time window, the proof itself,
the root, the nullifier: a bad request never costs gas), then has ZkAccessGate verify and
record the access on-chain, many requests per transaction. Only once the gate accepted does
any record content leave the node.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hsm.abc import KeyStoreAPI
from node.chain.abc import ZkGateAPI
from node.chain.exceptions import ContractReverted
from node.chain.models import TxResult, ZkAccessRequest
from node.coalescer import Coalescer
from node.consent.typed_data import category_hash
from node.exceptions import Conflict, Forbidden, InvalidRequest
from node.flows.read_record import check_not_erased, open_record
from node.zkaccess.credential_mirror import CredentialMirror
from node.zkaccess.sealed_box import SealedBox, seal
from storage.abc import BlobStoreAPI, CacheAPI, RecordIndexAPI
from zk.abc import VerifierAPI
from zk.credentials import external_nullifier, signal_hash
from zk.exceptions import ProofInvalid
from zk.field import R
from zk.models import Proof

log = logging.getLogger(__name__)

# Contract errors that a concurrent request can still cause after the off-chain checks.
_REVERT_MEANING: dict[str, type[Exception]] = {
    "ZkAccessGateNullifierUsed": Conflict,
    "ZkAccessGateUnknownRoot": Forbidden,
    "ZkAccessGateNoPolicy": Forbidden,
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
    signal: bytes  # the requester's ephemeral X25519 public key
    nullifier_hash: int
    proof: tuple[int, ...]  # 8 words, EVM order


@dataclass(frozen=True, slots=True)
class ZkReadResult:
    record_id: bytes
    category: str
    content_type: str
    box: SealedBox
    tx: TxResult


class ZkAccessService:
    def __init__(
        self,
        *,
        keys_info: ZkKeys,
        verifier: VerifierAPI,
        gate: ZkGateAPI,
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

    def public_inputs(self, request: ZkReadRequest, allowed_roles: int) -> tuple[int, ...]:
        """The circuit's public inputs, built the way ZkAccessGate builds them."""
        ext = external_nullifier(request.record_id, request.signal)
        return (
            request.root,
            allowed_roles,
            request.current_time,
            ext,
            request.nullifier_hash,
            signal_hash(request.signal),
        )

    def read(self, request: ZkReadRequest) -> ZkReadResult:
        row = self._index.get_record(request.record_id)
        check_not_erased(row)  # before the proof spends its nullifier on-chain
        category = category_hash(row.category)
        allowed_roles = self.gate.category_policy(category)
        if allowed_roles == 0:
            raise Forbidden("no zero-knowledge access policy covers this record's category")
        now = int(time.time())
        if request.current_time > now + self.max_clock_skew:
            raise InvalidRequest("current_time is in the future")
        if request.current_time < now - self.max_proof_age:
            raise InvalidRequest("the proof is too old: prove again with a fresh current_time")
        if not 0 <= request.root < R or not 0 <= request.nullifier_hash < R:
            raise InvalidRequest("root and nullifier_hash must be field elements")
        proof = Proof.from_words(request.proof, self.public_inputs(request, allowed_roles))
        if not self.verifier.verify(proof):
            raise ProofInvalid("the proof does not verify for this record, policy and request")
        if not self.gate.is_valid_root(request.root):
            raise Forbidden("the credential root is unknown, too old or was revoked")
        if self.gate.nullifier_used(request.nullifier_hash):
            raise Conflict("this proof's nullifier was already used")
        outcome = self._submitter.submit(
            ZkAccessRequest(
                record_id=request.record_id,
                category=category,
                root=request.root,
                current_time=request.current_time,
                signal=request.signal,
                nullifier_hash=request.nullifier_hash,
                proof=tuple(request.proof),
            )
        )
        if isinstance(outcome, Exception):
            raise outcome
        content = open_record(row, blobs=self._blobs, keys=self._keys, cache=self._cache)
        box = seal(request.signal, content, request.record_id)
        log.info(
            "zk access to record 0x%s accepted in tx 0x%s",
            request.record_id.hex(),
            outcome.tx_hash.hex(),
        )
        return ZkReadResult(request.record_id, row.category, row.content_type, box, outcome)

    # -- batching ----------------------------------------------------------------
    def _submit_batch(self, requests: Sequence[ZkAccessRequest]) -> list[TxResult | Exception]:
        """One gate transaction for the batch. If the contract refuses it (a request went
        stale or raced another for its nullifier), resend one by one so that only the
        offending request fails."""
        results: list[TxResult | Exception | None] = [None] * len(requests)
        seen: set[int] = set()
        batch: list[int] = []
        for i, request in enumerate(requests):
            if request.nullifier_hash in seen:
                results[i] = Conflict("this proof's nullifier was already used")
            else:
                seen.add(request.nullifier_hash)
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
