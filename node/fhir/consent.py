"""FHIR Consent as a view of the node's signed address consents (ConsentRegistry).

The authority is the patient's EIP-712 signature over a ``Grant`` (or ``Revoke``): it
travels with the resource in the ``eip712-signature`` extension, and every field of the
resource that carries meaning (patient, grantee, scope, expiry, status) must say exactly
what the signed message says; a resource that claims more, or something else, is refused
(422). Nothing else in the resource is trusted.

Mapping (docs/fhir.md, "Consent"):

- ``patient``: ``Patient/<address>`` or an identifier ``urn:emr-node:wallet|<address>``.
- ``provision.actor[0].reference``: the grantee, ``Practitioner/<address>``,
  ``Organization/<address>`` or an identifier in ``urn:emr-node:wallet``.
- scope: ``provision.data[0].reference`` = ``DocumentReference/<record id>`` (record),
  ``provision.code`` ``urn:emr-node:category|<name>`` or ``urn:emr-node:category-hash|<0x..>``
  (category), neither (every record of the patient).
- ``provision.period.end``: ``expiresAt`` to the second.
- ``provision.type`` ``deny`` and nested provisions are refused: the node's consents are
  permit-only (a permit is withdrawn by revoking it).

Read side: each ``ConsentGranted`` event is one Consent, id
``<patient hex>-<block>-<log index>``; it is ``active`` until a later ``ConsentRevoked`` or
``ConsentGranted`` of the same (patient, grantee, scope) ends it or ``expiresAt`` passes.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime
from typing import Any, Literal

from eth_utils import to_checksum_address
from fhir.resources.R4B.consent import Consent
from fhir.resources.R4B.reference import Reference
from pydantic import ValidationError

from node.api.schemas.common import to_bytes
from node.api.schemas.consent import GrantIn, RevokeIn
from node.chain.models import AuditEvent, ConsentGrant, ConsentRevoke
from node.consent.typed_data import EIP712_DOMAIN_TYPE, PRIMARY_TYPES, ScopeKind, category_hash
from node.fhir.common import (
    CATEGORY_SYSTEM,
    WALLET_SYSTEM,
    Capability,
    FhirError,
    Issue,
    SearchParam,
    extension_url,
    invalid_resource,
    param_error,
    register,
)
from node.fhir.documents import collect_search, fhir_id
from node.fhir.documents import instant as _instant_of

RESOURCE = "Consent"
SIGNATURE_EXTENSION = extension_url("eip712-signature")
TYPED_DATA = "typedData"  # sub-extension: valueString, the eth_signTypedData_v4 JSON
SIGNATURE = "signature"  # sub-extension: valueString, 0x + 65 bytes hex
CATEGORY_HASH_SYSTEM = "urn:emr-node:category-hash"  # keccak256(category name), 0x-hex
TX_SYSTEM = "urn:emr-node:chain-tx"  # identifier of the transaction that recorded the grant

CONSENT_SCOPE = {
    "system": "http://terminology.hl7.org/CodeSystem/consentscope",
    "code": "patient-privacy",
    "display": "Privacy Consent",
}
CONSENT_CATEGORY = {"system": "http://loinc.org", "code": "59284-0", "display": "Patient Consent"}
POLICY_RULE = {
    "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
    "code": "OPTIN",
    "display": "opt-in",
}
ACTION_SYSTEM = "http://terminology.hl7.org/CodeSystem/consentaction"
ACTOR_ROLE = {
    "system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType",
    "code": "IRCP",
    "display": "information recipient",
}
GRANTEE_TYPES = ("Practitioner", "Organization")
_READ_ACTIONS = frozenset({"access", "use"})  # what a grant permits: reading the records
_ZERO32 = b"\x00" * 32

ConsentStatus = Literal["active", "inactive"]


def _unprocessable(diagnostics: str, *expression: str, code: str = "business-rule") -> FhirError:
    return FhirError(422, code, diagnostics, expression=expression)


def _bad(diagnostics: str, *expression: str) -> FhirError:
    return FhirError(400, "invalid", diagnostics, expression=expression)


LAST_INSTANT = 253402300799  # 9999-12-31T23:59:59Z: the last instant FHIR can write


def instant(seconds: int) -> str:
    """Unix seconds as a FHIR instant; a signed expiry past year 9999 (uint64 allows it:
    "forever") is shown as the last instant FHIR can write."""
    return _instant_of(max(0, min(seconds, LAST_INSTANT)))


# -- ids --------------------------------------------------------------------------------------

_ID = re.compile(r"^([0-9a-fA-F]{40})-([0-9]{1,18})-([0-9]{1,9})$")
_HEX64 = re.compile(r"^(?:0x)?([0-9a-fA-F]{64})$")
_ADDRESS = re.compile(r"^0x[0-9a-fA-F]{40}$")


def consent_id(patient: str, block_number: int, log_index: int) -> str:
    """The resource id of the grant logged at (block, log index) for ``patient``."""
    return f"{patient[2:].lower()}-{block_number}-{log_index}"


def parse_consent_id(value: str) -> tuple[str, int, int] | None:
    """(patient, block, log index) of a Consent id; None if it is not one of ours."""
    m = _ID.fullmatch(value)
    if m is None:
        return None
    return to_checksum_address("0x" + m.group(1)), int(m.group(2)), int(m.group(3))


def parse_record_reference(value: str) -> bytes | None:
    """``DocumentReference/<id>`` or a bare id (with or without 0x) as 32 bytes."""
    m = _HEX64.fullmatch(value.removeprefix("DocumentReference/"))
    return bytes.fromhex(m.group(1)) if m else None


def parse_wallet(value: str) -> str | None:
    """A wallet address in any case (checksum checked when mixed) or None."""
    if not _ADDRESS.fullmatch(value):
        return None
    digits = value[2:]
    checksummed = to_checksum_address(value)
    if digits not in (digits.lower(), digits.upper()) and checksummed != value:
        return None
    return checksummed


def parse_party(value: str, types: Sequence[str]) -> str | None:
    """A search or reference value naming a wallet: ``<Type>/<address>`` (one of ``types``),
    ``urn:emr-node:wallet|<address>`` or a bare address."""
    if value.startswith(WALLET_SYSTEM + "|"):
        return parse_wallet(value[len(WALLET_SYSTEM) + 1 :])
    kind, sep, rest = value.rpartition("/")
    if sep:
        return parse_wallet(rest) if kind.rsplit("/", 1)[-1] in types else None
    return parse_wallet(value)


def reference_wallet(ref: Reference | None, types: Sequence[str], where: str) -> str:
    """The wallet a Reference names (by ``reference`` or by a wallet identifier); 422 if it
    names something else, or both ways and they differ."""
    if ref is None:
        raise _unprocessable(f"{where} is required", where)
    found: list[str] = []
    if ref.reference is not None:
        wallet = parse_party(ref.reference, types)
        if wallet is None or "/" not in ref.reference:
            raise _unprocessable(
                f"{where}.reference must be {' or '.join(types)}/<wallet address>",
                f"{where}.reference",
            )
        found.append(wallet)
    if ref.identifier is not None:
        ident = ref.identifier
        wallet = parse_wallet(ident.value or "") if ident.system == WALLET_SYSTEM else None
        if wallet is None:
            raise _unprocessable(
                f"{where}.identifier must be system {WALLET_SYSTEM} with a wallet address",
                f"{where}.identifier",
            )
        found.append(wallet)
    if ref.type is not None and ref.type not in types:
        raise _unprocessable(f"{where}.type must be one of {', '.join(types)}", f"{where}.type")
    if not found:
        raise _unprocessable(f"{where} must name a wallet (reference or identifier)", where)
    if len(set(found)) > 1:
        raise _unprocessable(f"{where}.reference and .identifier name different wallets", where)
    return found[0]


# -- the signed part ----------------------------------------------------------------------------


@dataclass(frozen=True)
class SignedConsent:
    """The extension's content: what the patient's wallet signed."""

    primary_type: str  # Grant | Revoke
    message: dict[str, Any]  # as signed, with scope 0x-hex
    signature: bytes
    domain: dict[str, Any] | None


def signed_part(consent: Consent) -> SignedConsent:
    """The ``eip712-signature`` extension: typed data (``eth_signTypedData_v4`` JSON:
    ``primaryType``, ``domain``, ``message``, optionally ``types``) and the signature."""
    found = [e for e in consent.extension or [] if e.url == SIGNATURE_EXTENSION]
    if len(found) != 1:
        raise _unprocessable(
            f"exactly one extension {SIGNATURE_EXTENSION} must carry the patient's EIP-712 "
            "signature and typed data (the signature is the authority, not the resource)",
            "Consent.extension",
            code="required",
        )
    parts: dict[str, str] = {}
    for sub in found[0].extension or []:
        if sub.url in (TYPED_DATA, SIGNATURE):
            if sub.url in parts or not isinstance(sub.valueString, str):
                raise _bad(
                    f"{sub.url}: one valueString is required", f"Consent.extension.{sub.url}"
                )
            parts[sub.url] = sub.valueString
    for name in (TYPED_DATA, SIGNATURE):
        if name not in parts:
            raise FhirError(
                422,
                "required",
                f"the {SIGNATURE_EXTENSION} extension needs a '{name}' sub-extension",
                expression=(f"Consent.extension.{name}",),
            )
    try:
        typed = json.loads(parts[TYPED_DATA])
    except ValueError:
        raise _bad("typedData is not JSON", "Consent.extension.typedData") from None
    if not isinstance(typed, dict):
        raise _bad("typedData must be a JSON object", "Consent.extension.typedData")
    primary = typed.get("primaryType")
    if primary not in ("Grant", "Revoke"):
        raise _unprocessable(
            "typedData.primaryType must be Grant or Revoke (reader-class consents are served "
            "by /consents/class-grants)",
            "Consent.extension.typedData",
        )
    types = typed.get("types")
    if types is not None and (
        not isinstance(types, dict)
        or types.get(primary) != PRIMARY_TYPES[primary]
        or types.get("EIP712Domain", EIP712_DOMAIN_TYPE) != EIP712_DOMAIN_TYPE
    ):
        raise _unprocessable(
            f"typedData.types is not this node's {primary} (GET /consents/typed-data)",
            "Consent.extension.typedData",
        )
    dom = typed.get("domain")
    if dom is not None and not isinstance(dom, dict):
        raise _bad("typedData.domain must be an object", "Consent.extension.typedData")
    message = typed.get("message")
    schema = GrantIn if primary == "Grant" else RevokeIn
    try:
        parsed = schema.model_validate(message)
    except ValidationError as err:
        first = err.errors(include_input=False, include_url=False)[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        raise _bad(
            f"typedData.message {where}: {first.get('msg', 'invalid')}".replace(" :", ":"),
            "Consent.extension.typedData",
        ) from None
    sig = parts[SIGNATURE]
    if not re.fullmatch(r"0x[0-9a-fA-F]{130}", sig):
        raise _bad(
            "signature must be 0x followed by 65 bytes in hex", "Consent.extension.signature"
        )
    return SignedConsent(primary, parsed.model_dump(), bytes.fromhex(sig[2:]), dom)


# -- what the resource states ---------------------------------------------------------------------


@dataclass(frozen=True)
class ConsentTerms:
    """What a FHIR Consent says, in the node's terms."""

    status: str | None
    patient: str
    grantee: str
    scope_kind: ScopeKind
    scope: bytes
    expires_at: int | None  # provision.period.end, to the second
    starts_at: int | None


