"""Transaction and batch Bundles (``POST /fhir``): many documents in one request.

Every entry is a create (``request.method`` POST) of a DocumentReference (with
``attachment.data``) or a Binary. Each resource is validated once, with its own model; the
Bundle itself is validated without its resources (the same check, not repeated).

References between entries: a DocumentReference whose ``content[0].attachment.url`` is the
``fullUrl`` (``urn:uuid:...``) of a Binary entry of the same Bundle takes that Binary's
``data`` and ``contentType``: the two entries become ONE record, and both answer with its
id. Any other ``urn:uuid`` reference is refused (400 naming the entry).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from fhir.resources.R4B.bundle import Bundle
from pydantic import ValidationError

from node.fhir.common import FhirError, Issue, fhir_path, operation_outcome, register_system
from node.fhir.documents import (
    BINARY,
    RESOURCE,
    PatientResolver,
    binary_resource,
    binary_upload,
    fhir_id,
    instant,
    parse,
    parse_binary,
    parse_if_none_exist,
    to_resource,
    to_upload,
)
from node.flows.upload_record import UploadRequest
from storage.models import RecordRow

register_system(
    "transaction",
    "POST /fhir: creates of DocumentReference and Binary, all or nothing, one commit",
)
register_system("batch", "POST /fhir: creates of DocumentReference and Binary, each on its own")

BundleType = Literal["transaction", "batch"]

_REASONS = {
    200: "OK",
    201: "Created",
    400: "Bad Request",
    403: "Forbidden",
    404: "Not Found",
    409: "Conflict",
    412: "Precondition Failed",
    413: "Payload Too Large",
    422: "Unprocessable Entity",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


def status_line(status: int) -> str:
    return f"{status} {_REASONS.get(status, '')}".rstrip()


@dataclass
class Entry:
    """One entry's plan: what to store, or why not."""

    position: int
    kind: str  # DocumentReference | Binary
    full_url: str | None = None
    request: UploadRequest | None = None
    identifier: str | None = None
    if_none_exist: str | None = None
    error: FhirError | None = None
    merged_into: int | None = None  # a Binary whose content a DocumentReference took
    row: RecordRow | None = None  # set once stored, or the existing one (If-None-Exist)
    existing: bool = False

    @property
    def ok(self) -> bool:
        return self.error is None


def _where(position: int, rest: str = "") -> str:
    return f"Bundle.entry[{position}]{rest}"


def _in_entry(position: int, expression: str) -> str:
    """An expression of a resource (``DocumentReference.status``) or of the entry
    (``request.method``) as a path in the Bundle."""
    head, dot, rest = expression.partition(".")
    if head[:1].isupper():  # a resource type
        return _where(position, ".resource" + dot + rest)
    return _where(position, "." + expression)


def _entry_error(position: int, err: FhirError) -> FhirError:
    """``err`` with its diagnostics and expressions placed at ``Bundle.entry[i]``."""
    issues = [
        Issue(
            i.code,
            f"entry[{position}]: {i.diagnostics}",
            i.severity,
            tuple(_in_entry(position, e) for e in i.expression) or (_where(position),),
        )
        for i in err.issues
    ]
    return FhirError(err.status, issues[0].code, issues[0].diagnostics, issues=issues)


