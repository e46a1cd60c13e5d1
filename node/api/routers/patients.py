"""Patient-wide operations: erasure of every record of a patient (GDPR art. 17)."""

from __future__ import annotations

from fastapi import APIRouter

from node.api.deps import HospitalDep, NodeDep
from node.api.routers.records import erase_and_finish
from node.api.schemas.common import AddressParam, parse_address
from node.api.schemas.records import EraseIn, ErasureOut
from node.exceptions import NotFound
from node.flows.erase_record import patient_record_ids

router = APIRouter(prefix="/patients", tags=["records"])


@router.post(
    "/{address}/erase",
    response_model=ErasureOut,
    summary="Erase every record of a patient (hospital token); re-running erases only what is left",
)
def erase_patient(
    address: AddressParam, body: EraseIn, node: NodeDep, caller: HospitalDep
) -> ErasureOut:
    patient = parse_address("patient", address)
    ids = patient_record_ids(patient, index=node.index)
    if not ids:
        raise NotFound(f"no records of patient {patient}")
    return erase_and_finish(node, ids, body.reason, caller)
