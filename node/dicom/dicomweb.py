"""DICOMweb (PS3.18) pieces the HTTP routes use: multipart/related bodies (STOW-RS requests,
WADO-RS answers), the DICOM JSON model (PS3.18 F) of search results and store answers, and
the QIDO-RS search over the record index (metadata only: no content is decrypted)."""

from __future__ import annotations

import calendar
import re
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from email.message import Message
from typing import Any

from node.dicom.ingest import StoreOutcome, StoreStatus
from node.dicom.instance import CATEGORY, CONTENT_TYPE, SOURCE
from node.exceptions import InvalidRequest
from storage.abc import RecordIndexAPI
from storage.models import RecordQuery, RecordRow

DICOM_JSON = "application/dicom+json"
# Study and series searches group instances: at most this many are read for one search.
MAX_SCAN = 10_000
_SCAN_PAGE = 1000
# PS3.18 8.3.4.1 / RFC 7234: the warning a truncated search answers with.
TRUNCATED_WARNING = (
    '299 emr-node "The number of results exceeded the maximum supported by the server; '
    'narrow the query"'
)
_BOUNDARY = re.compile(r"[0-9A-Za-z'()+_,\-./:=? ]{0,69}[0-9A-Za-z'()+_,\-./:=?]")
_SAFE_ENCODINGS = ("", "binary", "8bit", "7bit")

# DICOM JSON tags (PS3.6) of the attributes the node answers with.
STUDY_DATE = "00080020"
ACCESSION = "00080050"
MODALITIES_IN_STUDY = "00080061"
MODALITY = "00080060"
SOP_CLASS = "00080016"
SOP_INSTANCE = "00080018"
STUDY_DESCRIPTION = "00081030"
RETRIEVE_URL = "00081190"
FAILURE_REASON = "00081197"
FAILED_SOP_SEQUENCE = "00081198"
REFERENCED_SOP_SEQUENCE = "00081199"
REFERENCED_SOP_CLASS = "00081150"
REFERENCED_SOP_INSTANCE = "00081155"
PATIENT_ID = "00100020"
STUDY_UID = "0020000D"
SERIES_UID = "0020000E"
SERIES_RELATED_INSTANCES = "00201209"
STUDY_RELATED_SERIES = "00201206"
STUDY_RELATED_INSTANCES = "00201208"


# -- multipart/related ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Part:
    content_type: str  # the part's media type, lower case, without parameters
    content: bytes


def _content_type(value: str) -> Message:
    msg = Message()
    msg["content-type"] = value
    return msg


def parse_multipart_related(content_type: str | None, body: bytes, *, max_parts: int) -> list[Part]:
    """The parts of a ``multipart/related; type="application/dicom"`` body (RFC 2387,
    RFC 2046 5.1). Raises InvalidRequest, naming what is wrong, for another media type, a
    missing or malformed boundary, a body not framed by it, or more than ``max_parts``."""
    header = _content_type(content_type or "")
    if header.get_content_type() != "multipart/related" or not content_type:
        raise InvalidRequest(
            'send Content-Type: multipart/related; type="application/dicom"; boundary=...'
        )
    kind = header.get_param("type")
    if isinstance(kind, str) and kind.lower() != CONTENT_TYPE:
        raise InvalidRequest(f'the multipart type must be "{CONTENT_TYPE}" (DICOM Part 10)')
    boundary = header.get_param("boundary")
    if not isinstance(boundary, str) or not _BOUNDARY.fullmatch(boundary):
        raise InvalidRequest("the Content-Type has no valid boundary parameter (RFC 2046)")
    delimiter = b"--" + boundary.encode("ascii")
    if body.startswith(delimiter):
        pos = 0
    else:  # a preamble before the first delimiter is allowed and ignored
        pos = body.find(b"\r\n" + delimiter)
        if pos < 0:
            raise InvalidRequest("the body holds no part delimited by the boundary")
        pos += 2
    parts: list[Part] = []
    while True:
        pos += len(delimiter)
        if body[pos : pos + 2] == b"--":
            break  # the close delimiter: what follows is an epilogue
        line_end = body.find(b"\r\n", pos)
        if line_end < 0 or body[pos:line_end].strip(b" \t"):
            raise InvalidRequest("a boundary delimiter is not followed by a line break")
        start = line_end + 2
        end = body.find(b"\r\n" + delimiter, start)
        if end < 0:
            raise InvalidRequest("the body ends before the closing boundary (truncated?)")
        if len(parts) >= max_parts:
            raise InvalidRequest(f"a request holds at most {max_parts} instances")
        parts.append(_part(body[start:end]))
        pos = end + 2
    if not parts:
        raise InvalidRequest("the body holds no part")
    return parts