def check_bundle(data: dict[str, Any], max_entries: int) -> tuple[BundleType, list[dict[str, Any]]]:
    """The Bundle's type and entries, its structure validated without the resources."""
    raw = data.get("entry") or []
    if not isinstance(raw, list):
        raise FhirError(
            400, "structure", "Bundle.entry must be an array", expression=("Bundle.entry",)
        )
    if len(raw) > max_entries:
        raise FhirError(
            413,
            "too-costly",
            f"a Bundle carries at most {max_entries} entries (fhir.bundle_max_entries)",
        )
    for i, e in enumerate(raw):
        if not isinstance(e, dict):
            raise FhirError(
                400, "structure", "an entry must be a JSON object", expression=(_where(i),)
            )
    shell = {**data, "entry": [{k: v for k, v in e.items() if k != "resource"} for e in raw]}
    try:
        model = Bundle.model_validate(shell)
    except ValidationError as err:
        issues = [
            Issue(
                "invalid",
                str(e.get("msg", "invalid")),
                "error",
                (fhir_path("Bundle", e.get("loc", ())),),
            )
            for e in err.errors(include_input=False, include_url=False)[:20]
        ]
        raise FhirError(400, "invalid", issues[0].diagnostics, issues=issues) from None
    kind = model.type
    if kind not in ("transaction", "batch"):
        raise FhirError(
            400,
            "not-supported",
            "POST /fhir takes a Bundle of type transaction or batch",
            expression=("Bundle.type",),
        )
    if not raw:
        raise FhirError(400, "required", "the Bundle has no entries", expression=("Bundle.entry",))
    # The validated request and fullUrl (fhir_core also takes a JSON text for an object),
    # beside the raw resource that each entry's own model validates.
    entries = []
    for e, checked in zip(raw, model.entry or [], strict=True):
        request = checked.request
        entries.append(
            {
                "fullUrl": checked.fullUrl,
                "request": request.model_dump(exclude_none=True) if request else {},
                "resource": e.get("resource"),
            }
        )
    return ("transaction" if kind == "transaction" else "batch"), entries


def plan(
    raw: Sequence[dict[str, Any]],
    *,
    resolve: PatientResolver | None,
    max_bytes: int,
    may_write: frozenset[str],
) -> list[Entry]:
    """Each entry validated and mapped to an upload, or its error."""
    binaries: dict[str, int] = {}
    for i, e in enumerate(raw):
        res = e.get("resource")
        url = e.get("fullUrl")
        if isinstance(res, dict) and res.get("resourceType") == BINARY and isinstance(url, str):
            binaries[url] = i
    entries: list[Entry] = []
    merged: dict[int, int] = {}  # Binary position -> DocumentReference position
    for i, e in enumerate(raw):
        res = e.get("resource")
        kind = res.get("resourceType") if isinstance(res, dict) else None
        entry = Entry(i, str(kind), e.get("fullUrl"))
        entries.append(entry)
        try:
            req = e.get("request") or {}
            if req.get("method") != "POST":
                raise FhirError(
                    400,
                    "not-supported",
                    "only POST (create) entries are supported",
                    expression=("request.method",),
                )
            if not isinstance(res, dict):
                raise FhirError(
                    400, "required", "a create needs a resource", expression=("resource",)
                )
            target = str(req.get("url", "")).split("?")[0]
            if kind not in (RESOURCE, BINARY) or target != kind:
                raise FhirError(
                    400,
                    "not-supported",
                    "entries create DocumentReference or Binary "
                    f"(request.url {target!r}, resource {kind!r})",
                    expression=("request.url",),
                )
            if kind not in may_write:
                raise FhirError(
                    403, "forbidden", f"this credential carries no SMART scope to write {kind}"
                )
            if req.get("ifNoneExist"):
                if kind != RESOURCE:
                    raise FhirError(
                        400,
                        "not-supported",
                        "ifNoneExist only on DocumentReference",
                        expression=("request.ifNoneExist",),
                    )
                entry.if_none_exist = parse_if_none_exist(str(req["ifNoneExist"]))
            if kind == RESOURCE:
                res = _take_binary(res, raw, binaries, i, merged)
                upload = to_upload(parse(res), resolve=resolve, max_bytes=max_bytes)
                entry.request, entry.identifier = upload.request, upload.identifier
            else:
                entry.request = binary_upload(
                    parse_binary(res), category_header=None, resolve=resolve, max_bytes=max_bytes
                )
        except FhirError as err:
            entry.error = _entry_error(i, err)
    for binary_at, document_at in merged.items():
        binary = entries[binary_at]
        binary.merged_into = document_at
        binary.request = None
        binary.error = None
        if not entries[document_at].ok:
            binary.error = FhirError(
                400,
                "invalid",
                f"entry[{binary_at}]: its DocumentReference entry[{document_at}] failed",
                expression=(_where(binary_at),),
            )
    return entries


