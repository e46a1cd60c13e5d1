"""One DICOM instance as the node sees it: parsed (pydicom) and checked from its Part 10
bytes, and mapped onto the record model's document metadata (``DocumentMeta``)."""

from __future__ import annotations

import io
import re
import warnings
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone

import pydicom
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset

from node.exceptions import InvalidRequest
from storage.models import DocumentMeta

SOURCE = "dicom"
CATEGORY = "imaging"
CONTENT_TYPE = "application/dicom"
# DocumentMeta.type_system of an instance: its Modality is a code of the DICOM vocabulary.
TYPE_SYSTEM = "http://dicom.nema.org/resources/ontology/DCM"
IDENTIFIER_SYSTEM = "urn:dicom:uid"  # identifier = f"{IDENTIFIER_SYSTEM}|{sop instance uid}"
UNKNOWN_MODALITY = "OT"  # "Other": an instance without a Modality

_LENIENT_UID = re.compile(r"[0-9.]{1,64}")  # what modalities send (leading zeros happen)
_DATE = re.compile(r"\d{8}")
_TIME = re.compile(r"(\d{2})(\d{2})?(\d{2})?(\.\d{1,6})?")
_OFFSET = re.compile(r"[+-]\d{4}")
_ITEM_TAGS = (b"\xfe\xff\x00\xe0", b"\xff\xfe\xe0\x00")  # (FFFE,E000), little/big endian
# pydicom parses nested sequences recursively. Past this many items, the nesting depth is
# measured before pydicom sees the bytes (_max_nesting), so that a crafted file cannot drive
# the parser's recursion deep into the C stack.
_CHEAP_ITEM_COUNT = 256
MAX_NESTING = 32
UNDEFINED_LENGTH = 0xFFFFFFFF
DEFLATED = "1.2.840.10008.1.2.1.99"


class InvalidInstance(InvalidRequest):
    """The bytes are not a DICOM Part 10 instance the node can store (not DICOM, truncated,
    or missing an identifying attribute). The message names what is wrong, never a value."""


@dataclass(frozen=True, slots=True)
class DicomInstance:
    """The identifying attributes of one instance, and its Part 10 bytes."""

    data: bytes  # the instance as received: Part 10 file (preamble, meta, data set)
    sop_class_uid: str
    sop_instance_uid: str
    study_uid: str
    series_uid: str
    patient_id: str
    issuer_of_patient_id: str | None
    modality: str
    study_date: str | None  # YYYYMMDD
    study_time: str | None  # HHMMSS[.ffffff], as sent
    accession: str | None
    study_description: str | None
    series_description: str | None
    clinical_time: int | None  # unix seconds of StudyDate + StudyTime (see _clinical_time)

    @property
    def identifier(self) -> str:
        return f"{IDENTIFIER_SYSTEM}|{self.sop_instance_uid}"

    def document(self) -> DocumentMeta:
        """The record's document metadata (indexed beside it, never sent on-chain)."""
        attributes = {
            "dicom.study_uid": self.study_uid,
            "dicom.series_uid": self.series_uid,
            "dicom.sop_uid": self.sop_instance_uid,
            "dicom.sop_class_uid": self.sop_class_uid,
            "dicom.modality": self.modality,
            "dicom.patient_id": self.patient_id,
        }
        if self.study_date:
            attributes["dicom.study_date"] = self.study_date
        if self.accession:
            attributes["dicom.accession"] = self.accession
        titles = [t for t in (self.study_description, self.series_description) if t]
        return DocumentMeta(
            source=SOURCE,
            type_system=TYPE_SYSTEM,
            type_code=self.modality,
            title=" / ".join(titles) or None,
            clinical_time=self.clinical_time,
            identifier=self.identifier,
            attributes=attributes,
        )


def read_dataset(data: bytes, *, stop_before_pixels: bool = False) -> Dataset:
    """Parse Part 10 bytes with pydicom; raises InvalidInstance if they are not DICOM, nest
    sequences deeper than MAX_NESTING, or are cut short."""
    if len(data) < 132 or data[128:132] != b"DICM":
        raise InvalidInstance("not a DICOM Part 10 file (no 128-byte preamble and 'DICM')")
    if sum(data.count(t) for t in _ITEM_TAGS) > _CHEAP_ITEM_COUNT:
        # Only files with many sequence items are measured; the rest cannot nest deeply.
        depth = _max_nesting(data)
        if depth > MAX_NESTING:
            raise InvalidInstance(f"sequences nest deeper than {MAX_NESTING} levels")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pydicom warns about oddities it repairs
            ds = pydicom.dcmread(
                io.BytesIO(data), force=False, stop_before_pixels=stop_before_pixels
            )
            # A deflated data set's offsets are those of the inflated stream.
            deflated = ds.file_meta.get("TransferSyntaxUID") == DEFLATED
            _check_complete(ds, len(data), stop_before_pixels or deflated)
    except InvalidInstance:
        raise
    except Exception as err:  # pydicom raises many types for malformed input (see fuzz)
        raise InvalidInstance(f"not a readable DICOM instance ({type(err).__name__})") from None
    if "TransferSyntaxUID" not in ds.file_meta:
        raise InvalidInstance("the file meta information has no TransferSyntaxUID")
    return ds


