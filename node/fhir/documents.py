"""DocumentReference ↔ the node's record (``RecordRow`` + ``DocumentMeta``).

Each version of a document is its own record: ``id`` and ``meta.versionId`` are the
record id (64 hex digits, no 0x: a FHIR id has at most 64 characters), a new version names
its predecessor in ``relatesTo`` (code ``replaces``) and the predecessor's status becomes
``superseded``. The mapping (docs/fhir.md, "DocumentReference"):

================================  ===============================================
DocumentReference                 record
================================  ===============================================
id, meta.versionId                record_id (hex)
meta.lastUpdated                  created_at
status                            current / superseded (another record replaces it)
identifier (one)                  document.identifier ``system|value``
type.coding[0]                    document.type_system / type_code / type_display
category.coding (CATEGORY_SYSTEM) category
subject                           Patient/<wallet address>
date                              document.clinical_time (else created_at)
description                       document.title
custodian.identifier              creator (the hospital's address)
relatesTo replaces                previous_id
content[0].attachment             content_type, size, url Binary/<id>,
                                  hash (SHA-1, computed at FHIR upload),
                                  extension content-sha256 (hex, the anchored hash)
extension anchoring               Provenance/<id>, /records/<0xid>/receipt
================================  ===============================================
"""

from __future__ import annotations

import base64
import functools
import hashlib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from urllib.parse import unquote

from eth_utils import to_checksum_address
from fhir.resources.R4B.binary import Binary
from fhir.resources.R4B.documentreference import DocumentReference
from pydantic import ValidationError

from node.fhir.common import (
    CATEGORY_SYSTEM,
    WALLET_SYSTEM,
    Capability,
    FhirError,
    SearchParam,
    extension_url,
    invalid_resource,
    register,
    split_token,
)
from node.flows.upload_record import UploadRequest
from storage.models import DocumentMeta, RecordQuery, RecordRow

RESOURCE = "DocumentReference"
SOURCE = "fhir"
# The record's id as an identifier (0x-hex, the node's own API spells it so).
RECORD_SYSTEM = "urn:emr-node:record"
# The hospital that created a record (custodian, Provenance agent): its chain address.
HOSPITAL_SYSTEM = "urn:emr-node:hospital"
CONTENT_SHA256 = extension_url("content-sha256")
ANCHORING = extension_url("anchoring")
SHA1_ATTRIBUTE = "fhir.sha1"  # base64 SHA-1 of the content, kept for Attachment.hash

_CATEGORY = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")
_MEDIA_TYPE = re.compile(r"^[A-Za-z0-9_.+-]+/[A-Za-z0-9_.+-]+(?:[ \t]*;[ -~]*)?$")
_ADDRESS = re.compile(r"^0x[0-9a-fA-F]{40}$")
_ID = re.compile(r"^(?:0x)?([0-9a-fA-F]{64})$")
_MAX_TEXT = 1024  # title, type display, identifier


register(
    Capability(
        type=RESOURCE,
        interactions=("read", "vread", "search-type", "create", "history-instance"),
        versioning="versioned",
        conditional_create=True,
        documentation=(
            "One record per version. Create with attachment.data (base64); the content is "
            "read through Binary/<id> (consent-checked, access-logged)."
        ),
        search_params=(
            SearchParam("patient", "reference", "Patient/<wallet address>"),
            SearchParam("subject", "reference", "same as patient"),
            SearchParam("category", "token", f"{CATEGORY_SYSTEM}|<category>"),
            SearchParam("type", "token", "system|code of DocumentReference.type"),
            SearchParam("date", "date", "prefixes eq, ge, gt, le, lt; repeatable"),
            SearchParam("status", "token", "current | superseded"),
            SearchParam("identifier", "token", "system|value (exact)"),
            SearchParam("_sort", "string", "date | -date (default -date)"),
        ),
    )
)


def record_id(value: str) -> bytes:
    """A DocumentReference/Binary/Provenance id (64 hex digits, 0x optional) as bytes."""
    m = _ID.fullmatch(value)
    if m is None:
        raise FhirError(
            404, "not-found", f"no resource with id {value[:80]!r} (ids are 64 hex digits)"
        )
    return bytes.fromhex(m.group(1))


