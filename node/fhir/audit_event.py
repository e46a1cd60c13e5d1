"""FHIR AuditEvent as a view of the on-chain audit trail, shaped after IHE BALP.

Every event comes from a log of the node's contracts (``ChainClientAPI.audit_events``):
nothing here is recorded by the façade itself, so the trail is exactly what the chain
holds. Each event names its patient (BALP's "with a Patient" profiles) and carries its
transaction: ``source.observer`` identifies the transaction (``urn:emr-node:chain-tx``),
``source.site`` the chain (``eip155:<chain id>``), and an entity of type
``chain-transaction`` holds the hash, block, log index, contract and event name.

==========================================  =============================================
chain event                                 AuditEvent (profile)
==========================================  =============================================
AccessRecorded granted                      Read with a Patient (BALP PatientRead):
                                            rest / read, action R, outcome 0
AccessRecorded granted, basis break-glass   Privacy Disclosure at Source: DCM 110106
                                            Export / disclose + read, purposeOfEvent BTG
AccessRecorded denied                       the Read shape, outcome 4 (no BALP profile:
                                            BALP profiles successes only)
BreakGlassOpened                            Privacy Disclosure at Source: disclose,
                                            purposeOfEvent BTG, reason hash and expiry
RecordAnchored                              Create with a Patient (BALP PatientCreate):
                                            DocumentReference/<record id>
ConsentGranted, ClassConsentGranted         PatientCreate of the Consent
ConsentRevoked, ClassConsentRevoked         Update with a Patient (BALP PatientUpdate)
==========================================  =============================================

Id: ``<block>-<log index>``. Queries (searches) are not recorded on-chain, so no BALP
Query events exist; BatchAnchored (no patient) is left out.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from node.chain.models import AuditEvent
from node.consent.typed_data import AccessBasis
from node.fhir.common import (
    WALLET_SYSTEM,
    Capability,
    SearchParam,
    param_error,
    register,
    split_token,
)
from node.fhir.consent import (
    TX_SYSTEM,
    consent_id,
    instant,
    parse_party,
    parse_record_reference,
)
from node.fhir.documents import collect_search, fhir_id

RESOURCE = "AuditEvent"
BALP = "https://profiles.ihe.net/ITI/BALP/StructureDefinition/"
PROFILE_READ = BALP + "IHE.BasicAudit.PatientRead"
PROFILE_CREATE = BALP + "IHE.BasicAudit.PatientCreate"
PROFILE_UPDATE = BALP + "IHE.BasicAudit.PatientUpdate"
PROFILE_DISCLOSURE = BALP + "IHE.BasicAudit.PrivacyDisclosure.Source"

DCM = "http://dicom.nema.org/resources/ontology/DCM"
EVENT_TYPE = "http://terminology.hl7.org/CodeSystem/audit-event-type"
RESTFUL = "http://hl7.org/fhir/restful-interaction"
LIFECYCLE = "http://terminology.hl7.org/CodeSystem/iso-21089-lifecycle"
OUTCOME_SYSTEM = "http://terminology.hl7.org/CodeSystem/audit-event-outcome"
ENTITY_TYPE = "http://terminology.hl7.org/CodeSystem/audit-entity-type"
OBJECT_ROLE = "http://terminology.hl7.org/CodeSystem/object-role"
PARTICIPATION = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
ACT_REASON = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
SNOMED = "http://snomed.info/sct"
SOURCE_TYPE = "http://terminology.hl7.org/CodeSystem/security-source-type"
NODE_ENTITY_TYPE = "urn:emr-node:audit-entity-type"  # chain-transaction
CLASS_CONSENT_SYSTEM = "urn:emr-node:class-consent"  # hospital:roles:scopeKind:0xscope

REST = {"system": EVENT_TYPE, "code": "rest", "display": "Restful Operation"}
EXPORT = {"system": DCM, "code": "110106", "display": "Export"}
READ = {"system": RESTFUL, "code": "read", "display": "read"}
CREATE = {"system": RESTFUL, "code": "create", "display": "create"}
UPDATE = {"system": RESTFUL, "code": "update", "display": "update"}
DISCLOSE = {"system": LIFECYCLE, "code": "disclose", "display": "Disclose Record Lifecycle Event"}
# DICOM roles: the data's source and destination (in BALP Read the client is the
# destination; in Create and Privacy Disclosure the source is the one that sends).
SOURCE_ROLE = {"system": DCM, "code": "110153", "display": "Source Role ID"}
DESTINATION_ROLE = {"system": DCM, "code": "110152", "display": "Destination Role ID"}
RECIPIENT = {"system": PARTICIPATION, "code": "IRCP", "display": "information recipient"}
AUTHOR = {"system": PARTICIPATION, "code": "AUT", "display": "author (originator)"}
CUSTODIAN = {"system": PARTICIPATION, "code": "CST", "display": "custodian"}
RECORD_KEEPER = {"system": SNOMED, "code": "159541003", "display": "Record keeping/library clerk"}
BTG = {"system": ACT_REASON, "code": "BTG", "display": "break the glass"}
PATRQT = {"system": ACT_REASON, "code": "PATRQT", "display": "patient requested"}
SUCCESS = "0"
DENIED = "4"  # "minor failure": the read was refused, nothing was disclosed

_ZERO32 = b"\x00" * 32

register(
    Capability(
        type=RESOURCE,
        interactions=("read", "search-type"),
        documentation=(
            "The on-chain audit trail (reads granted and denied, anchors, consents, "
            "break-glass) shaped after IHE BALP; each event names its chain transaction in "
            "source.observer and a chain-transaction entity. Auditor tokens; a wallet sees "
            "its own."
        ),
        search_params=(
            SearchParam("patient", "reference", "Patient/<wallet address>"),
            SearchParam(
                "entity",
                "reference",
                "DocumentReference/<record id> (a record consent names its record too)",
            ),
            SearchParam(
                "agent",
                "reference",
                "the acting wallet: reader, grantee, break-glass clinician or anchoring hospital",
            ),
            SearchParam("date", "date", "recorded (block time); prefixes eq, ge, gt, le, lt"),
            SearchParam("type", "token", f"{EVENT_TYPE}|rest or {DCM}|110106"),
            SearchParam("subtype", "token", "read | create | update | disclose"),
            SearchParam("outcome", "token", "0 (success) | 4 (denied)"),
            SearchParam("action", "token", "R | C | U"),
            SearchParam("_id", "token", "AuditEvent ids (<block>-<log index>), comma-separated"),
            SearchParam("_sort", "string", "date | -date (default -date)"),
        ),
    )
)


# -- ids ----------------------------------------------------------------------------------------

_ID = re.compile(r"^([0-9]{1,18})-([0-9]{1,9})$")


def audit_event_id(block_number: int, log_index: int) -> str:
    return f"{block_number}-{log_index}"


def parse_audit_event_id(value: str) -> tuple[int, int] | None:
    m = _ID.fullmatch(value)
    return (int(m.group(1)), int(m.group(2))) if m else None


# -- pieces -----------------------------------------------------------------------------------


def _raw(value: Any) -> bytes:
    if isinstance(value, str):
        return bytes.fromhex(value.removeprefix("0x"))
    return bytes(value)


def _wallet(address: str) -> dict[str, str]:
    return {"system": WALLET_SYSTEM, "value": address}


def _who(kind: str, address: str, display: str | None = None) -> dict[str, Any]:
    ref: dict[str, Any] = {
        "reference": f"{kind}/{address}",
        "type": kind,
        "identifier": _wallet(address),
    }
    if display:
        ref["display"] = display
    return ref


def _agent(
    role: dict[str, str],
    who: dict[str, Any],
    *,
    requestor: bool,
    purpose: dict[str, str] | None = None,
) -> dict[str, Any]:
    out: dict[str, Any] = {"type": {"coding": [role]}, "who": who, "requestor": requestor}
    if purpose is not None:
        out["purposeOfUse"] = [{"coding": [purpose]}]
    return out


def _patient_entity(patient: str) -> dict[str, Any]:
    return {
        "what": {"reference": f"Patient/{patient}", "identifier": _wallet(patient)},
        "type": {"system": ENTITY_TYPE, "code": "1", "display": "Person"},
        "role": {"system": OBJECT_ROLE, "code": "1", "display": "Patient"},
    }


def _data_entity(
    what: dict[str, Any], *, details: Sequence[tuple[str, str]] = ()
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "what": what,
        "type": {"system": ENTITY_TYPE, "code": "2", "display": "System Object"},
        "role": {"system": OBJECT_ROLE, "code": "4", "display": "Domain Resource"},
    }
    if details:
        out["detail"] = [{"type": k, "valueString": v} for k, v in details]
    return out


def _record(record_id: bytes) -> dict[str, Any]:
    if record_id == _ZERO32:  # break-glass over every record of the patient
        return {"display": "every record of the patient"}
    return {"reference": f"DocumentReference/{fhir_id(record_id)}"}


def _tx_entity(e: AuditEvent) -> dict[str, Any]:
    tx = "0x" + e.tx_hash.hex()
    return {
        "what": {"identifier": {"system": TX_SYSTEM, "value": tx}},
        "type": {"system": NODE_ENTITY_TYPE, "code": "chain-transaction"},
        "detail": [
            {"type": "blockNumber", "valueString": str(e.block_number)},
            {"type": "logIndex", "valueString": str(e.log_index)},
            {"type": "contract", "valueString": e.contract},
            {"type": "event", "valueString": e.event},
        ],
    }


@dataclass(frozen=True)
class ChainSource:
    """Where the trail is kept: the chain id (``source.site``) and each contract's address."""

    chain_id: int
    contracts: dict[str, str]  # contract name -> address