def _instant(value: datetime | date | None, where: str) -> int | None:
    if value is None:
        return None
    if not isinstance(value, datetime):
        raise _unprocessable(f"{where} must be a dateTime to the second with a time zone", where)
    if value.tzinfo is None:
        raise _unprocessable(f"{where} needs a time zone (e.g. Z)", where)
    if value.microsecond:
        raise _unprocessable(f"{where}: the signed expiry has whole seconds", where)
    return int(value.timestamp())


def _scope_of(provision: Any) -> tuple[ScopeKind, bytes]:
    data = provision.data or []
    codes = provision.code or []
    if data and codes:
        raise _unprocessable(
            "provision.data (one record) and provision.code (a category) cannot both be given: "
            "a consent covers one record, one category or everything",
            "Consent.provision",
        )
    if data:
        if len(data) != 1:
            raise _unprocessable(
                "provision.data must name exactly one record", "Consent.provision.data"
            )
        entry = data[0]
        if entry.meaning not in (None, "instance"):
            raise _unprocessable(
                "provision.data.meaning must be 'instance' (the record itself)",
                "Consent.provision.data.meaning",
            )
        ref = entry.reference.reference if entry.reference is not None else None
        rid = (
            parse_record_reference(ref or "")
            if ref and ref.startswith("DocumentReference/")
            else None
        )
        if rid is None:
            raise _unprocessable(
                "provision.data.reference must be DocumentReference/<record id>",
                "Consent.provision.data.reference",
            )
        return ScopeKind.RECORD, rid
    if codes:
        hashes: set[bytes] = set()
        for concept in codes:
            for coding in concept.coding or []:
                if coding.system == CATEGORY_SYSTEM and coding.code:
                    hashes.add(category_hash(coding.code))
                elif coding.system == CATEGORY_HASH_SYSTEM and coding.code:
                    m = _HEX64.fullmatch(coding.code)
                    if m is None or not coding.code.startswith("0x"):
                        raise _unprocessable(
                            f"{CATEGORY_HASH_SYSTEM} codes are 0x + 64 hex digits",
                            "Consent.provision.code",
                        )
                    hashes.add(bytes.fromhex(m.group(1)))
                else:
                    raise _unprocessable(
                        f"provision.code codings must be {CATEGORY_SYSTEM}|<category> or "
                        f"{CATEGORY_HASH_SYSTEM}|<keccak256>",
                        "Consent.provision.code",
                    )
        if len(hashes) != 1:
            raise _unprocessable(
                "provision.code must name exactly one category", "Consent.provision.code"
            )
        return ScopeKind.CATEGORY, hashes.pop()
    return ScopeKind.ALL, _ZERO32


