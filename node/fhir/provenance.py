"""Provenance of a DocumentReference: how its record was anchored on-chain.

One Provenance per anchored record, with the record's id. It names the record
(``target``), the hospital that signed the anchoring transaction (``agent``, its chain
address; the signature itself is the transaction's) and, in the extension ``anchor``,
what a verifier needs: the transaction, block, batch, Merkle root, the record's leaf and
its proof (siblings, leaf to root). A record not anchored yet has no Provenance.
"""

from __future__ import annotations

from typing import Any

from node.fhir.common import Capability, SearchParam, extension_url, register
from node.fhir.documents import HOSPITAL_SYSTEM, RESOURCE, fhir_id, instant
from storage.models import AnchorReceipt

PROVENANCE = "Provenance"
ANCHOR = extension_url("anchor")

register(
    Capability(
        type=PROVENANCE,
        interactions=("read", "search-type"),
        documentation=(
            "The on-chain anchoring of a DocumentReference (same id): transaction, Merkle "
            f"root and proof in extension {ANCHOR}; none until the record is anchored."
        ),
        search_params=(SearchParam("target", "reference", "DocumentReference/<id>"),),
    )
)


def _hex(value: bytes) -> str:
    return "0x" + value.hex()


def to_provenance(receipt: AnchorReceipt) -> dict[str, Any] | None:
    """The Provenance of an anchored record; None while it is pending."""
    batch = receipt.batch
    if batch is None:
        return None
    rid = fhir_id(receipt.record_id)
    anchor: list[dict[str, Any]] = [
        {"url": "transaction", "valueString": _hex(batch.tx_hash)},
        {"url": "block", "valueString": str(batch.block_number)},
        {"url": "batch", "valueString": str(batch.batch_id)},
        {"url": "root", "valueString": _hex(batch.root)},
        {"url": "leaf", "valueString": _hex(receipt.leaf)},
        *({"url": "proof", "valueString": _hex(p)} for p in receipt.proof),
        {"url": "receipt", "valueUrl": f"/records/0x{rid}/receipt"},
    ]
    signer = {"identifier": {"system": HOSPITAL_SYSTEM, "value": batch.hospital}}
    return {
        "resourceType": PROVENANCE,
        "id": rid,
        "extension": [{"url": ANCHOR, "extension": anchor}],
        "target": [{"reference": f"{RESOURCE}/{rid}"}],
        "occurredDateTime": instant(batch.anchored_at),
        "recorded": instant(batch.anchored_at),
        "policy": ["urn:emr-node:anchoring"],
        "activity": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/v3-DataOperation",
                    "code": "CREATE",
                    "display": "create",
                }
            ],
            "text": "anchored on-chain in a Merkle batch",
        },
        "agent": [
            {
                "type": {
                    "coding": [
                        {
                            "system": "http://terminology.hl7.org/CodeSystem/provenance-participant-type",
                            "code": "custodian",
                            "display": "Custodian",
                        }
                    ]
                },
                "who": signer,
            }
        ],
        "entity": [
            {
                "role": "source",
                "what": {
                    "identifier": {"system": "urn:emr-node:chain-tx", "value": _hex(batch.tx_hash)},
                    "display": f"anchoring transaction, block {batch.block_number}",
                },
            }
        ],
    }