def _take_binary(
    res: dict[str, Any],
    raw: Sequence[dict[str, Any]],
    binaries: dict[str, int],
    at: int,
    merged: dict[int, int],
) -> dict[str, Any]:
    """A DocumentReference whose attachment.url names a Binary entry, with its content."""
    _refuse_uuid_references(res)
    content = res.get("content")
    if not isinstance(content, list) or len(content) != 1 or not isinstance(content[0], dict):
        return res
    att = content[0].get("attachment")
    if not isinstance(att, dict):
        return res
    url = att.get("url")
    if not isinstance(url, str) or not url.startswith("urn:uuid:") or "data" in att:
        return res
    binary_at = binaries.get(url)
    if binary_at is None:
        raise FhirError(
            400,
            "not-found",
            f"attachment.url {url[:60]} is no Binary entry of this Bundle",
            expression=("DocumentReference.content[0].attachment.url",),
        )
    if binary_at in merged:
        raise FhirError(
            400,
            "not-supported",
            "two DocumentReferences take the same Binary entry",
            expression=("DocumentReference.content[0].attachment.url",),
        )
    merged[binary_at] = at
    binary = raw[binary_at]["resource"]
    att = {k: v for k, v in att.items() if k != "url"}
    att["data"] = binary.get("data")
    att.setdefault("contentType", binary.get("contentType"))
    return {**res, "content": [{**content[0], "attachment": att}]}


def _refuse_uuid_references(res: dict[str, Any]) -> None:
    subject = res.get("subject")
    if isinstance(subject, dict) and str(subject.get("reference", "")).startswith("urn:uuid:"):
        raise FhirError(
            400,
            "not-supported",
            "subject: a Patient/<wallet address>, not a Bundle entry",
            expression=("DocumentReference.subject.reference",),
        )
    relations = res.get("relatesTo")
    for i, rel in enumerate(relations if isinstance(relations, list) else []):
        target = rel.get("target") if isinstance(rel, dict) else None
        if isinstance(target, dict) and str(target.get("reference", "")).startswith("urn:uuid:"):
            raise FhirError(
                400,
                "not-supported",
                "relatesTo: a new version replaces a stored document "
                "(DocumentReference/<id>), not an entry of the same Bundle",
                expression=(f"DocumentReference.relatesTo[{i}].target.reference",),
            )


def check_duplicates(entries: Sequence[Entry]) -> None:
    """Two creates with one identifier in one Bundle: the later one is refused (409)."""
    seen: dict[str, int] = {}
    for entry in entries:
        if not entry.ok or entry.identifier is None:
            continue
        if entry.identifier in seen:
            entry.error = FhirError(
                409,
                "duplicate",
                f"entry[{entry.position}]: entry[{seen[entry.identifier]}] "
                "carries the same identifier",
                expression=(_where(entry.position, ".resource.identifier"),),
            )
        else:
            seen[entry.identifier] = entry.position


def response_entry(
    entry: Entry, entries: Sequence[Entry], *, representation: bool, base: str = ""
) -> dict[str, Any]:
    if entry.error is not None:
        return {
            "response": {
                "status": status_line(entry.error.status),
                "outcome": operation_outcome(entry.error.issues),
            }
        }
    row = entry.row if entry.merged_into is None else entries[entry.merged_into].row
    assert row is not None
    rid = fhir_id(row.record_id)
    out: dict[str, Any] = {
        "fullUrl": f"{base}/{entry.kind}/{rid}" if base else f"{entry.kind}/{rid}",
        "response": {
            "status": status_line(200 if entry.existing else 201),
            "location": f"{entry.kind}/{rid}/_history/{rid}"
            if entry.kind == RESOURCE
            else f"{entry.kind}/{rid}",
            "etag": f'W/"{rid}"',
            "lastModified": instant(row.created_at),
        },
    }
    if representation:
        out["resource"] = (
            to_resource(row, superseded=False) if entry.kind == RESOURCE else binary_resource(row)
        )
    return out


def response_bundle(
    kind: BundleType, entries: Sequence[Entry], *, representation: bool, base: str = ""
) -> dict[str, Any]:
    """The transaction-response/batch-response; ``base``: the FHIR base URL (absolute
    ``fullUrl``s)."""
    return {
        "resourceType": "Bundle",
        "type": f"{kind}-response",
        "entry": [
            response_entry(e, entries, representation=representation, base=base) for e in entries
        ],
    }