def _refuse_unsupported(provision: Any) -> None:
    if provision.type == "deny" or any(
        p.type == "deny" for p in _nested(provision.provision or [])
    ):
        raise FhirError(
            422,
            "not-supported",
            "deny provisions are not supported: the node's consents are permit-only "
            "(ConsentRegistry). To withdraw a permit, revoke it: PUT the Consent with status "
            "inactive and the patient's signed Revoke",
            expression=("Consent.provision.type",),
        )
    if provision.provision:
        raise _unprocessable(
            "nested provisions are not supported: one permit provision per Consent",
            "Consent.provision.provision",
            code="not-supported",
        )
    unsupported = {
        "securityLabel": provision.securityLabel,
        "purpose": provision.purpose,
        "class": provision.class_fhir,
        "dataPeriod": provision.dataPeriod,
    }
    for name, value in unsupported.items():
        if value:
            raise _unprocessable(
                f"provision.{name} is not supported: the signed consent cannot express it, and "
                "a resource may not claim more than its signature",
                f"Consent.provision.{name}",
                code="not-supported",
            )
    for concept in provision.action or []:
        for coding in concept.coding or []:
            if coding.system != ACTION_SYSTEM or coding.code not in _READ_ACTIONS:
                raise _unprocessable(
                    f"provision.action may only be {ACTION_SYSTEM}|access (a consent permits "
                    "reading)",
                    "Consent.provision.action",
                    code="not-supported",
                )