def _source(e: AuditEvent, where: ChainSource) -> dict[str, Any]:
    contract = where.contracts.get(e.contract, e.contract)
    return {
        "site": f"eip155:{where.chain_id}",
        "observer": {
            "identifier": {"system": TX_SYSTEM, "value": "0x" + e.tx_hash.hex()},
            "display": f"{e.contract} {contract}: {e.event}, block {e.block_number}, "
            f"log {e.log_index}",
        },
        "type": [{"system": SOURCE_TYPE, "code": "4", "display": "Application Server"}],
    }


@dataclass(frozen=True)
class MappedEvent:
    """An AuditEvent resource and what the search filters look at."""

    resource: dict[str, Any]
    patient: str
    timestamp: int
    block_number: int
    log_index: int
    outcome: str
    action: str
    codings: frozenset[tuple[str, str]]  # type and subtype (system, code)
    subtypes: frozenset[str]


def _event(
    e: AuditEvent,
    where: ChainSource,
    *,
    patient: str,
    profile: str | None,
    type_: dict[str, str],
    subtypes: Sequence[dict[str, str]],
    action: str,
    outcome: str,
    agents: list[dict[str, Any]],
    entities: list[dict[str, Any]],
    outcome_desc: str | None = None,
    purpose: dict[str, str] | None = None,
) -> MappedEvent:
    resource: dict[str, Any] = {
        "resourceType": RESOURCE,
        "id": audit_event_id(e.block_number, e.log_index),
    }
    if profile is not None:
        resource["meta"] = {"profile": [profile]}
    resource |= {
        "type": type_,
        "subtype": list(subtypes),
        "action": action,
        "recorded": instant(e.timestamp),
        "outcome": outcome,
    }
    if outcome_desc:
        resource["outcomeDesc"] = outcome_desc
    if purpose is not None:
        resource["purposeOfEvent"] = [{"coding": [purpose]}]
    resource["agent"] = agents
    resource["source"] = _source(e, where)
    resource["entity"] = [_patient_entity(patient), *entities, _tx_entity(e)]
    codings = frozenset((c["system"], c["code"]) for c in (type_, *subtypes))
    return MappedEvent(
        resource,
        patient,
        e.timestamp,
        e.block_number,
        e.log_index,
        outcome,
        action,
        codings,
        frozenset(c["code"] for c in subtypes),
    )


