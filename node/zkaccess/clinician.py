"""The clinician's side of an anonymous read: keep the credential secret, fetch the Merkle
path and the record's policy from a node, prove, and open the record sealed to a one-time
key.

Nothing identifying leaves the clinician: the node sees a proof, a root, a nullifier and a
one-time X25519 public key.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from node.client import EmrClient
from node.zkaccess.sealed_box import SealedBox, open_box, public_key_bytes
from zk.artifacts import MANIFEST, PROVING_KEY, VERIFICATION_KEY, SetupManifest, key_dir, load_keys
from zk.credentials import Credential, clinician_access_inputs
from zk.exceptions import SetupError
from zk.merkle import MerklePath
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


class ClinicianProver:
    """A clinician's credential plus the circuit keys of the node(s) they read from; keys
    are downloaded once into ``keys_dir`` (per circuit version)."""

    def __init__(self, credential: Credential, keys_dir: Path) -> None:
        self.credential = credential
        self.keys_dir = keys_dir
        self._prover: Groth16Prover | None = None

    def prover(self, client: EmrClient) -> Groth16Prover:
        if self._prover is not None:
            return self._prover
        info = client.zk.info()
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

    def read(self, client: EmrClient, record_id: str) -> ZkRead:
        """Prove and read ``record_id`` (0x-hex)."""
        prover = self.prover(client)
        commitment = self.credential.commitment
        path_info = client.zk.path(commitment)
        policy = client.zk.record_policy(record_id)
        path = MerklePath(
            tuple(int(s) for s in path_info["siblings"]), tuple(path_info["path_indices"])
        )
        ephemeral = X25519PrivateKey.generate()
        signal = public_key_bytes(ephemeral)
        record = bytes.fromhex(record_id.removeprefix("0x"))
        now = int(time.time())
        inputs = clinician_access_inputs(
            self.credential,
            path,
            int(path_info["root"]),
            int(policy["allowed_roles"]),
            now,
            record,
            signal,
        )
        started = time.perf_counter()
        proof = prover.prove(inputs)
        prove_seconds = time.perf_counter() - started
        answer = client.zk.read(
            record_id,
            {
                "root": str(inputs["root"]),
                "current_time": now,
                "signal": "0x" + signal.hex(),
                "nullifier_hash": str(inputs["nullifierHash"]),
                "proof": [str(w) for w in proof.words],
            },
        )
        content = open_box(ephemeral, SealedBox.from_json(answer["sealed"]), record)
        return ZkRead(
            record_id=answer["record_id"],
            category=answer["category"],
            content_type=answer["content_type"],
            content=content,
            tx_hash=answer["tx_hash"],
            prove_seconds=prove_seconds,
        )