def _check_complete(ds: Dataset, size: int, stopped: bool) -> None:
    """pydicom reads a file cut short without complaint: the value read for the last
    element is shorter than its length says, or bytes are left over after it."""
    last_end = 0
    for tag in list(ds.keys()):
        raw = ds._dict[tag]  # the raw element: its declared length and the bytes read
        if not isinstance(raw, RawDataElement):
            last_end = -1  # parsed while reading (a sequence): its end is not kept
            continue
        if raw.length == UNDEFINED_LENGTH:
            last_end = -1  # a sequence or encapsulated pixel data: ends at its delimiter
            continue
        if raw.value is not None and len(raw.value) != raw.length:
            raise InvalidInstance("the file is truncated (an element is shorter than its length)")
        last_end = raw.value_tell + raw.length
    if not stopped and last_end > 0 and last_end != size:
        raise InvalidInstance("the file is truncated or has bytes after its last element")


def _max_nesting(data: bytes) -> int:
    """The deepest sequence nesting of the data set, walked iteratively (never recursing),
    for explicit and implicit VR little endian and explicit big endian."""
    from pydicom.datadict import dictionary_VR

    pos = 132
    # Group 0002 (file meta) is explicit VR little endian; find the transfer syntax first.
    implicit, little = False, True
    ts = b""
    while pos + 8 <= len(data) and data[pos : pos + 2] == b"\x02\x00":
        elem = int.from_bytes(data[pos + 2 : pos + 4], "little")
        vr = data[pos + 4 : pos + 6]
        if vr in (b"OB", b"OW", b"OF", b"SQ", b"UT", b"UN"):
            length = int.from_bytes(data[pos + 8 : pos + 12], "little")
            start = pos + 12
        else:
            length = int.from_bytes(data[pos + 6 : pos + 8], "little")
            start = pos + 8
        if elem == 0x0010:
            ts = data[start : start + length].rstrip(b"\x00 ")
        pos = start + length
    if ts == b"1.2.840.10008.1.2":
        implicit = True
    elif ts == b"1.2.840.10008.1.2.2":
        little = False
    elif ts == DEFLATED.encode():
        return 0  # deflated: pydicom inflates first; depth is then unknown, but bounded below
    order = "little" if little else "big"
    # Open sequences and items: (end offset or None for undefined length, is an item).
    stack: list[tuple[int | None, bool]] = []
    depth = deepest = 0
    n = len(data)
    while pos + 8 <= n:
        while stack and stack[-1][0] is not None and pos >= stack[-1][0]:
            depth -= stack.pop()[1]
        group = int.from_bytes(data[pos : pos + 2], order)
        elem = int.from_bytes(data[pos + 2 : pos + 4], order)
        tag = (group << 16) | elem
        if group == 0xFFFE:
            length = int.from_bytes(data[pos + 4 : pos + 8], order)
            pos += 8
            if elem == 0xE000:  # item: its content nests one level deeper
                stack.append((None if length == UNDEFINED_LENGTH else pos + length, True))
                depth += 1
                deepest = max(deepest, depth)
                if deepest > MAX_NESTING:
                    return deepest
            elif stack and stack[-1][0] is None:  # item or sequence delimiter
                depth -= stack.pop()[1]
            continue
        if implicit:
            length = int.from_bytes(data[pos + 4 : pos + 8], order)
            start = pos + 8
            try:
                is_sq = dictionary_VR(tag) == "SQ"
            except KeyError:
                is_sq = length == UNDEFINED_LENGTH  # unknown tags: undefined length means SQ
        else:
            vr = data[pos + 4 : pos + 6]
            if vr in (b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN",
                      b"UR", b"UT", b"UV"):  # fmt: skip
                length = int.from_bytes(data[pos + 8 : pos + 12], order)
                start = pos + 12
            else:
                length = int.from_bytes(data[pos + 6 : pos + 8], order)
                start = pos + 8
            is_sq = vr == b"SQ" or (vr == b"UN" and length == UNDEFINED_LENGTH)
        if is_sq or length == UNDEFINED_LENGTH:
            # Step into the sequence (or encapsulated pixel data): its items follow.
            stack.append((None if length == UNDEFINED_LENGTH else start + length, False))
            if len(stack) > 2 * MAX_NESTING + 2:  # sequences without items, nested
                return len(stack)
            pos = start
        else:
            pos = start + length
    return deepest


