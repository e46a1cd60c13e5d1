"""Patient-wide operations: erasure of every record of a patient (GDPR art. 17)."""

from __future__ import annotations

import time

from fastapi import APIRouter

from node.api.deps import BackgroundDep, DirectoryDep, HospitalDep, IndexDep, KeyAuditDep
from node.api.routers.records import erasure_out
from node.api.schemas.common import AddressParam, parse_address
from node.api.schemas.records import EraseIn, ErasureOut
from node.exceptions import NotFound
from node.flows.erase_record import erase_and_finish, patient_record_ids

router = APIRouter(prefix="/patients", tags=["records"])


@router.post(
    "/{address}/erase",
    response_model=ErasureOut,
    summary="Erase every record of a patient (hospital token); re-running erases only what is left",
)
def erase_patient(
    address: AddressParam,
    body: EraseIn,
    index: IndexDep,
    directory: DirectoryDep,
    key_audit: KeyAuditDep,
    background: BackgroundDep,
    caller: HospitalDep,
) -> ErasureOut:
    patient = parse_address("patient", address)
    ids = patient_record_ids(patient, index=index)
    if not ids:
        raise NotFound(f"no records of patient {patient}")
    result = erase_and_finish(
        ids,
        body.reason,
        index=index,
        reasons=directory,
        key_audit=key_audit,
        background=background,
        now=int(time.time()),
        requested_by=caller.name,
    )
    return erasure_out(result, index)