def _nested(provisions: Iterable[Any]) -> Iterable[Any]:
    for p in provisions:
        yield p
        yield from _nested(p.provision or [])


def terms_of(consent: Consent) -> ConsentTerms:
    """The Consent's meaning in the node's terms; 422 for what the node cannot honour
    exactly (deny, nested provisions, purposes, labels, several grantees)."""
    scope = consent.scope
    codings = (scope.coding or []) if scope is not None else []
    if not any(
        c.system == CONSENT_SCOPE["system"] and c.code == CONSENT_SCOPE["code"] for c in codings
    ):
        raise _unprocessable(
            f"scope must be {CONSENT_SCOPE['system']}|patient-privacy: the node's consents are "
            "privacy consents (who may read a patient's records)",
            "Consent.scope",
        )
    patient_ref = consent.patient
    if patient_ref is None:
        raise _unprocessable("patient is required", "Consent.patient", code="required")
    patient = reference_wallet(patient_ref, ("Patient",), "Consent.patient")
    provision = consent.provision
    if provision is None:
        raise _unprocessable(
            "provision is required: its actor is the grantee and its period the expiry",
            "Consent.provision",
            code="required",
        )
    _refuse_unsupported(provision)
    actors = provision.actor or []
    if len(actors) != 1:
        raise _unprocessable(
            "provision.actor must name exactly one grantee (one consent per reader)",
            "Consent.provision.actor",
        )
    grantee = reference_wallet(
        actors[0].reference, GRANTEE_TYPES, "Consent.provision.actor[0].reference"
    )
    kind, scope_value = _scope_of(provision)
    period = provision.period
    expires = _instant(period.end, "Consent.provision.period.end") if period else None
    starts = _instant(period.start, "Consent.provision.period.start") if period else None
    return ConsentTerms(consent.status, patient, grantee, kind, scope_value, expires, starts)


