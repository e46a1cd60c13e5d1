"""The off-chain signature check that guards the chain-down consent queue."""

import time

from eth_account import Account

from node.chain.deploy import Deployment
from node.chain.models import ConsentGrant
from node.client import Scope
from node.consent.typed_data import domain, full_message
from node.flows.relay_consent import _signed_by_patient


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
