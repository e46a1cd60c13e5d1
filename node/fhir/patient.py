"""Patient (minimal): a wallet address and the identifiers the hospital linked to it.

``id`` is the wallet address; ``identifier`` lists it under ``WALLET_SYSTEM`` first, then
the identifiers of the patient directory (``node.patients``: MRNs from HL7 ADT, ...).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from node.fhir.common import WALLET_SYSTEM, Capability, SearchParam, register

PATIENT = "Patient"

register(
    Capability(
        type=PATIENT,
        interactions=("read", "search-type"),
        documentation=(
            f"id is the wallet address; identifier {WALLET_SYSTEM}|<address> plus the "
            "identifiers the hospital linked (HL7 ADT)."
        ),
        search_params=(
            SearchParam("identifier", "token", f"system|value, e.g. {WALLET_SYSTEM}|0x..."),
            SearchParam("_id", "token", "the wallet address"),
        ),
    )
)


def to_patient(address: str, identifiers: Sequence[tuple[str, str]]) -> dict[str, Any]:
    seen = {(WALLET_SYSTEM, address)}
    listed = [{"use": "official", "system": WALLET_SYSTEM, "value": address}]
    for system, value in identifiers:
        if (system, value) not in seen:
            seen.add((system, value))
            listed.append({"use": "usual", "system": system, "value": value})
    return {"resourceType": PATIENT, "id": address, "active": True, "identifier": listed}