def parse_consent(data: dict[str, Any]) -> Consent:
    """A request body as an R4B Consent (400 with the validator's messages)."""
    try:
        return Consent.model_validate(data)
    except ValidationError as err:
        raise invalid_resource(err, "Consent") from None


def _compare(
    issues: list[Issue],
    name: str,
    resource: object,
    signed: object,
    where: str,
    *,
    against: str = "the signed typed data",
) -> None:
    if resource != signed:
        issues.append(
            Issue(
                "business-rule",
                f"{name}: the resource says {resource}, {against} says {signed}",
                "error",
                (where,),
            )
        )


def _scope_text(kind: ScopeKind, scope: bytes) -> str:
    return f"{kind.name.lower()} 0x{scope.hex()}"


def _check_agrees(terms: ConsentTerms, message: dict[str, Any], *, expiry: bool) -> None:
    issues: list[Issue] = []
    _compare(issues, "patient", terms.patient, message["patient"], "Consent.patient")
    _compare(
        issues, "grantee", terms.grantee, message["grantee"], "Consent.provision.actor[0].reference"
    )
    _compare(
        issues,
        "scope",
        _scope_text(terms.scope_kind, terms.scope),
        _scope_text(ScopeKind(message["scopeKind"]), to_bytes(message["scope"])),
        "Consent.provision",
    )
    if expiry:
        if terms.expires_at is None:
            issues.append(
                Issue(
                    "required",
                    "provision.period.end must state the signed expiresAt",
                    "error",
                    ("Consent.provision.period.end",),
                )
            )
        else:
            _compare(
                issues,
                "expiry (unix seconds)",
                terms.expires_at,
                message["expiresAt"],
                "Consent.provision.period.end",
            )
    if issues:
        raise FhirError(422, "business-rule", issues[0].diagnostics, issues=issues)