def _part(raw: bytes) -> Part:
    if raw.startswith(b"\r\n"):  # no part headers
        return Part(CONTENT_TYPE, raw[2:])
    head_end = raw.find(b"\r\n\r\n")
    if head_end < 0:
        raise InvalidRequest("a part has no blank line after its headers")
    media_type = CONTENT_TYPE  # the multipart's type parameter, when a part names none
    for line in raw[:head_end].split(b"\r\n"):
        name, colon, value = line.partition(b":")
        if not colon:
            raise InvalidRequest("a part header is not 'Name: value'")
        key = name.strip().lower()
        text = value.strip().decode("latin-1")
        if key == b"content-type":
            media_type = _content_type(text).get_content_type()
        elif key == b"content-transfer-encoding" and text.lower() not in _SAFE_ENCODINGS:
            raise InvalidRequest("parts must be sent binary (no Content-Transfer-Encoding)")
    return Part(media_type, raw[head_end + 4 :])


def multipart_related(
    contents: Iterable[bytes], media_type: str = CONTENT_TYPE
) -> tuple[bytes, str]:
    """(body, Content-Type) of a multipart/related answer holding ``contents``."""
    boundary = f"emr-node-{secrets.token_hex(16)}"
    chunks: list[bytes] = []
    for content in contents:
        chunks += [f"--{boundary}\r\nContent-Type: {media_type}\r\n\r\n".encode(), content, b"\r\n"]
    chunks.append(f"--{boundary}--\r\n".encode())
    return b"".join(chunks), f'multipart/related; type="{media_type}"; boundary={boundary}'


# -- DICOM JSON -------------------------------------------------------------------------


def _attr(vr: str, *values: Any) -> dict[str, Any]:
    present = [v for v in values if v not in (None, "")]
    return {"vr": vr, "Value": present} if present else {"vr": vr}


def _a(row: RecordRow, name: str) -> str | None:
    return row.document.attributes.get(name) if row.document is not None else None


def instance_url(base_url: str, study: str, series: str, sop: str) -> str:
    return f"{base_url}/dicomweb/studies/{study}/series/{series}/instances/{sop}"


def instance_json(row: RecordRow, base_url: str) -> dict[str, Any]:
    study, series, sop = (_a(row, f"dicom.{k}_uid") or "" for k in ("study", "series", "sop"))
    return {
        SOP_CLASS: _attr("UI", _a(row, "dicom.sop_class_uid")),
        SOP_INSTANCE: _attr("UI", sop),
        STUDY_DATE: _attr("DA", _a(row, "dicom.study_date")),
        ACCESSION: _attr("SH", _a(row, "dicom.accession")),
        MODALITY: _attr("CS", _a(row, "dicom.modality")),
        RETRIEVE_URL: _attr("UR", instance_url(base_url, study, series, sop)),
        PATIENT_ID: _attr("LO", _a(row, "dicom.patient_id")),
        STUDY_UID: _attr("UI", study),
        SERIES_UID: _attr("UI", series),
    }


def series_json(rows: Sequence[RecordRow]) -> dict[str, Any]:
    first = rows[0]
    return {
        STUDY_DATE: _attr("DA", _a(first, "dicom.study_date")),
        ACCESSION: _attr("SH", _a(first, "dicom.accession")),
        MODALITY: _attr("CS", _a(first, "dicom.modality")),
        PATIENT_ID: _attr("LO", _a(first, "dicom.patient_id")),
        STUDY_UID: _attr("UI", _a(first, "dicom.study_uid")),
        SERIES_UID: _attr("UI", _a(first, "dicom.series_uid")),
        SERIES_RELATED_INSTANCES: _attr("IS", len(rows)),
    }


def study_json(rows: Sequence[RecordRow]) -> dict[str, Any]:
    first = rows[0]
    modalities = sorted({m for r in rows if (m := _a(r, "dicom.modality"))})
    series = {_a(r, "dicom.series_uid") for r in rows}
    return {
        STUDY_DATE: _attr("DA", _a(first, "dicom.study_date")),
        ACCESSION: _attr("SH", _a(first, "dicom.accession")),
        MODALITIES_IN_STUDY: _attr("CS", *modalities),
        PATIENT_ID: _attr("LO", _a(first, "dicom.patient_id")),
        STUDY_UID: _attr("UI", _a(first, "dicom.study_uid")),
        STUDY_RELATED_SERIES: _attr("IS", len(series)),
        STUDY_RELATED_INSTANCES: _attr("IS", len(rows)),
    }


def stow_json(outcomes: Sequence[StoreOutcome], base_url: str) -> dict[str, Any]:
    """The Store Instances Response Module (PS3.18 10.5.3): the stored instances in
    ReferencedSOPSequence (with their RetrieveURL), the others in FailedSOPSequence with
    their FailureReason (the C-STORE status)."""
    stored: list[dict[str, Any]] = []
    failed: list[dict[str, Any]] = []
    for o in outcomes:
        item = {
            REFERENCED_SOP_CLASS: _attr("UI", o.sop_class_uid),
            REFERENCED_SOP_INSTANCE: _attr("UI", o.sop_instance_uid),
        }
        if o.stored and o.study_uid and o.series_uid and o.sop_instance_uid:
            url = instance_url(base_url, o.study_uid, o.series_uid, o.sop_instance_uid)
            stored.append({**item, RETRIEVE_URL: _attr("UR", url)})
        else:
            failed.append({**item, FAILURE_REASON: _attr("US", int(o.status))})
    answer: dict[str, Any] = {}
    if failed:
        answer[FAILED_SOP_SEQUENCE] = {"vr": "SQ", "Value": failed}
    if stored:
        answer[REFERENCED_SOP_SEQUENCE] = {"vr": "SQ", "Value": stored}
    return answer