def _text(ds: Dataset, keyword: str, limit: int = 255) -> str | None:
    value = ds.get(keyword)
    if value is None:
        return None
    if isinstance(value, pydicom.multival.MultiValue):
        value = value[0] if value else ""
    text = str(value).strip().replace("\x00", "")
    return text[:limit] or None


def _uid(ds: Dataset, keyword: str) -> str:
    value = _text(ds, keyword, limit=100)
    if value is None:
        raise InvalidInstance(f"the instance has no {keyword}")
    if not _LENIENT_UID.fullmatch(value):
        raise InvalidInstance(f"{keyword} is not a UID (digits and dots, at most 64)")
    return value


def is_uid(value: str) -> bool:
    """Whether ``value`` is a well-formed UID (PS3.5 9.1; leading zeros tolerated)."""
    return _LENIENT_UID.fullmatch(value) is not None


def _clinical_time(ds: Dataset, date: str | None, time: str | None) -> int | None:
    """StudyDate + StudyTime as unix seconds. DICOM dates carry no zone: the instance's
    TimezoneOffsetFromUTC (0008,0201) when it has one, else UTC."""
    if date is None or not _DATE.fullmatch(date):
        return None
    match = _TIME.fullmatch(time) if time else None
    hh, mm, ss = (int(g) if g else 0 for g in match.groups()[:3]) if match else (0, 0, 0)
    offset = _text(ds, "TimezoneOffsetFromUTC")
    tz = UTC
    if offset and _OFFSET.fullmatch(offset):
        sign = -1 if offset[0] == "-" else 1
        minutes = int(offset[1:3]) * 60 + int(offset[3:5])
        if minutes <= 14 * 60:
            tz = timezone(sign * timedelta(minutes=minutes))
    try:
        when = datetime(
            int(date[:4]), int(date[4:6]), int(date[6:8]), hh, mm, min(ss, 59), tzinfo=tz
        )
    except ValueError:  # 20231399, 25:00: no such time
        return None
    return int(when.timestamp())


def parse_instance(data: bytes) -> DicomInstance:
    """Read an instance's identifying attributes; raises InvalidInstance if it is not a
    complete DICOM Part 10 instance with SOP Class, SOP Instance, Study and Series UIDs and
    a PatientID."""
    ds = read_dataset(data)
    try:
        return _instance(ds, data)
    except InvalidInstance:
        raise
    except Exception as err:  # pydicom converts a value on first access: a malformed one
        raise InvalidInstance(f"a malformed attribute value ({type(err).__name__})") from None


def _instance(ds: Dataset, data: bytes) -> DicomInstance:
    # The data set's SOPInstanceUID names the instance; the file meta's copy is not
    # checked against it (some writers leave a stale one: pydicom's rtplan.dcm).
    sop_uid = _uid(ds, "SOPInstanceUID")
    patient_id = _text(ds, "PatientID", limit=64)
    if patient_id is None:
        raise InvalidInstance("the instance has no PatientID: it cannot be filed for a patient")
    study_date = _text(ds, "StudyDate", limit=8)
    study_time = _text(ds, "StudyTime", limit=16)
    modality = _text(ds, "Modality", limit=16) or UNKNOWN_MODALITY
    return DicomInstance(
        data=data,
        sop_class_uid=_uid(ds, "SOPClassUID"),
        sop_instance_uid=sop_uid,
        study_uid=_uid(ds, "StudyInstanceUID"),
        series_uid=_uid(ds, "SeriesInstanceUID"),
        patient_id=patient_id,
        issuer_of_patient_id=_text(ds, "IssuerOfPatientID", limit=64),
        modality=modality,
        study_date=study_date if study_date and _DATE.fullmatch(study_date) else None,
        study_time=study_time,
        accession=_text(ds, "AccessionNumber", limit=16),
        study_description=_text(ds, "StudyDescription", limit=64),
        series_description=_text(ds, "SeriesDescription", limit=64),
        clinical_time=_clinical_time(ds, study_date, study_time),
    )