def fhir_id(rid: bytes) -> str:
    return rid.hex()


def instant(seconds: int) -> str:
    """Unix seconds as a FHIR instant (UTC)."""
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def http_date(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%a, %d %b %Y %H:%M:%S GMT")


def patient_reference(address: str) -> dict[str, Any]:
    return {
        "reference": f"Patient/{address}",
        "identifier": {"system": WALLET_SYSTEM, "value": address},
    }


def to_resource(
    row: RecordRow, *, superseded: bool, anchored: bool | None = None
) -> dict[str, Any]:
    """The DocumentReference of a record (JSON, R4)."""
    rid = fhir_id(row.record_id)
    doc = row.document or DocumentMeta()
    attachment: dict[str, Any] = {
        "extension": [{"url": CONTENT_SHA256, "valueString": row.content_hash.hex()}],
        "contentType": row.content_type,
        "url": f"Binary/{rid}",
        "size": row.size,
    }
    sha1 = doc.attributes.get(SHA1_ATTRIBUTE)
    if sha1:
        attachment["hash"] = sha1
    if doc.title:
        attachment["title"] = doc.title
    anchoring: list[dict[str, Any]] = [
        {"url": "provenance", "valueReference": {"reference": f"Provenance/{rid}"}},
        {"url": "receipt", "valueUrl": f"/records/0x{rid}/receipt"},
    ]
    if anchored is not None:
        anchoring.append({"url": "status", "valueCode": "anchored" if anchored else "pending"})
    resource: dict[str, Any] = {
        "resourceType": RESOURCE,
        "id": rid,
        "meta": {"versionId": rid, "lastUpdated": instant(row.created_at)},
        "extension": [{"url": ANCHORING, "extension": anchoring}],
        "identifier": [{"system": RECORD_SYSTEM, "value": f"0x{rid}"}],
        "status": "superseded" if superseded else "current",
    }
    if doc.identifier:
        system, _, value = doc.identifier.partition("|")
        resource["identifier"].insert(
            0, {"system": system, "value": value} if system else {"value": value}
        )
    if doc.type_code:
        coding: dict[str, str] = {"code": doc.type_code}
        if doc.type_system:
            coding = {"system": doc.type_system, **coding}
        if doc.type_display:
            coding["display"] = doc.type_display
        resource["type"] = {"coding": [coding]}
    resource["category"] = [{"coding": [{"system": CATEGORY_SYSTEM, "code": row.category}]}]
    resource["subject"] = patient_reference(row.patient)
    resource["date"] = instant(
        doc.clinical_time if doc.clinical_time is not None else row.created_at
    )
    resource["custodian"] = {"identifier": {"system": HOSPITAL_SYSTEM, "value": row.creator}}
    if doc.title:
        resource["description"] = doc.title
    if row.previous_id is not None:
        resource["relatesTo"] = [
            {"code": "replaces", "target": {"reference": f"{RESOURCE}/{fhir_id(row.previous_id)}"}}
        ]
    resource["content"] = [{"attachment": attachment}]
    return resource


# -- create ------------------------------------------------------------------------------------

PatientResolver = Callable[[str, str], str | None]  # (system, value) -> wallet address


def parse(data: dict[str, Any]) -> DocumentReference:
    """Validate a DocumentReference with fhir.resources (400 with its messages)."""
    try:
        return DocumentReference.model_validate(data)
    except ValidationError as err:
        raise invalid_resource(err, RESOURCE) from None


def _bad(diagnostics: str, expression: str, code: str = "invalid") -> FhirError:
    return FhirError(400, code, diagnostics, expression=(f"{RESOURCE}.{expression}",))


def subject_address(
    reference: str | None,
    identifier: tuple[str | None, str | None] | None,
    resolve: PatientResolver | None,
) -> str:
    """The wallet address a subject names: ``Patient/<address>``, or an identifier
    (the wallet system, or one the patient directory resolves)."""
    if reference:
        kind, _, value = reference.rpartition("/")
        if kind.split("/")[-1] != "Patient" or not _ADDRESS.fullmatch(value):
            raise _bad("subject.reference must be Patient/<wallet address>", "subject.reference")
        return _checksum(value)
    if identifier is not None and identifier[1]:
        system, value = identifier
        if system == WALLET_SYSTEM and _ADDRESS.fullmatch(value):
            return _checksum(value)
        if system and resolve is not None:
            found = resolve(system, value)
            if found is not None:
                return found
        raise _bad(
            "subject.identifier names no known patient (link it with an ADT or Patient first)",
            "subject.identifier",
        )
    raise _bad("subject is required: Patient/<wallet address>", "subject", "required")


@functools.lru_cache(maxsize=4096)  # keccak per call; a Bundle names few patients, often
def _checksum(address: str) -> str:
    return str(to_checksum_address(address))


def category_of(codings: Sequence[tuple[str | None, str | None]], where: str) -> str:
    codes = [code for system, code in codings if system == CATEGORY_SYSTEM and code]
    if len(codes) != 1:
        raise _bad(
            f"{where}: exactly one coding with system {CATEGORY_SYSTEM} names the node's category",
            where,
            "required",
        )
    if not _CATEGORY.fullmatch(codes[0]):
        raise _bad(f"{where}: 1-64 of a-z 0-9 _ . - starting with a letter or digit", where)
    return codes[0]


@dataclass(frozen=True)
class Upload:
    """A validated create: the node's upload request and the identifier, for
    ``If-None-Exist`` and duplicate checks within a Bundle."""

    request: UploadRequest
    identifier: str | None


def to_upload(
    model: DocumentReference,
    *,
    resolve: PatientResolver | None = None,
    max_bytes: int,
) -> Upload:
    """The upload a DocumentReference create asks for (400 naming the element otherwise)."""
    if model.status != "current":
        raise _bad("status: a new document is 'current'", "status", "value")
    if model.docStatus not in (None, "final", "amended", "preliminary"):
        raise _bad("docStatus: final, amended or preliminary", "docStatus", "value")
    subject = model.subject
    patient = subject_address(
        subject.reference if subject else None,
        (subject.identifier.system, subject.identifier.value)
        if subject and subject.identifier
        else None,
        resolve,
    )
    codings = [(c.system, c.code) for cc in model.category or [] for c in cc.coding or []]
    category = category_of(codings, "category")
    type_system = type_code = type_display = None
    if model.type is not None and model.type.coding:
        first = model.type.coding[0]
        if not first.code:
            raise _bad("type.coding[0].code is required", "type.coding[0].code", "required")
        type_system, type_code, type_display = first.system, first.code, first.display
    identifier = None
    if model.identifier:
        if len(model.identifier) > 1:
            raise _bad(
                "at most one identifier (system|value) per document", "identifier", "not-supported"
            )
        ident = model.identifier[0]
        if not ident.value or not ident.system:
            raise _bad("identifier needs a system and a value", "identifier[0]", "required")
        identifier = f"{ident.system}|{ident.value}"
    previous_id = None
    for i, rel in enumerate(model.relatesTo or []):
        if rel.code != "replaces":
            raise _bad(
                "relatesTo: only 'replaces' (a new version) is supported",
                f"relatesTo[{i}].code",
                "not-supported",
            )
        ref = rel.target.reference if rel.target else None
        kind, _, value = (ref or "").rpartition("/")
        if previous_id is not None or kind != RESOURCE or not _ID.fullmatch(value):
            raise _bad(
                "relatesTo.target: one DocumentReference/<id> this version replaces",
                f"relatesTo[{i}].target",
            )
        previous_id = record_id(value)
    if len(model.content) != 1:
        raise _bad("content: exactly one attachment per document", "content", "not-supported")
    att = model.content[0].attachment
    if att.data is None:
        raise _bad(
            "content[0].attachment.data (base64) is required: attachment.url is not fetched",
            "content[0].attachment.data",
            "required",
        )
    content = bytes(att.data)
    if not content:
        raise _bad("content[0].attachment.data is empty", "content[0].attachment.data")
    if len(content) > max_bytes:
        raise FhirError(413, "too-long", f"the document exceeds the limit of {max_bytes} bytes")
    media_type = att.contentType or ""
    if not _MEDIA_TYPE.fullmatch(media_type) or len(media_type) > 255:
        raise _bad(
            "content[0].attachment.contentType: a media type like text/plain",
            "content[0].attachment.contentType",
            "required",
        )
    if att.size is not None and att.size != len(content):
        raise _bad(
            "content[0].attachment.size does not match the data",
            "content[0].attachment.size",
            "value",
        )
    sha1 = base64.b64encode(hashlib.sha1(content).digest()).decode()
    if att.hash is not None and base64.b64encode(bytes(att.hash)).decode() != sha1:
        raise _bad(
            "content[0].attachment.hash is not the SHA-1 of the data",
            "content[0].attachment.hash",
            "value",
        )
    title = model.description or att.title
    for name, text in (
        ("description", title),
        ("type.coding[0].display", type_display),
        ("identifier", identifier),
    ):
        if text is not None and len(text) > _MAX_TEXT:
            raise _bad(f"{name}: at most {_MAX_TEXT} characters", name, "too-long")
    clinical_time = int(model.date.timestamp()) if model.date is not None else None
    meta = DocumentMeta(
        source=SOURCE,
        type_system=type_system,
        type_code=type_code,
        type_display=type_display,
        title=title,
        clinical_time=clinical_time,
        identifier=identifier,
        attributes={SHA1_ATTRIBUTE: sha1},
    )
    return Upload(
        UploadRequest(patient, category, media_type, content, previous_id, meta), identifier
    )


# -- search ------------------------------------------------------------------------------------

SEARCH_PARAMS = frozenset(
    {
        "patient",
        "subject",
        "category",
        "type",
        "date",
        "status",
        "identifier",
        "_count",
        "_sort",
        "_getpagesoffset",
        "_format",
    }
)
_DATE = re.compile(
    r"^(eq|ne|gt|lt|ge|le|sa|eb|ap)?(\d{4})(?:-(\d{2})(?:-(\d{2})(?:T(\d{2}):(\d{2})(?::(\d{2})(?:\.\d+)?)?(Z|[+-]\d{2}:\d{2})?)?)?)?$"
)


def date_range(value: str) -> tuple[int | None, int | None]:
    """A ``date`` search value as [since, until) unix seconds (either may be open)."""
    m = _DATE.fullmatch(value)
    if m is None:
        raise FhirError(
            400,
            "invalid",
            f"date={value[:40]}: a FHIR date like ge2024-01-31",
            expression=("date",),
        )
    prefix = m.group(1) or "eq"
    if prefix not in ("eq", "gt", "lt", "ge", "le"):
        raise FhirError(
            400,
            "not-supported",
            f"date prefix {prefix}: eq, ge, gt, le, lt only",
            expression=("date",),
        )
    year, month, day, hour, minute, second, tz = m.groups()[1:]
    try:
        if hour is not None:
            offset = timedelta(0)
            if tz and tz != "Z":
                sign = 1 if tz[0] == "+" else -1
                offset = sign * timedelta(hours=int(tz[1:3]), minutes=int(tz[4:6]))
            start = (
                datetime(
                    int(year),
                    int(month),
                    int(day),
                    int(hour),
                    int(minute),
                    int(second or 0),
                    tzinfo=UTC,
                )
                - offset
            )
            end = start + timedelta(seconds=1 if second is not None else 60)
        elif day is not None:
            start = datetime(int(year), int(month), int(day), tzinfo=UTC)
            end = start + timedelta(days=1)
        elif month is not None:
            start = datetime(int(year), int(month), 1, tzinfo=UTC)
            end = datetime(int(year) + int(month) // 12, int(month) % 12 + 1, 1, tzinfo=UTC)
        else:
            start = datetime(int(year), 1, 1, tzinfo=UTC)
            end = datetime(int(year) + 1, 1, 1, tzinfo=UTC)
    except (ValueError, OverflowError):
        raise FhirError(
            400, "invalid", f"date={value[:40]}: not a calendar date", expression=("date",)
        ) from None
    lo, hi = int(start.timestamp()), int(end.timestamp())
    return {
        "eq": (lo, hi),
        "ge": (lo, None),
        "gt": (hi, None),
        "lt": (None, lo),
        "le": (None, hi),
    }[prefix]


def collect_search(
    params: Sequence[tuple[str, str]], known: frozenset[str], date_param: str
) -> tuple[dict[str, str], int | None, int | None]:
    """The search parameters each given once (400 for unknown or repeated ones), with the
    ``date_param`` values narrowed to one [since, until) window."""
    one: dict[str, str] = {}
    since: int | None = None
    until: int | None = None
    for name, value in params:
        if name not in known:
            raise FhirError(
                400,
                "not-supported",
                f"unknown search parameter {name[:40]!r}",
                expression=(name[:40],),
            )
        if name == date_param:
            lo, hi = date_range(value)
            since = lo if since is None or (lo is not None and lo > since) else since
            until = hi if until is None or (hi is not None and hi < until) else until
            continue
        if name in one and name != "_format":
            raise FhirError(400, "not-supported", f"{name} given twice", expression=(name,))
        one[name] = value
    return one, since, until


def patient_param(value: str) -> str:
    """``patient``/``subject``: ``Patient/<address>`` or the address."""
    address = value.removeprefix("Patient/")
    if not _ADDRESS.fullmatch(address):
        raise FhirError(
            400, "invalid", "patient: Patient/<wallet address>", expression=("patient",)
        )
    return _checksum(address)


@dataclass(frozen=True)
class DocumentSearch:
    patient: str | None
    category: str | None
    type_system: str | None
    type_code: str | None
    since: int | None
    until: int | None
    status: Literal["current", "superseded"] | None
    identifier: str | None
    newest_first: bool

    def query(self, *, limit: int, offset: int, patient: str | None) -> RecordQuery:
        return RecordQuery(
            patient=patient,
            category=self.category,
            type_system=self.type_system,
            type_code=self.type_code,
            since=self.since,
            until=self.until,
            status=self.status,
            identifier=self.identifier,
            newest_first=self.newest_first,
            limit=limit,
            offset=offset,
        )


def parse_search(params: Sequence[tuple[str, str]]) -> DocumentSearch:
    """DocumentReference search parameters (400 for unknown ones or bad values)."""
    one, since, until = collect_search(params, SEARCH_PARAMS, "date")
    patient = None
    for name in ("patient", "subject"):
        if name in one:
            found = patient_param(one[name])
            if patient is not None and found != patient:
                raise FhirError(400, "invalid", "patient and subject differ", expression=(name,))
            patient = found
    category = None
    if "category" in one:
        system, code = split_token(one["category"])
        if system not in (None, CATEGORY_SYSTEM) or not _CATEGORY.fullmatch(code):
            raise FhirError(
                400, "invalid", f"category: {CATEGORY_SYSTEM}|<category>", expression=("category",)
            )
        category = code
    type_system = type_code = None
    if "type" in one:
        type_system, type_code = split_token(one["type"])
        if not type_code:
            raise FhirError(400, "invalid", "type: system|code", expression=("type",))
        type_system = type_system or None
    status: Literal["current", "superseded"] | None = None
    if "status" in one:
        value = one["status"]
        if value not in ("current", "superseded"):
            raise FhirError(400, "invalid", "status: current or superseded", expression=("status",))
        status = "current" if value == "current" else "superseded"
    identifier = None
    if "identifier" in one:
        system, value = split_token(one["identifier"])
        if not system or not value:
            raise FhirError(400, "invalid", "identifier: system|value", expression=("identifier",))
        identifier = f"{system}|{value}"
    sort = one.get("_sort", "-date")
    if sort not in ("date", "-date"):
        raise FhirError(400, "not-supported", "_sort: date or -date", expression=("_sort",))
    return DocumentSearch(
        patient, category, type_system, type_code, since, until, status, identifier, sort == "-date"
    )


def parse_if_none_exist(value: str) -> str:
    """``If-None-Exist: identifier=system|value`` as the node's identifier string."""
    name, _, token = value.partition("=")
    system, ident = split_token(token)
    if name.strip() != "identifier" or not system or not ident:
        raise FhirError(
            400,
            "not-supported",
            "If-None-Exist: only identifier=system|value is supported",
            expression=("If-None-Exist",),
        )
    return f"{unquote(system)}|{unquote(ident)}"


# -- Binary ------------------------------------------------------------------------------------

BINARY = "Binary"

register(
    Capability(
        type=BINARY,
        interactions=("read", "create"),
        documentation=(
            "A record's content. Create: securityContext Patient/<wallet address> and the "
            f"category as a meta.tag of system {CATEGORY_SYSTEM} or the X-Category header. "
            "Read: a wallet session (the patient, or a grantee with live consent or "
            "break-glass), access-logged on-chain; Accept: application/fhir+json answers a "
            "Binary resource, anything else the raw content."
        ),
    )
)


def parse_binary(data: dict[str, Any]) -> Binary:
    try:
        return Binary.model_validate(data)
    except ValidationError as err:
        raise invalid_resource(err, BINARY) from None


def binary_upload(
    model: Binary,
    *,
    category_header: str | None,
    resolve: PatientResolver | None = None,
    max_bytes: int,
) -> UploadRequest:
    """The upload a Binary create asks for (400 naming the element otherwise)."""

    def bad(diagnostics: str, where: str, code: str = "invalid") -> FhirError:
        return FhirError(400, code, diagnostics, expression=(f"{BINARY}.{where}",))

    context = model.securityContext
    if context is None or not (context.reference or context.identifier):
        raise bad(
            "securityContext: Patient/<wallet address> the content belongs to",
            "securityContext",
            "required",
        )
    try:
        patient = subject_address(
            context.reference,
            (context.identifier.system, context.identifier.value) if context.identifier else None,
            resolve,
        )
    except FhirError:
        raise bad(
            "securityContext must name a patient: Patient/<wallet address>", "securityContext"
        ) from None
    # Binary is a Resource, not a DomainResource: no extensions; the category is a tag.
    tags = model.meta.tag if model.meta is not None and model.meta.tag else []
    categories = [t.code for t in tags if t.system == CATEGORY_SYSTEM and t.code]
    if category_header is not None:
        categories.append(category_header)
    if len(set(categories)) != 1:
        raise bad(
            f"the category: one meta.tag of system {CATEGORY_SYSTEM} or an X-Category header",
            "meta.tag",
            "required",
        )
    category = categories[0]
    if not _CATEGORY.fullmatch(category):
        raise bad("category: 1-64 of a-z 0-9 _ . - starting with a letter or digit", "meta.tag")
    if model.data is None or not bytes(model.data):
        raise bad("data (base64) is required and may not be empty", "data", "required")
    content = bytes(model.data)
    if len(content) > max_bytes:
        raise FhirError(413, "too-long", f"the content exceeds the limit of {max_bytes} bytes")
    media_type = model.contentType or ""
    if not _MEDIA_TYPE.fullmatch(media_type) or len(media_type) > 255:
        raise bad("contentType: a media type like application/pdf", "contentType")
    sha1 = base64.b64encode(hashlib.sha1(content).digest()).decode()
    meta = DocumentMeta(source=SOURCE, attributes={SHA1_ATTRIBUTE: sha1})
    return UploadRequest(patient, category, media_type, content, None, meta)


def binary_resource(row: RecordRow, content: bytes | None = None) -> dict[str, Any]:
    """A record's Binary; ``data`` only when the content was read through the read flow."""
    rid = fhir_id(row.record_id)
    out: dict[str, Any] = {
        "resourceType": BINARY,
        "id": rid,
        "meta": {
            "versionId": rid,
            "lastUpdated": instant(row.created_at),
            "tag": [{"system": CATEGORY_SYSTEM, "code": row.category}],
        },
        "contentType": row.content_type,
        "securityContext": patient_reference(row.patient),
    }
    if content is not None:
        out["data"] = base64.b64encode(content).decode()
    return out