def grant_of(consent: Consent, now: int) -> tuple[ConsentGrant, SignedConsent]:
    """The signed Grant behind a Consent to create, after checking that the resource says
    exactly what the patient signed (422 listing every disagreement)."""
    if consent.id is not None:
        raise _bad("a Consent to create has no id (the node assigns it)", "Consent.id")
    if consent.status != "active":
        raise _unprocessable(
            "status must be 'active': a signed Grant takes effect when relayed", "Consent.status"
        )
    signed = signed_part(consent)
    if signed.primary_type != "Grant":
        raise _unprocessable(
            "creating a Consent needs a signed Grant (a Revoke goes with PUT, status inactive)",
            "Consent.extension.typedData",
        )
    terms = terms_of(consent)
    _check_agrees(terms, signed.message, expiry=True)
    if terms.starts_at is not None and terms.starts_at > now + 60:
        raise _unprocessable(
            "provision.period.start is in the future: a signed Grant takes effect when relayed",
            "Consent.provision.period.start",
        )
    m = signed.message
    grant = ConsentGrant(
        m["patient"],
        m["grantee"],
        ScopeKind(m["scopeKind"]),
        to_bytes(m["scope"]),
        m["expiresAt"],
        m["nonce"],
        m["deadline"],
    )
    return grant, signed


def revoke_of(
    consent: Consent, current: ConsentState, resource_id: str
) -> tuple[ConsentRevoke, SignedConsent]:
    """The signed Revoke behind a PUT of ``current`` with status inactive; the resource and
    the Revoke must both describe ``current``'s (patient, grantee, scope)."""
    if consent.id is not None and consent.id != resource_id:
        raise _bad(f"the body's id {consent.id} is not the URL's {resource_id}", "Consent.id")
    if consent.status != "inactive":
        raise _unprocessable(
            "an update may only set status 'inactive', with the patient's signed Revoke: "
            "a consent's terms are its signature's and never change",
            "Consent.status",
        )
    signed = signed_part(consent)
    if signed.primary_type != "Revoke":
        raise _unprocessable(
            "setting status inactive needs a signed Revoke", "Consent.extension.typedData"
        )
    terms = terms_of(consent)
    _check_agrees(terms, signed.message, expiry=False)
    stored = {
        "patient": current.patient,
        "grantee": current.grantee,
        "scopeKind": int(current.scope_kind),
        "scope": "0x" + current.scope.hex(),
    }
    issues: list[Issue] = []
    for key, value in stored.items():
        _compare(
            issues,
            f"signed Revoke {key}",
            signed.message[key],
            value,
            "Consent.extension.typedData",
            against=f"Consent/{resource_id}",
        )
    if terms.expires_at is not None:
        _compare(
            issues,
            "expiry (unix seconds)",
            terms.expires_at,
            current.expires_at,
            "Consent.provision.period.end",
            against=f"Consent/{resource_id}",
        )
    if issues:
        raise FhirError(422, "business-rule", issues[0].diagnostics, issues=issues)
    m = signed.message
    revoke = ConsentRevoke(
        m["patient"],
        m["grantee"],
        ScopeKind(m["scopeKind"]),
        to_bytes(m["scope"]),
        m["nonce"],
        m["deadline"],
    )
    return revoke, signed


# -- state from the chain's events -------------------------------------------------------------