def not_stored_reason(outcomes: Sequence[StoreOutcome]) -> str:
    """One line for a STOW-RS request of which no instance was stored."""
    reasons = [
        f"part {i + 1}: 0x{int(o.status):04X} {o.reason}".rstrip()
        for i, o in enumerate(outcomes[:10])
    ]
    more = f"; and {len(outcomes) - 10} more" if len(outcomes) > 10 else ""
    return "no instance was stored: " + "; ".join(reasons) + more


def part_outcome(part: Part) -> StoreOutcome | None:
    """The failure of a part that is not a DICOM instance (None: it may be one)."""
    if part.content_type != CONTENT_TYPE:
        return StoreOutcome(StoreStatus.CANNOT_UNDERSTAND, "the part is not application/dicom")
    return None


# -- QIDO-RS ----------------------------------------------------------------------------

_DATE_RANGE = re.compile(r"(?P<start>\d{8})?(?P<dash>-)?(?P<end>\d{8})?")
DATE_PATTERN = r"^(?:[1-9]\d{3}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01]))?(?:-(?:[1-9]\d{3}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01]))?)?$"  # noqa: E501


def _day_start(date: str) -> int:
    """Unix seconds of 00:00 UTC on ``date`` (YYYYMMDD); a day past the month's end
    (20230231) counts as its last day."""
    year, month, day = int(date[:4]), int(date[4:6]), int(date[6:8])
    day = min(day, calendar.monthrange(year, month)[1])
    return calendar.timegm((year, month, day, 0, 0, 0))


@dataclass(frozen=True, slots=True)
class QidoQuery:
    """A QIDO-RS query's matching keys (each one an exact match), the patient a wallet is
    limited to, and the page."""

    patient: str | None = None  # a wallet sees only its own instances
    attributes: dict[str, str] = field(default_factory=dict)
    since: int | None = None
    until: int | None = None
    limit: int = 100
    offset: int = 0

    @staticmethod
    def of(
        *,
        patient: str | None,
        study_date: str | None,
        limit: int,
        offset: int,
        **keys: str | None,
    ) -> QidoQuery:
        """``keys``: attribute names without the ``dicom.`` prefix (study_uid, ...)."""
        attributes = {f"dicom.{k}": v for k, v in keys.items() if v is not None}
        since = until = None
        if study_date:
            m = _DATE_RANGE.fullmatch(study_date)
            if m is None or not (m["start"] or m["end"]):
                if study_date != "-":
                    raise InvalidRequest("StudyDate: YYYYMMDD or a range YYYYMMDD-YYYYMMDD")
            elif not m["dash"]:
                attributes["dicom.study_date"] = study_date  # one day: exact match
            else:
                # A range: on the record's clinical time (StudyDate + StudyTime), in UTC.
                try:
                    since = _day_start(m["start"]) if m["start"] else None
                    until = _day_start(m["end"]) + 86_400 if m["end"] else None
                except ValueError:  # month 13, year 0: the route's pattern refuses them
                    raise InvalidRequest("StudyDate: not a calendar date") from None
        return QidoQuery(patient, attributes, since, until, limit, offset)

    def records(self, *, limit: int, offset: int, newest_first: bool = True) -> RecordQuery:
        return RecordQuery(
            patient=self.patient,
            category=CATEGORY,
            source=SOURCE,
            since=self.since,
            until=self.until,
            attributes=self.attributes,
            newest_first=newest_first,
            limit=limit,
            offset=offset,
        )


def search_instances(index: RecordIndexAPI, query: QidoQuery) -> list[RecordRow]:
    """Instances matching ``query``, newest first, one page."""
    return index.find_records(query.records(limit=query.limit, offset=query.offset))


def search_grouped(
    index: RecordIndexAPI, query: QidoQuery, key: str
) -> tuple[list[list[RecordRow]], bool]:
    """Matching instances grouped by the attribute ``key`` (dicom.study_uid or
    dicom.series_uid), groups in order of their newest instance, one page of groups; and
    whether the scan stopped at MAX_SCAN instances (the answer may be incomplete)."""
    groups: dict[str, list[RecordRow]] = {}
    scanned = 0
    truncated = False
    while True:
        page = index.find_records(query.records(limit=_SCAN_PAGE, offset=scanned))
        for row in page:
            groups.setdefault(_a(row, key) or "", []).append(row)
        scanned += len(page)
        if len(page) < _SCAN_PAGE:
            break
        if scanned >= MAX_SCAN:
            truncated = True
            break
    ordered = [rows for uid, rows in groups.items() if uid]
    return ordered[query.offset : query.offset + query.limit], truncated
