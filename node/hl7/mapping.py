"""What an HL7 v2 message means to the node: PID-3 as identifiers (and a wallet address),
ORU^R01 and MDM^T02 as document metadata, HL7 timestamps as unix seconds.

PID-3 (CX: ID ^ check digit ^ scheme ^ assigning authority ^ identifier type ^ ...):
- a repetition with identifier type (CX-5) ``WALLET`` carries the patient's wallet address;
- every other repetition is an identifier whose system is, from its assigning authority
  (CX-4, HD: namespace ^ universal id ^ universal id type): ``urn:oid:<id>`` for an ISO OID,
  ``urn:uuid:<id>`` for a UUID, the id itself for a URI, otherwise
  ``urn:emr-node:hl7:<namespace>``; with no assigning authority, the sending facility's
  (MSH-4) namespace stands in (an MRN is local to whoever assigned it).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from node.exceptions import InvalidRequest
from node.hl7.message import (
    DATA_TYPE_ERROR,
    REQUIRED_FIELD_MISSING,
    SEGMENT_SEQUENCE_ERROR,
    Message,
    reject,
)
from node.patients import MAX_IDENTIFIER_LENGTH, checksum_wallet
from storage.models import DocumentMeta

HL7_SYSTEM_PREFIX = "urn:emr-node:hl7:"
IDENTIFIER_SYSTEM = "urn:emr-node:hl7"  # DocumentMeta.identifier: "<this>:<MSH-4>|<MSH-10>"
WALLET_TYPE = "WALLET"  # CX-5 of the PID-3 repetition that carries the wallet address
CONTENT_TYPE = "application/hl7-v2"
# HL7 coding system names (table 0396) with a FHIR system URI; others become
# urn:emr-node:hl7:code:<name>.
CODE_SYSTEMS = {
    "LN": "http://loinc.org",
    "SCT": "http://snomed.info/sct",
    "SNM": "http://snomed.info/sct",
    "I10": "http://hl7.org/fhir/sid/icd-10",
    "HL70270": "http://terminology.hl7.org/CodeSystem/v2-0270",
}
_DTM = re.compile(
    r"(\d{4})(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\d{2})?(?:\.\d{1,4})?(?:([+-])(\d{2})(\d{2}))?"
)
_ATTRIBUTE_MAX = 255


@dataclass(frozen=True, slots=True)
class PatientIds:
    """PID-3 read: the wallet address a repetition states (checksummed) and the other
    identifiers as (system, value)."""

    wallet: str | None
    identifiers: list[tuple[str, str]]


def facility_id(msg: Message) -> str:
    """MSH-4's namespace id: the sending facility the allow-list names."""
    return msg.component(msg.first("MSH"), 4)


def control_id(msg: Message) -> str:
    """MSH-10, the message control id, unescaped."""
    return msg.component(msg.first("MSH"), 10)


def _authority_system(hd: list[list[str]], fallback: str) -> str:
    # CX-4 is an HD with subcomponents: namespace & universal id & universal id type.
    parts = [p.strip() for p in (hd[3] if len(hd) > 3 else [])] + ["", "", ""]
    namespace, universal, kind = parts[0], parts[1], parts[2].upper()
    if universal and kind == "ISO" and re.fullmatch(r"[0-2](\.\d+)+", universal):
        return f"urn:oid:{universal}"
    if universal and kind == "UUID":
        return f"urn:uuid:{universal.lower()}"
    if universal and kind in ("URI", "URL") and ":" in universal:
        return universal
    return HL7_SYSTEM_PREFIX + (namespace or universal or fallback)


def patient_ids(msg: Message) -> PatientIds:
    """The identifiers of the message's only PID. Raises Hl7Error (AR) with no PID, more
    than one, an empty PID-3, two wallets or a wallet repetition that holds no address."""
    pids = msg.all("PID")
    if not pids:
        raise reject(SEGMENT_SEQUENCE_ERROR, "a PID segment is required", ("PID", 1, 0))
    if len(pids) > 1:
        raise reject(SEGMENT_SEQUENCE_ERROR, "one patient (PID) per message", ("PID", 2, 0))
    fallback = facility_id(msg) or "UNKNOWN"
    wallet: str | None = None
    identifiers: list[tuple[str, str]] = []
    for rep in msg.repetitions(pids[0], 3):
        value = rep[0][0].strip() if rep and rep[0] else ""
        if not value:
            continue
        kind = rep[4][0].strip().upper() if len(rep) > 4 and rep[4] else ""
        if kind == WALLET_TYPE:
            try:
                address = checksum_wallet(value)
            except InvalidRequest:
                raise reject(
                    DATA_TYPE_ERROR,
                    "the WALLET identifier of PID-3 is no wallet address",
                    ("PID", 1, 3),
                ) from None
            if wallet is not None and wallet != address:
                raise reject(DATA_TYPE_ERROR, "PID-3 names two wallets", ("PID", 1, 3))
            wallet = address
            continue
        system = _authority_system(rep, fallback)
        if len(system) > MAX_IDENTIFIER_LENGTH or len(value) > MAX_IDENTIFIER_LENGTH:
            raise reject(DATA_TYPE_ERROR, "a PID-3 identifier is too long", ("PID", 1, 3))
        if (system, value) not in identifiers:
            identifiers.append((system, value))
    if wallet is None and not identifiers:
        raise reject(
            REQUIRED_FIELD_MISSING, "PID-3 (patient identifier list) is empty", ("PID", 1, 3)
        )
    return PatientIds(wallet, identifiers)