@dataclass(frozen=True)
class ConsentState:
    """One ``ConsentGranted`` event and what became of it."""

    patient: str
    grantee: str
    scope_kind: ScopeKind
    scope: bytes
    expires_at: int
    granted_at: int  # block time
    block_number: int
    log_index: int
    tx_hash: bytes
    ended_by: Literal["revoked", "superseded"] | None = None
    ended_at: int | None = None
    ended_tx: bytes | None = None

    @property
    def id(self) -> str:
        return consent_id(self.patient, self.block_number, self.log_index)

    def status(self, now: int) -> ConsentStatus:
        return "active" if self.ended_by is None and self.expires_at > now else "inactive"

    def why_inactive(self, now: int) -> str | None:
        if self.ended_by is not None:
            return self.ended_by
        return "expired" if self.expires_at <= now else None

    @property
    def key(self) -> tuple[str, str, int, bytes]:
        return self.patient, self.grantee, int(self.scope_kind), self.scope


def _key(args: dict[str, Any]) -> tuple[str, str, int, bytes]:
    scope = args["scope"]
    raw = bytes(scope) if not isinstance(scope, str) else to_bytes(scope)
    return args["patient"], args["grantee"], int(args["scopeKind"]), raw


def consent_states(events: Iterable[AuditEvent]) -> list[ConsentState]:
    """Replay grants and revocations (chain order) into one state per grant."""
    states: list[ConsentState] = []
    latest: dict[tuple[str, str, int, bytes], int] = {}  # key -> index of its newest grant
    for e in sorted(events, key=lambda x: (x.block_number, x.log_index)):
        if e.event not in ("ConsentGranted", "ConsentRevoked"):
            continue
        key = _key(e.args)
        previous = latest.get(key)
        if previous is not None and states[previous].ended_by is None:
            ended = "revoked" if e.event == "ConsentRevoked" else "superseded"
            states[previous] = replace(
                states[previous], ended_by=ended, ended_at=e.timestamp, ended_tx=e.tx_hash
            )
        if e.event == "ConsentGranted":
            latest[key] = len(states)
            states.append(
                ConsentState(
                    patient=key[0],
                    grantee=key[1],
                    scope_kind=ScopeKind(key[2]),
                    scope=key[3],
                    expires_at=int(e.args["expiresAt"]),
                    granted_at=e.timestamp,
                    block_number=e.block_number,
                    log_index=e.log_index,
                    tx_hash=e.tx_hash,
                )
            )
    return states


# -- the resource -------------------------------------------------------------------------------


def _wallet_identifier(address: str) -> dict[str, str]:
    return {"system": WALLET_SYSTEM, "value": address}


def to_fhir(state: ConsentState, now: int, *, organizations: frozenset[str]) -> dict[str, Any]:
    """The Consent resource of one grant; ``organizations``: addresses of member hospitals
    (a grantee among them is an Organization, any other a Practitioner)."""
    grantee_type = "Organization" if state.grantee in organizations else "Practitioner"
    provision: dict[str, Any] = {
        "type": "permit",
        "period": {"start": instant(state.granted_at), "end": instant(state.expires_at)},
        "actor": [
            {
                "role": {"coding": [ACTOR_ROLE]},
                "reference": {
                    "reference": f"{grantee_type}/{state.grantee}",
                    "type": grantee_type,
                    "identifier": _wallet_identifier(state.grantee),
                },
            }
        ],
        "action": [{"coding": [{"system": ACTION_SYSTEM, "code": "access"}]}],
    }
    if state.scope_kind is ScopeKind.RECORD:
        provision["data"] = [
            {
                "meaning": "instance",
                "reference": {"reference": f"DocumentReference/{fhir_id(state.scope)}"},
            }
        ]
    elif state.scope_kind is ScopeKind.CATEGORY:
        provision["code"] = [
            {"coding": [{"system": CATEGORY_HASH_SYSTEM, "code": "0x" + state.scope.hex()}]}
        ]
    status = state.status(now)
    updated = state.ended_at if state.ended_at is not None else state.granted_at
    resource: dict[str, Any] = {
        "resourceType": "Consent",
        "id": state.id,
        "meta": {"versionId": "2" if state.ended_by else "1", "lastUpdated": instant(updated)},
        "identifier": [{"system": TX_SYSTEM, "value": "0x" + state.tx_hash.hex()}],
        "status": status,
        "scope": {"coding": [CONSENT_SCOPE]},
        "category": [{"coding": [CONSENT_CATEGORY]}],
        "patient": {
            "reference": f"Patient/{state.patient}",
            "identifier": _wallet_identifier(state.patient),
        },
        "dateTime": instant(state.granted_at),
        "performer": [
            {
                "reference": f"Patient/{state.patient}",
                "identifier": _wallet_identifier(state.patient),
            }
        ],
        "policyRule": {"coding": [POLICY_RULE]},
        "provision": provision,
    }
    why = state.why_inactive(now)
    if why is not None:
        resource["extension"] = [
            {"url": extension_url("consent-inactive-reason"), "valueCode": why}
        ]
        if state.ended_tx is not None:
            resource["extension"].append(
                {
                    "url": extension_url("consent-ended-by-tx"),
                    "valueString": "0x" + state.ended_tx.hex(),
                }
            )
    return resource