_BASIS_NAMES = {b.value: b.name.lower() for b in AccessBasis}


def _access(e: AuditEvent, where: ChainSource) -> MappedEvent:
    a = e.args
    patient, actor, hospital = a["patient"], a["actor"], a["hospital"]
    basis = int(a["basis"])
    granted = bool(a["granted"])
    record = _data_entity(
        _record(_raw(a["recordId"])),
        details=[("access-basis", _BASIS_NAMES.get(basis, str(basis)))],
    )
    reader_kind = "Patient" if actor == patient else "Practitioner"
    reader = _who(reader_kind, actor)
    node = _who("Organization", hospital, "serving member hospital")
    if granted and basis == AccessBasis.BREAK_GLASS:
        agents = [
            _agent(SOURCE_ROLE, node, requestor=False),
            _agent(DESTINATION_ROLE, reader, requestor=True, purpose=BTG),
            _agent(RECORD_KEEPER, node, requestor=False),
        ]
        return _event(
            e,
            where,
            patient=patient,
            profile=PROFILE_DISCLOSURE,
            type_=EXPORT,
            subtypes=[DISCLOSE, READ],
            action="R",
            outcome=SUCCESS,
            agents=agents,
            entities=[record],
            purpose=BTG,
            outcome_desc="read under break-glass (no patient consent)",
        )
    purpose = PATRQT if basis == AccessBasis.PATIENT else None
    agents = [
        _agent(DESTINATION_ROLE, reader, requestor=False),  # the client, a wallet session
        _agent(SOURCE_ROLE, node, requestor=False),  # the server
        _agent(RECIPIENT, reader, requestor=True, purpose=purpose),  # the user
    ]
    return _event(
        e,
        where,
        patient=patient,
        profile=PROFILE_READ if granted else None,
        type_=REST,
        subtypes=[READ],
        action="R",
        outcome=SUCCESS if granted else DENIED,
        agents=agents,
        entities=[record],
        outcome_desc=None if granted else "denied: no consent, break-glass or ownership",
    )


