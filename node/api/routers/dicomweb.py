"""DICOMweb (PS3.18), a subset: STOW-RS to store instances, QIDO-RS to search studies,
series and instances, WADO-RS to retrieve an instance, optionally de-identified.

Thin: storing goes through the same ingest step as the DICOM Storage SCP (node/dicom),
searching reads the index's metadata (who may: as for ``GET /records``), retrieving goes
through the consent-checked, access-logged read flow exactly as ``GET
/records/{id}/content`` does. See docs/dicom.md.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from node.api.content import ContentReaderDep
from node.api.deps import (
    HospitalDep,
    IndexDep,
    KeysDep,
    PatientsDep,
    PrincipalDep,
    SettingsDep,
    UploadsDep,
    WalletDep,
)
from node.api.edge import batch_upload
from node.api.schemas.common import MAX_INT64
from node.auth.principal import Principal, Role, WalletPrincipal
from node.dicom.deidentify import deidentify as deidentify_instance
from node.dicom.dicomweb import (
    DATE_PATTERN,
    DICOM_JSON,
    TRUNCATED_WARNING,
    QidoQuery,
    instance_json,
    multipart_related,
    not_stored_reason,
    parse_multipart_related,
    part_outcome,
    search_grouped,
    search_instances,
    series_json,
    stow_json,
    study_json,
)
from node.dicom.ingest import DicomIngest, StoreOutcome, StoreStatus
from node.dicom.instance import CATEGORY, IDENTIFIER_SYSTEM, SOURCE
from node.exceptions import Conflict, Forbidden, NotFound
from storage.abc import RecordIndexAPI
from storage.exceptions import BackendUnavailable
from storage.models import RecordQuery, RecordRow

router = APIRouter(prefix="/dicomweb", tags=["dicomweb"])

UID_PATTERN = r"^[0-9.]{1,64}$"
_UID_DOC = "a DICOM UID (digits and dots, at most 64)"
StudyPath = Annotated[str, Path(pattern=UID_PATTERN, max_length=64, description=_UID_DOC)]
SeriesPath = Annotated[str, Path(pattern=UID_PATTERN, max_length=64, description=_UID_DOC)]
SopPath = Annotated[str, Path(pattern=UID_PATTERN, max_length=64, description=_UID_DOC)]


def _uid_query(alias: str) -> Any:
    return Query(alias=alias, pattern=UID_PATTERN, max_length=64, description=_UID_DOC)


PatientIdQuery = Annotated[
    str | None,
    Query(
        alias="PatientID",
        min_length=1,
        max_length=64,
        description="the hospital's patient id, matched exactly (no wildcards)",
    ),
]
StudyDateQuery = Annotated[
    str | None,
    Query(
        alias="StudyDate",
        pattern=DATE_PATTERN,
        max_length=17,
        description="YYYYMMDD (that day), or a range YYYYMMDD-YYYYMMDD, -YYYYMMDD, "
        "YYYYMMDD- (on the study's date and time, in UTC)",
    ),
]
AccessionQuery = Annotated[str | None, Query(alias="AccessionNumber", min_length=1, max_length=16)]
StudyUidQuery = Annotated[str | None, _uid_query("StudyInstanceUID")]
SeriesUidQuery = Annotated[str | None, _uid_query("SeriesInstanceUID")]
SopUidQuery = Annotated[str | None, _uid_query("SOPInstanceUID")]
_MODALITY = r"^[A-Z0-9_ ]{1,16}$"
ModalityQuery = Annotated[str | None, Query(alias="Modality", pattern=_MODALITY)]
ModalitiesQuery = Annotated[str | None, Query(alias="ModalitiesInStudy", pattern=_MODALITY)]
LimitQuery = Annotated[int, Query(ge=1, le=1000, description="results per page")]
OffsetQuery = Annotated[int, Query(ge=0, le=MAX_INT64, description="results to skip")]

_DICOM_JSON_ARRAY: dict[str, Any] = {
    DICOM_JSON: {"schema": {"type": "array", "items": {"type": "object"}}}
}
_SEARCH_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "the matches, in the DICOM JSON model (PS3.18 F); a `Warning: 299` "
        "header when the search stopped after reading its maximum of instances",
        "content": _DICOM_JSON_ARRAY,
    },
    204: {"description": "no match"},
    400: {"description": "a malformed matching key"},
    403: {"description": "not a hospital or auditor token, nor a wallet session"},
}


def _searcher(principal: Principal) -> str | None:
    """The patient a caller's search is limited to (None: every patient): a wallet sees
    only its own instances, hospital and auditor tokens all (as ``GET /records``)."""
    if isinstance(principal, WalletPrincipal):
        return principal.address
    if principal.has(Role.HOSPITAL, Role.AUDITOR):
        return None
    raise Forbidden("searching needs a hospital or auditor token, or a wallet session")


def _query(
    principal: Principal,
    *,
    limit: int,
    offset: int,
    study_date: str | None = None,
    **keys: str | None,
) -> QidoQuery:
    """A QIDO-RS query on ``keys`` (attribute names without ``dicom.``), limited to what
    ``principal`` may see."""
    return QidoQuery.of(
        patient=_searcher(principal), study_date=study_date, limit=limit, offset=offset, **keys
    )


def _grouped(
    index: RecordIndexAPI,
    query: QidoQuery,
    key: str,
    to_json: Callable[[list[RecordRow]], dict[str, Any]],
) -> Response:
    """The answer of a study or series search: the instances grouped by ``key``."""
    groups, truncated = search_grouped(index, query, key)
    return _answer([to_json(rows) for rows in groups], truncated)


def _base_url(settings: SettingsDep) -> str:
    return settings.api.resolved_public_url.rstrip("/")


def _answer(results: list[dict[str, Any]], truncated: bool = False) -> Response:
    if not results:
        return Response(status_code=204)
    headers = {"Warning": TRUNCATED_WARNING} if truncated else None
    return JSONResponse(results, media_type=DICOM_JSON, headers=headers)


# -- STOW-RS ----------------------------------------------------------------------------

_STOW_DESCRIPTION = """\
Store DICOM instances (PS3.18 10.5, STOW-RS), each as a record of the patient its
PatientID is linked to (the patient identifier directory; see docs/dicom.md), exactly as a
C-STORE to the node's Storage SCP would.

