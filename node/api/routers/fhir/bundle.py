"""``POST /fhir``: transaction and batch Bundles, the bulk import path."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any

from fastapi import APIRouter, Header, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from node.api.deps import IndexDep, PatientsDep, SettingsDep, UploadsDep
from node.api.edge import batch_upload
from node.api.routers.fhir._shared import JSON, NOT_ACCEPTABLE, json_body
from node.coalescer import Coalescer
from node.exceptions import Conflict, InvalidRequest, NodeError
from node.fhir.bundle import (
    BundleType,
    Entry,
    check_bundle,
    check_duplicates,
    plan,
    response_bundle,
)
from node.fhir.common import (
    NEGOTIATE,
    FhirCaller,
    FhirError,
    FhirJSONResponse,
    FhirRoute,
    base_url,
    error_status,
    parse_json,
    require_scope,
)
from node.fhir.documents import BINARY, RESOURCE
from node.flows.upload_record import UploadRequest, check_upload
from storage.abc import RecordIndexAPI
from storage.exceptions import StorageError
from storage.models import RecordQuery, RecordRow

router = APIRouter(route_class=FhirRoute, tags=["fhir"])

_BODY = json_body(
    "a FHIR R4 Bundle of type transaction or batch whose entries POST DocumentReference or "
    "Binary; see docs/fhir.md"
)

_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        **JSON,
        "description": "a transaction-response or batch-response Bundle: one entry per "
        "entry, in order, with status, location and etag (or an outcome)",
    },
    400: {"description": "the Bundle or (transaction) an entry is invalid; nothing stored"},
    406: NOT_ACCEPTABLE,
    409: {"description": "(transaction) an identifier is already stored; nothing stored"},
    412: {"description": "(transaction) an ifNoneExist matches more than one document"},
    413: {
        "description": "more than fhir.bundle_max_entries entries, or a body past "
        "api.batch_max_bytes"
    },
    415: {"description": "Content-Type is not application/fhir+json"},
}

Uploads = Coalescer[UploadRequest, RecordRow]


def _fail(entry: Entry, err: FhirError) -> None:
    entry.error = err


def _resolve_existing(entries: Sequence[Entry], index: RecordIndexAPI, *, batch: bool) -> None:
    """``ifNoneExist`` matches (200, nothing stored); in a batch also each entry whose
    identifier is already stored (409) and each version whose predecessor is unknown,
    so that one entry cannot fail the others' commit."""
    for entry in entries:
        if not entry.ok or entry.request is None:
            continue
        where = (f"Bundle.entry[{entry.position}]",)
        wanted = entry.if_none_exist or (entry.identifier if batch else None)
        if wanted is not None:
            found = index.find_records(RecordQuery(identifier=wanted, limit=2))
            if len(found) > 1:
                _fail(
                    entry,
                    FhirError(
                        412,
                        "multiple-matches",
                        "ifNoneExist matches more than one",
                        expression=where,
                    ),
                )
                continue
            if found and entry.if_none_exist is not None:
                entry.row, entry.existing, entry.request = found[0], True, None
                continue
            if found:
                _fail(
                    entry,
                    FhirError(
                        409,
                        "duplicate",
                        f"entry[{entry.position}]: identifier already stored",
                        expression=where,
                    ),
                )
                continue
        if entry.request.previous_id is not None:
            try:
                check_upload(entry.request, index)
            except InvalidRequest as err:
                _fail(
                    entry,
                    FhirError(400, "invalid", f"entry[{entry.position}]: {err}", expression=where),
                )


def _commit(entries: Sequence[Entry], uploads: Uploads) -> None:
    todo = [e for e in entries if e.ok and e.request is not None]
    if not todo:
        return
    rows = uploads.commit_now([e.request for e in todo if e.request is not None])
    for entry, row in zip(todo, rows, strict=True):
        entry.row = row


def _store_transaction(entries: Sequence[Entry], index: RecordIndexAPI, uploads: Uploads) -> None:
    _resolve_existing(entries, index, batch=False)
    _raise_first(entries)
    try:
        _commit(entries, uploads)
    except Conflict as err:  # an identifier stored meanwhile or before: name the entry
        for entry in entries:
            stored = entry.identifier and entry.request is not None
            if stored and index.find_records(RecordQuery(identifier=entry.identifier, limit=1)):
                raise FhirError(
                    409,
                    "duplicate",
                    f"entry[{entry.position}]: identifier already stored; nothing was stored",
                    expression=(f"Bundle.entry[{entry.position}].resource.identifier",),
                ) from None
        raise FhirError(409, "conflict", f"{err}; nothing was stored") from None


def _store_batch(entries: Sequence[Entry], index: RecordIndexAPI, uploads: Uploads) -> None:
    _resolve_existing(entries, index, batch=True)
    try:
        _commit(entries, uploads)
        return
    except (NodeError, StorageError):
        pass  # one entry failed the shared commit: give each its own
    for entry in entries:
        if not entry.ok or entry.request is None or entry.row is not None:
            continue
        try:
            entry.row = uploads.commit_now([entry.request])[0]
        except (NodeError, StorageError) as err:
            status, code = error_status(err) or (500, "exception")
            _fail(entry, FhirError(status, code, f"entry[{entry.position}]: {err}"))


def _raise_first(entries: Sequence[Entry]) -> None:
    failed = [e.error for e in entries if e.error is not None]
    if failed:
        issues = [i for err in failed for i in err.issues][:50]
        raise FhirError(failed[0].status, issues[0].code, issues[0].diagnostics, issues=issues)


@router.post(
    "",
    summary="A transaction (all or nothing) or batch Bundle of DocumentReference/Binary creates "
    "(hospital token)",
    dependencies=[NEGOTIATE],
    response_class=FhirJSONResponse,
    openapi_extra=_BODY,
    responses=_RESPONSES,
)
@router.post(
    "/",
    summary="POST /fhir with the base URL's trailing slash, as FHIR clients send it "
    "(hospital token)",
    dependencies=[NEGOTIATE],
    response_class=FhirJSONResponse,
    openapi_extra=_BODY,
    responses=_RESPONSES,
)
@batch_upload  # up to api.batch_max_bytes, like POST /records/batch
async def bundle(
    request: Request,
    settings: SettingsDep,
    index: IndexDep,
    uploads: UploadsDep,
    patients: PatientsDep,
    caller: Annotated[FhirCaller, require_scope("Bundle", "write")],
    prefer: Annotated[
        str | None, Header(description="return=minimal (default) | return=representation")
    ] = None,
) -> Response:
    data = parse_json(await request.body(), "Bundle")
    kind: BundleType
    kind, raw = check_bundle(data, settings.fhir.bundle_max_entries)
    may_write = frozenset(t for t in (RESOURCE, BINARY) if caller.allows(t, "write"))
    entries = await run_in_threadpool(
        _planned, raw, patients.resolve, settings.api.max_upload_bytes, may_write
    )
    if kind == "transaction":
        _raise_first(entries)
        await run_in_threadpool(_store_transaction, entries, index, uploads)
    else:
        await run_in_threadpool(_store_batch, entries, index, uploads)
    representation = "return=representation" in (prefer or "")
    answer = response_bundle(kind, entries, representation=representation, base=base_url(request))
    return FhirJSONResponse(answer)


def _planned(raw: Any, resolve: Any, max_bytes: int, may_write: frozenset[str]) -> list[Entry]:
    entries = plan(raw, resolve=resolve, max_bytes=max_bytes, may_write=may_write)
    check_duplicates(entries)
    return entries