def _break_glass(e: AuditEvent, where: ChainSource) -> MappedEvent:
    a = e.args
    patient, clinician, hospital = a["patient"], a["clinician"], a["hospital"]
    record = _data_entity(
        _record(_raw(a["recordId"])),
        details=[
            ("expiresAt", instant(int(a["expiresAt"]))),
            ("reasonHash", "0x" + _raw(a["reasonHash"]).hex()),
        ],
    )
    agents = [
        _agent(SOURCE_ROLE, _who("Organization", hospital, "opened by"), requestor=True),
        _agent(DESTINATION_ROLE, _who("Practitioner", clinician), requestor=False, purpose=BTG),
        _agent(RECORD_KEEPER, _who("Organization", hospital), requestor=False),
    ]
    return _event(
        e,
        where,
        patient=patient,
        profile=PROFILE_DISCLOSURE,
        type_=EXPORT,
        subtypes=[DISCLOSE],
        action="R",
        outcome=SUCCESS,
        agents=agents,
        entities=[record],
        purpose=BTG,
        outcome_desc="break-glass opened: emergency access without the patient's consent",
    )


def _anchored(e: AuditEvent, where: ChainSource) -> MappedEvent:
    a = e.args
    hospital = a["hospital"]
    record = _data_entity(
        _record(_raw(a["recordId"])), details=[("batchId", str(int(a["batchId"])))]
    )
    agents = [
        _agent(SOURCE_ROLE, _who("Organization", hospital), requestor=False),
        _agent(DESTINATION_ROLE, {"display": e.contract}, requestor=False),
        _agent(CUSTODIAN, _who("Organization", hospital, "anchoring hospital"), requestor=True),
    ]
    return _event(
        e,
        where,
        patient=a["patient"],
        profile=PROFILE_CREATE,
        type_=REST,
        subtypes=[CREATE],
        action="C",
        outcome=SUCCESS,
        agents=agents,
        entities=[record],
    )


def _consent_change(
    e: AuditEvent, where: ChainSource, granted_ids: dict[tuple[Any, ...], str]
) -> MappedEvent:
    a = e.args
    patient = a["patient"]
    scope = _raw(a["scope"])
    details = [("scopeKind", str(int(a["scopeKind"]))), ("scope", "0x" + scope.hex())]
    if "expiresAt" in a:
        details.append(("expiresAt", instant(int(a["expiresAt"]))))
    if e.event.startswith("Class"):
        key: tuple[Any, ...] = (
            patient,
            "class",
            int(a["hospital"]),
            int(a["roles"]),
            int(a["scopeKind"]),
            scope,
        )
        what: dict[str, Any] = {
            "identifier": {
                "system": CLASS_CONSENT_SYSTEM,
                "value": ":".join(
                    [str(int(a["hospital"])), str(int(a["roles"])), str(int(a["scopeKind"]))]
                )
                + ":0x"
                + scope.hex(),
            }
        }
    else:
        key = (patient, a["grantee"], int(a["scopeKind"]), scope)
        details.append(("grantee", a["grantee"]))
        if e.event == "ConsentGranted":
            granted_ids[key] = consent_id(patient, e.block_number, e.log_index)
        known = granted_ids.get(key)
        what = {"reference": f"Consent/{known}"} if known else {"display": "an earlier consent"}
    created = e.event.endswith("Granted")
    agents = [
        _agent(SOURCE_ROLE, {"display": "relaying node"}, requestor=False),
        _agent(DESTINATION_ROLE, {"display": e.contract}, requestor=False),
        _agent(AUTHOR, _who("Patient", patient, "signed by the patient"), requestor=True),
    ]
    return _event(
        e,
        where,
        patient=patient,
        profile=PROFILE_CREATE if created else PROFILE_UPDATE,
        type_=REST,
        subtypes=[CREATE if created else UPDATE],
        action="C" if created else "U",
        outcome=SUCCESS,
        agents=agents,
        entities=[_data_entity(what, details=details)],
    )