**Body**: `multipart/related; type="application/dicom"; boundary=...`, one DICOM Part 10
file per part. At most `api.batch_max_records` parts and `api.batch_max_bytes` in all; an
instance at most `dicom.max_instance_bytes`.

**Each instance on its own**: one may fail while the others are stored. A re-sent instance
(same SOP Instance UID) is not stored twice: it is answered as stored, with the first copy.

**Answer** (`application/dicom+json`, the Store Instances Response Module): stored
instances in ReferencedSOPSequence (0008,1199) with their RetrieveURL; the others in
FailedSOPSequence (0008,1198) with a FailureReason (0008,1197): 0xC000 not a complete
DICOM instance, 0xC001 PatientID linked to no patient, 0xC002 larger than the limit,
0xC003 SOP Instance UID stored for another patient, 0xA700 storage unavailable (retry).
200: all stored; 202: some stored; 409: none (the reasons in `detail`); 503: none, storage
unavailable.
"""


@router.post(
    "/studies",
    summary="STOW-RS: store DICOM instances (hospital API token)",
    description=_STOW_DESCRIPTION,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"multipart/related": {"schema": {"type": "string", "format": "binary"}}},
        }
    },
    responses={
        200: {"description": "every instance stored", "content": {DICOM_JSON: {}}},
        202: {"description": "some instances stored, others failed", "content": {DICOM_JSON: {}}},
        400: {"description": "not multipart/related of application/dicom, or badly framed"},
        403: {"description": "not a hospital token"},
        408: {},
        409: {"description": "no instance was stored: `detail` gives each part's reason"},
        413: {"description": "more than api.batch_max_bytes"},
        503: {"description": "storage unavailable: nothing stored, retry later"},
    },
)
@batch_upload
async def store_instances(
    request: Request,
    settings: SettingsDep,
    index: IndexDep,
    uploads: UploadsDep,
    patients: PatientsDep,
    _caller: HospitalDep,
) -> Response:
    body = await request.body()  # bounded by the body guard (batch_upload)
    parts = parse_multipart_related(
        request.headers.get("content-type"), body, max_parts=settings.api.batch_max_records
    )
    del body
    ingest = DicomIngest.of(settings.dicom, uploads=uploads, index=index, patients=patients)
    outcomes: list[StoreOutcome | None] = [part_outcome(p) for p in parts]
    dicom = [i for i, o in enumerate(outcomes) if o is None]
    stored_parts = await ingest.store_many([parts[i].content for i in dicom])
    for i, outcome in zip(dicom, stored_parts, strict=True):
        outcomes[i] = outcome
    done = [o for o in outcomes if o is not None]
    stored = sum(o.stored for o in done)
    if not stored:
        if any(o.status is StoreStatus.OUT_OF_RESOURCES for o in done):
            raise BackendUnavailable("storage unavailable: no instance was stored; retry")
        raise Conflict(not_stored_reason(done))
    return JSONResponse(
        stow_json(done, _base_url(settings)),
        status_code=200 if stored == len(done) else 202,
        media_type=DICOM_JSON,
    )


# -- QIDO-RS ----------------------------------------------------------------------------


@router.get(
    "/studies",
    summary="QIDO-RS: search studies (hospital or auditor token; a patient's wallet: its own)",
    responses=_SEARCH_RESPONSES,
)
def search_studies(
    index: IndexDep,
    principal: PrincipalDep,
    patient_id: PatientIdQuery = None,
    study_date: StudyDateQuery = None,
    accession: AccessionQuery = None,
    study_uid: StudyUidQuery = None,
    modality: ModalitiesQuery = None,
    limit: LimitQuery = 100,
    offset: OffsetQuery = 0,
) -> Response:
    query = _query(
        principal,
        limit=limit,
        offset=offset,
        study_date=study_date,
        patient_id=patient_id,
        accession=accession,
        study_uid=study_uid,
        modality=modality,
    )
    return _grouped(index, query, "dicom.study_uid", study_json)


@router.get(
    "/studies/{study}/series",
    summary="QIDO-RS: search a study's series (hospital or auditor token; a patient's "
    "wallet: its own)",
    responses=_SEARCH_RESPONSES,
)
def search_series(
    study: StudyPath,
    index: IndexDep,
    principal: PrincipalDep,
    patient_id: PatientIdQuery = None,
    study_date: StudyDateQuery = None,
    series_uid: SeriesUidQuery = None,
    modality: ModalityQuery = None,
    limit: LimitQuery = 100,
    offset: OffsetQuery = 0,
) -> Response:
    query = _query(
        principal,
        limit=limit,
        offset=offset,
        study_date=study_date,
        study_uid=study,
        patient_id=patient_id,
        series_uid=series_uid,
        modality=modality,
    )
    return _grouped(index, query, "dicom.series_uid", series_json)


@router.get(
    "/studies/{study}/series/{series}/instances",
    summary="QIDO-RS: search a series' instances (hospital or auditor token; a patient's "
    "wallet: its own)",
    responses=_SEARCH_RESPONSES,
)
def search_series_instances(
    study: StudyPath,
    series: SeriesPath,
    settings: SettingsDep,
    index: IndexDep,
    principal: PrincipalDep,
    patient_id: PatientIdQuery = None,
    sop_uid: SopUidQuery = None,
    limit: LimitQuery = 100,
    offset: OffsetQuery = 0,
) -> Response:
    query = _query(
        principal,
        limit=limit,
        offset=offset,
        study_uid=study,
        series_uid=series,
        patient_id=patient_id,
        sop_uid=sop_uid,
    )
    base = _base_url(settings)
    return _answer([instance_json(row, base) for row in search_instances(index, query)])


# -- WADO-RS ----------------------------------------------------------------------------

_EXPORT_KEY_LABEL = "dicom-deidentify v1"


def _find_instance(index: RecordIndexAPI, study: str, series: str, sop: str) -> RecordRow:
    rows = index.find_records(
        RecordQuery(
            identifier=f"{IDENTIFIER_SYSTEM}|{sop}", category=CATEGORY, source=SOURCE, limit=1
        )
    )
    attrs = rows[0].document.attributes if rows and rows[0].document is not None else {}
    if attrs.get("dicom.study_uid") != study or attrs.get("dicom.series_uid") != series:
        raise NotFound("no such instance in this study and series")
    return rows[0]


def _export_salt(request: Request, keys: KeysDep, requester: str) -> bytes:
    """The key of one requester's de-identified exports: the same new UIDs for the same
    instance every time they export it (a study stays one study), different ones for
    another requester. Derived once per process from the key store."""
    state = request.app.state
    key: bytes | None = getattr(state, "dicom_export_key", None)
    if key is None:
        key = keys.derive_secret(_EXPORT_KEY_LABEL)
        state.dicom_export_key = key
    return hmac.new(key, requester.encode(), hashlib.sha256).digest()


@router.get(
    "/studies/{study}/series/{series}/instances/{sop}",
    summary="WADO-RS: retrieve an instance (wallet session: the patient, or a grantee with "
    "on-chain consent)",
    description='The instance as stored, in `multipart/related; type="application/dicom"`. '
    "Read through the same flow as `GET /records/{record_id}/content`: consent or "
    "break-glass, and every read logged on-chain. `deidentify=true`: the instance "
    "de-identified on export (the PS3.15 Annex E subset in docs/dicom.md; new UIDs are "
    "stable for one reader).",
    responses={
        200: {
            "description": "the instance",
            "content": {"multipart/related": {}},
        },
        403: {"description": "not a wallet session, or no consent"},
        404: {"description": "no such instance in this study and series"},
        409: {"description": "de-identification refused: the instance has burned-in annotation"},
        410: {"description": "the record was erased: only its anchored hash remains"},
    },
)
async def retrieve_instance(
    request: Request,
    study: StudyPath,
    series: SeriesPath,
    sop: SopPath,
    wallet: WalletDep,
    index: IndexDep,
    keys: KeysDep,
    reader: ContentReaderDep,
    deidentify: Annotated[bool, Query(description="de-identify on export (docs/dicom.md)")] = False,
) -> Response:
    row = await run_in_threadpool(_find_instance, index, study, series, sop)
    result = await reader.read(row.record_id, wallet.address)
    content = result.content
    if deidentify:
        salt = await run_in_threadpool(_export_salt, request, keys, wallet.address)
        content = await run_in_threadpool(deidentify_instance, content, salt)
    body, media_type = multipart_related([content])
    return Response(
        content=body,
        media_type=media_type,
        headers={
            "X-Record-Id": "0x" + result.row.record_id.hex(),
            "X-Access-Basis": result.basis.name.lower(),
        },
    )
