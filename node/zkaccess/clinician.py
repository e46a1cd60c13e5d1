"""The clinician's side of an anonymous read (v2): keep the identity secret, build the Merkle
proof locally from the public tree, pick a reader class the patient consented to, prove,
and open the record sealed to a one-time key.

What the node sees from this client: ``GET /zk`` and ``GET /zk/proving-key`` (the same for
everyone), ``GET /zk/tree`` (every leaf, the same for everyone: the client finds its own
leaf locally), ``GET /zk/records/{id}/access`` (the record it is about to read anyway) and
the read itself, whose only values are the proof's public inputs (root, time, class, signal,
epoch nullifier) and the proof. The identity commitment, the leaf and its index never leave.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from node.client import EmrClient
from node.zkaccess.sealed_box import SealedBox, open_box, public_key_bytes
from zk.artifacts import MANIFEST, PROVING_KEY, VERIFICATION_KEY, SetupManifest, key_dir, load_keys
from zk.credentials import IssuedCredential, clinician_access_inputs
from zk.exceptions import InputError, SetupError
from zk.merkle import LeanIMT, LeanIMTProof
from zk.prover import Groth16Prover
from zk.registry import get_circuit


@dataclass(frozen=True)
class ZkRead:
    record_id: str
    category: str
    content_type: str
    content: bytes
    tx_hash: str
    prove_seconds: float


@dataclass(frozen=True)
class PreparedRead:
    """A read request ready to send, and the one-time key that opens its answer."""

    record_id: str
    body: dict[str, Any]
    key: X25519PrivateKey
    prove_seconds: float


def tree_from_leaves(leaves: list[int]) -> LeanIMT:
    """The LeanIMT holding ``leaves`` in order, 0 for a revoked slot (inserted as a unique
    placeholder, then updated to 0 as the registry did)."""
    taken = set(leaves)
    placeholders: dict[int, int] = {}
    candidate = 1
    values = []
    for i, leaf in enumerate(leaves):
        if leaf == 0:
            while candidate in taken:
                candidate += 1
            taken.add(candidate)
            placeholders[i] = candidate
            values.append(candidate)
        else:
            values.append(leaf)
    tree = LeanIMT(values)
    for i in placeholders:
        tree.remove(i)
    return tree


def credential_proof(tree_json: dict[str, Any], leaf: int) -> LeanIMTProof:
    """This credential's Merkle proof against the tree served at ``GET /zk/tree``. Raises
    ``InputError`` when the tree is inconsistent or does not hold the leaf."""
    try:
        leaves = [int(v) for v in tree_json["leaves"]]
        root = int(tree_json["root"])
    except (KeyError, TypeError, ValueError):
        raise InputError("the node's credential tree is malformed") from None
    tree = tree_from_leaves(leaves)
    if tree.root != root:
        raise InputError("the node's credential tree does not match its root")
    if not tree.has(leaf):
        raise InputError("this credential is not in the consortium tree (not issued, or revoked)")
    return tree.generate_proof(tree.index_of(leaf))


def choose_class(access: dict[str, Any], issued: IssuedCredential, now: int) -> dict[str, Any]:
    """A live reader class of the record's patient that this credential belongs to (role in
    the class's mask, the class's hospital 0 or the issuer); the narrowest scope first."""
    fitting = [
        c
        for c in access.get("classes", [])
        if int(c["mask"]) >> issued.role & 1
        and int(c["hospital"]) in (0, issued.hospital_id)
        and int(c["expires_at"]) > now
    ]
    if not fitting:
        raise InputError(
            "no live consent of the patient admits this credential's role and hospital "
            "for this record"
        )
    return min(fitting, key=lambda c: (int(c["scope_kind"]), -int(c["hospital"])))


class ClinicianProver:
    """A clinician's issued credential plus the circuit keys of the node(s) they read from;
    keys are downloaded once into ``keys_dir`` (per circuit version)."""

    def __init__(self, credential: IssuedCredential, keys_dir: Path) -> None:
        self.credential = credential
        self.keys_dir = keys_dir
        self._prover: Groth16Prover | None = None
        self._info: dict[str, Any] | None = None

    def info(self, client: EmrClient) -> dict[str, Any]:
        if self._info is None:
            self._info = client.zk.info()
        return self._info

    def prover(self, client: EmrClient) -> Groth16Prover:
        if self._prover is not None:
            return self._prover
        info = self.info(client)
        spec = get_circuit(info["circuit"])
        if spec.circuit_hash != info["circuit_hash"]:
            raise SetupError(
                "the node runs another version of the circuit than this emr-node: upgrade one"
            )
        directory = key_dir(spec, self.keys_dir)
        vk_text = json.dumps(info["verification_key"])
        if not (directory / MANIFEST).exists():
            directory.mkdir(parents=True, exist_ok=True)
            (directory / PROVING_KEY).write_bytes(client.zk.proving_key())
            (directory / VERIFICATION_KEY).write_text(vk_text)
            manifest = SetupManifest(
                circuit=spec.name,
                circuit_hash=spec.circuit_hash,
                kind=info["key_kind"],
                created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                n_public=spec.n_public,
                groth16py="downloaded",
            )
            (directory / MANIFEST).write_text(json.dumps(manifest.to_json(), indent=2) + "\n")
        keys = load_keys(spec, self.keys_dir)
        if json.loads(keys.verification_key_json) != info["verification_key"]:
            raise SetupError("cached proving key does not match the node's verification key")
        self._prover = Groth16Prover(keys)
        return self._prover

    def prepare(self, client: EmrClient, record_id: str, *, now: int | None = None) -> PreparedRead:
        """Build and prove the read request for ``record_id`` (0x-hex) without sending it."""
        prover = self.prover(client)
        info = self.info(client)
        issued = self.credential
        proof = credential_proof(client.zk.tree(), issued.leaf)
        now = int(time.time()) if now is None else now
        access = client.zk.record_access(record_id)
        chosen = choose_class(access, issued, now)
        chosen_patient = access["patient"]
        chosen_category = bytes.fromhex(access["category_hash"].removeprefix("0x"))
        ephemeral = X25519PrivateKey.generate()
        signal = public_key_bytes(ephemeral)
        try:
            record = bytes.fromhex(record_id.removeprefix("0x"))
        except ValueError:
            raise InputError("the record id must be 0x-hex") from None
        inputs = clinician_access_inputs(
            issued.identity,
            issued,
            proof,
            proof.root,
            now,
            int(chosen["mask"]),
            int(chosen["hospital"]),
            signal,
            int(info["chain_id"]),
            info["zk_access_gate"],
            record,
            chosen_patient,
            chosen_category,
            int(info["epoch_length"]),
        )
        started = time.perf_counter()
        zk_proof = prover.prove(inputs)
        prove_seconds = time.perf_counter() - started
        body = {
            "root": str(inputs["root"]),
            "current_time": now,
            "signal": "0x" + signal.hex(),
            "epoch_nullifier": str(inputs["epochNullifier"]),
            "scope_kind": int(chosen["scope_kind"]),
            "class_hospital": int(chosen["hospital"]),
            "class_roles": int(chosen["roles_mask"]),
            "proof": [str(w) for w in zk_proof.words],
        }
        return PreparedRead(record_id, body, ephemeral, prove_seconds)

    def read(self, client: EmrClient, record_id: str) -> ZkRead:
        """Prove and read ``record_id`` (0x-hex)."""
        prepared = self.prepare(client, record_id)
        answer = client.zk.read(record_id, prepared.body)
        record = bytes.fromhex(record_id.removeprefix("0x"))
        content = open_box(prepared.key, SealedBox.from_json(answer["sealed"]), record)
        return ZkRead(
            record_id=answer["record_id"],
            category=answer["category"],
            content_type=answer["content_type"],
            content=content,
            tx_hash=answer["tx_hash"],
            prove_seconds=prepared.prove_seconds,
        )