# -- search -------------------------------------------------------------------------------------

SEARCH_PARAMS = frozenset(
    {"patient", "actor", "status", "period", "_id", "_count", "_sort", "_getpagesoffset", "_format"}
)


@dataclass(frozen=True)
class ConsentSearch:
    patient: str | None = None
    actor: str | None = None
    status: ConsentStatus | None = None
    since: int | None = None  # the provision period overlaps [since, until)
    until: int | None = None
    ids: tuple[str, ...] = ()
    newest_first: bool = True

    def matches(self, state: ConsentState, now: int) -> bool:
        if self.status is not None and state.status(now) != self.status:
            return False
        if self.since is not None and state.expires_at < self.since:
            return False
        if self.until is not None and state.granted_at >= self.until:
            return False
        return not self.ids or state.id in self.ids


def parse_consent_search(params: Sequence[tuple[str, str]]) -> ConsentSearch:
    """Consent search parameters (400 for unknown ones or bad values)."""
    one, since, until = collect_search(params, SEARCH_PARAMS, "period")
    patient = actor = None
    if "patient" in one:
        patient = parse_party(one["patient"], ("Patient",))
        if patient is None:
            raise param_error("patient", "Patient/<wallet address>")
    if "actor" in one:
        actor = parse_party(one["actor"], GRANTEE_TYPES)
        if actor is None:
            raise param_error("actor", "Practitioner/<address>, Organization/<address>")
    status: ConsentStatus | None = None
    if "status" in one:
        value = one["status"]
        if value == "active":
            status = "active"
        elif value == "inactive":
            status = "inactive"
        else:
            raise param_error("status", "active or inactive")
    sort = one.get("_sort", "-date")
    if sort not in ("date", "-date"):
        raise param_error("_sort", "date or -date")
    ids = tuple(v for v in one.get("_id", "").split(",") if v)
    return ConsentSearch(patient, actor, status, since, until, ids, sort == "-date")


register(
    Capability(
        type=RESOURCE,
        interactions=("read", "search-type", "create", "update"),
        documentation=(
            "A view of the patient's EIP-712 signed consents (ConsentRegistry). Create: a "
            "Consent carrying the signed Grant in the eip712-signature extension; update: "
            "status inactive with the signed Revoke. The signature is the authority; the "
            "resource must agree with it. deny provisions are refused (permit-only)."
        ),
        search_params=(
            SearchParam("patient", "reference", "Patient/<wallet address>"),
            SearchParam("actor", "reference", "Practitioner|Organization/<wallet address>"),
            SearchParam("status", "token", "active | inactive (revoked, expired, superseded)"),
            SearchParam("period", "date", "provision.period overlaps; prefixes eq, ge, gt, le, lt"),
            SearchParam("_id", "token", "Consent ids, comma-separated"),
            SearchParam("_sort", "string", "date | -date (default -date)"),
        ),
    )
)