def to_audit_events(events: Iterable[AuditEvent], where: ChainSource) -> list[MappedEvent]:
    """Map the chain's events (any order) to AuditEvents, in chain order; events without a
    patient (BatchAnchored) are left out."""
    out: list[MappedEvent] = []
    granted_ids: dict[tuple[Any, ...], str] = {}
    for e in sorted(events, key=lambda x: (x.block_number, x.log_index)):
        if e.event == "AccessRecorded":
            out.append(_access(e, where))
        elif e.event == "BreakGlassOpened":
            out.append(_break_glass(e, where))
        elif e.event == "RecordAnchored":
            out.append(_anchored(e, where))
        elif e.event in (
            "ConsentGranted",
            "ConsentRevoked",
            "ClassConsentGranted",
            "ClassConsentRevoked",
        ):
            out.append(_consent_change(e, where, granted_ids))
    return out


# -- search ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AuditFilter:
    """Filters applied after mapping (patient, record and agent go to the chain query)."""

    since: int | None = None  # inclusive
    until: int | None = None  # exclusive
    codings: tuple[tuple[str | None, str], ...] = ()  # type: any of (system or None, code)
    subtypes: tuple[tuple[str | None, str], ...] = ()
    outcomes: tuple[str, ...] = ()
    actions: tuple[str, ...] = ()

    def matches(self, m: MappedEvent) -> bool:
        if self.since is not None and m.timestamp < self.since:
            return False
        if self.until is not None and m.timestamp >= self.until:
            return False
        if self.codings and not any(_token_hit(t, m.codings) for t in self.codings):
            return False
        if self.subtypes and not any(
            _token_hit(t, m.codings) and t[1] in m.subtypes for t in self.subtypes
        ):
            return False
        if self.outcomes and m.outcome not in self.outcomes:
            return False
        return not self.actions or m.action in self.actions


def _token_hit(token: tuple[str | None, str], codings: frozenset[tuple[str, str]]) -> bool:
    system, code = token
    return any(c == code and (system is None or s == system) for s, c in codings)


SEARCH_PARAMS = frozenset(
    {
        "patient",
        "entity",
        "agent",
        "date",
        "type",
        "subtype",
        "outcome",
        "action",
        "_id",
        "_count",
        "_sort",
        "_getpagesoffset",
        "_format",
    }
)
_PARTIES = ("Practitioner", "Organization", "Patient", "Device")


@dataclass(frozen=True)
class AuditSearch:
    patient: str | None
    record_id: bytes | None
    agent: str | None
    filter: AuditFilter
    ids: tuple[str, ...]
    newest_first: bool


def _tokens(name: str, value: str) -> tuple[tuple[str | None, str], ...]:
    out = []
    for part in value.split(","):
        system, code = split_token(part)
        if not code:
            raise param_error(name, "system|code or code")
        out.append((system or None, code))
    return tuple(out)


def parse_audit_search(params: Sequence[tuple[str, str]]) -> AuditSearch:
    """AuditEvent search parameters (400 for unknown ones or bad values)."""
    one, since, until = collect_search(params, SEARCH_PARAMS, "date")
    patient = agent = None
    record: bytes | None = None
    if "patient" in one:
        patient = parse_party(one["patient"], ("Patient",))
        if patient is None:
            raise param_error("patient", "Patient/<wallet address>")
    if "agent" in one:
        agent = parse_party(one["agent"], _PARTIES)
        if agent is None:
            raise param_error("agent", "Practitioner|Organization|Patient/<wallet address>")
    if "entity" in one:
        value = one["entity"]
        if "/" in value and not value.startswith("DocumentReference/"):
            raise param_error("entity", "DocumentReference/<record id>")
        record = parse_record_reference(value)
        if record is None:
            raise param_error("entity", "DocumentReference/<record id> (64 hex digits)")
    outcomes = (
        tuple(o.rpartition("|")[2] for o in one["outcome"].split(",")) if "outcome" in one else ()
    )
    if any(o not in (SUCCESS, DENIED, "8", "12") for o in outcomes):
        raise param_error("outcome", "0, 4, 8 or 12")
    actions = tuple(one["action"].split(",")) if "action" in one else ()
    if any(a not in ("C", "R", "U", "D", "E") for a in actions):
        raise param_error("action", "C, R, U, D or E")
    sort = one.get("_sort", "-date")
    if sort not in ("date", "-date"):
        raise param_error("_sort", "date or -date")
    return AuditSearch(
        patient=patient,
        record_id=record,
        agent=agent,
        filter=AuditFilter(
            since=since,
            until=until,
            codings=_tokens("type", one["type"]) if "type" in one else (),
            subtypes=_tokens("subtype", one["subtype"]) if "subtype" in one else (),
            outcomes=outcomes,
            actions=actions,
        ),
        ids=tuple(v for v in one.get("_id", "").split(",") if v),
        newest_first=sort == "-date",
    )