def hl7_time(value: str) -> int | None:
    """An HL7 DTM/TS (YYYY[MM[DD[HH[MM[SS[.S]]]]]][+/-ZZZZ]) as unix seconds; no offset
    reads as UTC. None when empty or not a timestamp."""
    value = value.strip()
    m = _DTM.fullmatch(value)
    if not m:
        return None
    year, month, day, hour, minute, second = (
        int(g) if g else d for g, d in zip(m.groups()[:6], (0, 1, 1, 0, 0, 0), strict=True)
    )
    try:
        # datetime checks the calendar (no 30 February); a leap second reads as :59.
        when = datetime(year, month, day, hour, minute, min(second, 59), tzinfo=UTC)
    except ValueError:
        return None
    seconds = int(when.timestamp())
    if m.group(7):
        offset = int(m.group(8)) * 3600 + int(m.group(9)) * 60
        seconds -= offset if m.group(7) == "+" else -offset
    return seconds


def _coded(msg: Message, segment: Any, n: int) -> tuple[str | None, str | None, str | None]:
    """A CE/CWE field as (system, code, display); a code without a system gets none."""
    code = msg.component(segment, n, 1)
    display = msg.component(segment, n, 2) or None
    name = msg.component(segment, n, 3)
    if not code:
        return None, None, display
    system = CODE_SYSTEMS.get(name.upper(), f"{HL7_SYSTEM_PREFIX}code:{name}") if name else None
    return system, code[:_ATTRIBUTE_MAX], display


def _attributes(pairs: dict[str, str]) -> dict[str, str]:
    return {k: v[:_ATTRIBUTE_MAX] for k, v in pairs.items() if v}


def record_identifier(msg: Message) -> str:
    """DocumentMeta.identifier of the record a message makes: a re-sent message (same
    facility, same control id) names the record already stored."""
    return f"{IDENTIFIER_SYSTEM}:{facility_id(msg)}|{control_id(msg)}"


def document_meta(msg: Message, message_type: str) -> tuple[str, DocumentMeta]:
    """(category, metadata) of an ORU^R01 or MDM^T02. Raises Hl7Error (AR) when OBR or TXA
    is missing."""
    msh = msg.first("MSH")
    sent = hl7_time(msg.component(msh, 7))
    common = {
        "hl7.control_id": control_id(msg),
        "hl7.message_type": message_type,
        "hl7.sending_facility": facility_id(msg),
        "hl7.sending_application": msg.component(msh, 3),
    }
    if message_type == "ORU^R01":
        obr = msg.first("OBR")
        if obr is None:
            raise reject(SEGMENT_SEQUENCE_ERROR, "an OBR segment is required", ("OBR", 1, 0))
        system, code, display = _coded(msg, obr, 4)
        meta = DocumentMeta(
            source="hl7v2",
            type_system=system,
            type_code=code if system else None,
            type_display=display,
            title=display or "HL7 ORU^R01 result",
            clinical_time=hl7_time(msg.component(obr, 7)) or sent,
            identifier=record_identifier(msg),
            attributes=_attributes(
                {
                    **common,
                    "hl7.placer_order": msg.component(obr, 2),
                    "hl7.filler_order": msg.component(obr, 3),
                    "hl7.result_status": msg.component(obr, 25),
                }
            ),
        )
        return "lab", meta
    txa = msg.first("TXA")
    if txa is None:
        raise reject(SEGMENT_SEQUENCE_ERROR, "a TXA segment is required", ("TXA", 1, 0))
    system, code, display = _coded(msg, txa, 2)
    if code and not system:  # TXA-2 is table 0270 (document type) unless it says otherwise
        system = CODE_SYSTEMS["HL70270"]
    meta = DocumentMeta(
        source="hl7v2",
        type_system=system,
        type_code=code,
        type_display=display,
        title=display or (f"HL7 MDM^T02 document {code}" if code else "HL7 MDM^T02 document"),
        clinical_time=hl7_time(msg.component(txa, 4)) or hl7_time(msg.component(txa, 6)) or sent,
        identifier=record_identifier(msg),
        attributes=_attributes(
            {
                **common,
                "hl7.document_number": msg.component(txa, 12),
                "hl7.completion_status": msg.component(txa, 17),
            }
        ),
    )
    return "note", meta
