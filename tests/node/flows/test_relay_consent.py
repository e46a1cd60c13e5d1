"""The off-chain signature check that guards the chain-down consent queue, and the queue
for reader-class consents."""

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from eth_account import Account

from node.chain.class_consents import ClassConsentGrant, ClassConsentRevoke
from node.chain.deploy import Deployment
from node.chain.exceptions import ChainUnavailable
from node.chain.models import ConsentGrant, TxResult
from node.client import Scope
from node.consent.relay_queue import ConsentRelayQueue
from node.consent.typed_data import domain, full_message
from node.exceptions import InvalidRequest
from node.flows.relay_consent import _signed_by_patient, drain_relays, relay_or_queue
from tests.storage.sql_fixtures import SQL_BACKENDS, SqlDatabases, sql_databases


class _Chain:
    """Only the deployment is read: the check must work without reaching the chain."""

    def __init__(self) -> None:
        self.deployment = Deployment(
            chain_id=31337,
            consortium="0x" + "01" * 20,
            record_registry="0x" + "02" * 20,
            consent_registry="0x" + "03" * 20,
            access_log="0x" + "04" * 20,
            block_number=1,
            deployer="0x" + "05" * 20,
            artifact_hashes={},
        )


def _grant(patient: str) -> ConsentGrant:
    scope = Scope.all()
    now = int(time.time())
    return ConsentGrant(
        patient, Account.create().address, scope.kind, scope.value, now + 60, 0, now + 60
    )


def test_only_the_patients_own_signature_passes() -> None:
    chain = _Chain()
    patient, other = Account.create(), Account.create()
    grant = _grant(patient.address)
    payload = full_message("Grant", grant.message(), domain(31337, "0x" + "03" * 20))
    good = Account.sign_typed_data(patient.key, full_message=payload).signature
    forged = Account.sign_typed_data(other.key, full_message=payload).signature
    wrong_chain = Account.sign_typed_data(
        patient.key,
        full_message=full_message("Grant", grant.message(), domain(1, "0x" + "03" * 20)),
    ).signature
    assert _signed_by_patient(grant, good, chain)  # type: ignore[arg-type]
    assert not _signed_by_patient(grant, forged, chain)  # type: ignore[arg-type]
    assert not _signed_by_patient(grant, wrong_chain, chain)  # type: ignore[arg-type]
    assert not _signed_by_patient(grant, b"\x00" * 10, chain)  # type: ignore[arg-type]


# -- reader-class consents --------------------------------------------------------------

_REGISTRY = "0x" + "03" * 20


def _class_grant(patient: str, *, roles: int = 0b1, hospital: int = 0) -> ClassConsentGrant:
    now = int(time.time())
    scope = Scope.category("lab")
    return ClassConsentGrant(
        patient, hospital, roles, scope.kind, scope.value, now + 3600, 0, now + 600
    )


def _sign(account: Account, kind: str, message: dict, chain_id: int = 31337) -> bytes:  # type: ignore[type-arg]
    payload = full_message(kind, message, domain(chain_id, _REGISTRY))
    return bytes(Account.sign_typed_data(account.key, full_message=payload).signature)


def test_class_consent_signatures_are_checked_off_chain() -> None:
    chain = _Chain()
    patient, other = Account.create(), Account.create()
    grant = _class_grant(patient.address)
    good = _sign(patient, "GrantClass", grant.message())
    assert _signed_by_patient(grant, good, chain)  # type: ignore[arg-type]
    # someone else's signature, another chain, or a widened class: refused
    assert not _signed_by_patient(grant, _sign(other, "GrantClass", grant.message()), chain)  # type: ignore[arg-type]
    assert not _signed_by_patient(grant, _sign(patient, "GrantClass", grant.message(), 1), chain)  # type: ignore[arg-type]
    nurses_too = ClassConsentGrant(**{**_fields(grant), "roles": 0b11})
    assert not _signed_by_patient(nurses_too, good, chain)  # type: ignore[arg-type]
    # a signature over another primary type (a Revoke of the same fields) is not a grant
    revoke = ClassConsentRevoke(
        grant.patient, grant.hospital, grant.roles, grant.scope_kind, grant.scope, 0, grant.deadline
    )
    revoke_sig = _sign(patient, "RevokeClass", revoke.message())
    assert _signed_by_patient(revoke, revoke_sig, chain)  # type: ignore[arg-type]
    assert not _signed_by_patient(grant, revoke_sig, chain)  # type: ignore[arg-type]


def _fields(grant: ClassConsentGrant) -> dict[str, object]:
    return {name: getattr(grant, name) for name in grant.__slots__}  # type: ignore[attr-defined]


class _DownThenUp(_Chain):
    """The chain is away until ``up`` is set; then it relays class consents."""

    def __init__(self) -> None:
        super().__init__()
        self.up = False
        self.sent: list[object] = []

    def _check(self) -> None:
        if not self.up:
            raise ChainUnavailable("away")

    def consent_domain(self) -> dict[str, object]:
        self._check()
        return {}

    def consent_nonce(self, patient: str) -> int:
        self._check()
        return 0

    def member_address(self, member_id: int) -> str | None:
        self._check()
        return "0x" + "0a" * 20 if member_id == 1 else None

    def grant_class_with_sig(self, grant: ClassConsentGrant, signature: bytes) -> TxResult:
        self._check()
        self.sent.append(grant)
        return TxResult(b"\x01" * 32, 7)


@pytest.fixture(params=SQL_BACKENDS)
def dbs(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SqlDatabases]:
    yield from sql_databases(request.param, tmp_path)


def test_class_consents_queue_while_the_chain_is_away_and_drain(dbs: SqlDatabases) -> None:
    chain = _DownThenUp()
    queue = ConsentRelayQueue(dbs.connect())
    try:
        patient = Account.create()
        grant = _class_grant(patient.address, roles=0b101, hospital=1)
        signature = _sign(patient, "GrantClass", grant.message())
        relay_id = relay_or_queue(grant, signature, chain=chain, queue=queue)  # type: ignore[arg-type]
        assert isinstance(relay_id, int)
        queued = queue.get(relay_id)
        assert queued is not None and queued.kind == "class-grant" and queued.consent == grant
        # a forged class consent is not queued
        forged = _sign(Account.create(), "GrantClass", grant.message())
        with pytest.raises(ChainUnavailable):
            relay_or_queue(grant, forged, chain=chain, queue=queue)  # type: ignore[arg-type]
        # an empty class is refused even while the chain is away
        empty = _class_grant(patient.address, roles=0)
        with pytest.raises(InvalidRequest, match="roles"):
            relay_or_queue(
                empty,
                _sign(patient, "GrantClass", empty.message()),
                chain=chain,  # type: ignore[arg-type]
                queue=queue,
            )
        assert queue.count() == 1
        chain.up = True
        assert drain_relays(chain=chain, queue=queue) == 1  # type: ignore[arg-type]
        done = queue.get(relay_id)
        assert done is not None and done.status == "relayed" and done.block_number == 7
        assert chain.sent == [grant]
        # an unknown member hospital is refused once the chain can say so
        unknown = _class_grant(patient.address, hospital=42)
        with pytest.raises(InvalidRequest, match="no member hospital has id 42"):
            relay_or_queue(
                unknown,
                _sign(patient, "GrantClass", unknown.message()),
                chain=chain,  # type: ignore[arg-type]
                queue=queue,
            )
    finally:
        queue.close()
