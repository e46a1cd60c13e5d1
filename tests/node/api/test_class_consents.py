"""Reader-class consents (GrantClass / RevokeClass) relayed by the node: the patient's
signature is the only authority, refusals change nothing on-chain, and a revoke ends the
consent from the next block on."""

from __future__ import annotations

import pytest
from eth_account import Account
from eth_utils import keccak

from node.client import ApiError, EmrClient, Scope
from node.consent.typed_data import PRIMARY_TYPES
from tests.node.conftest import RunningNode
from zk.credentials import roles_mask

PHYSICIAN = roles_mask(["physician"])


def _head(rn: RunningNode) -> int:
    return rn.node.chain.head_block()


def _status(call) -> tuple[int, str]:  # type: ignore[no-untyped-def]
    with pytest.raises(ApiError) as err:
        call()
    return err.value.status, err.value.detail


def _expiry(rn: RunningNode, patient: str, roles: int, scope: Scope, hospital: int = 0) -> int:
    return rn.node.chain.class_consent_expiry(
        patient, hospital, roles, int(scope.kind), scope.value
    )


def test_typed_data_publishes_the_class_types_the_contract_hashes(
    running_node: RunningNode, public: EmrClient
) -> None:
    td = public.typed_data()
    assert {"Grant", "Revoke", "GrantClass", "RevokeClass"} <= set(td["types"])
    assert td["roles"][0] == "physician" and td["roles"][1] == "nurse"
    chain = running_node.node.chain
    assert td["hospitals"] == {"0": "any member hospital", "1": "Test General"}
    assert chain.member_id(chain.hospital) == 1
    registry = chain._c["ConsentRegistry"].functions  # type: ignore[attr-defined]
    for name, getter in (
        ("GrantClass", "GRANT_CLASS_TYPEHASH"),
        ("RevokeClass", "REVOKE_CLASS_TYPEHASH"),
    ):
        fields = ",".join(f"{f['type']} {f['name']}" for f in PRIMARY_TYPES[name])
        assert bytes(getattr(registry, getter)().call()) == keccak(text=f"{name}({fields})")


def test_grant_list_and_revoke_a_class_consent(
    running_node: RunningNode, public: EmrClient
) -> None:
    rn = running_node
    patient = Account.create()
    lab = Scope.category("lab")
    granted = public.grant_class(patient, ["physician"], lab)
    assert granted["status"] == "relayed" and granted["tx_hash"]
    expires = _expiry(rn, patient.address, PHYSICIAN, lab)
    assert expires > 0
    listed = public.class_consents(patient.address)
    assert listed == [
        {
            "hospital": 0,
            "roles": PHYSICIAN,
            "role_names": ["physician"],
            "scope_kind": 1,
            "scope": "0x" + lab.value.hex(),
            "expires_at": expires,
        }
    ]
    # A class consent for physicians says nothing about nurses, or about one hospital only.
    assert _expiry(rn, patient.address, roles_mask(["nurse"]), lab) == 0
    assert _expiry(rn, patient.address, PHYSICIAN, lab, hospital=1) == 0
    # Class and address consents share the patient's nonce sequence.
    assert public.nonce(patient.address) == 1

    nurses_here = public.grant_class(patient, ["nurse"], Scope.all(), hospital=1)
    assert nurses_here["status"] == "relayed"
    assert len(public.class_consents(patient.address)) == 2

    revoked = public.revoke_class(patient, ["physician"], lab)
    assert revoked["status"] == "relayed"
    assert revoked["block_number"] > granted["block_number"]
    assert _expiry(rn, patient.address, PHYSICIAN, lab) == 0
    assert [c["roles"] for c in public.class_consents(patient.address)] == [roles_mask(["nurse"])]


def test_class_consents_refused_without_state_change(
    running_node: RunningNode, public: EmrClient
) -> None:
    rn = running_node
    patient, mallory = Account.create(), Account.create()
    lab = Scope.category("lab")
    head = _head(rn)
    post = public._json

    # Mallory signs a consent in the patient's name.
    body = public.sign_class_consent(mallory, "GrantClass", ["physician"], lab, nonce=0)
    body["message"]["patient"] = patient.address
    status, detail = _status(lambda: post("POST", "/consents/class-grants", json=body))
    assert status == 400 and "signature" in detail

    # The patient's signature over physicians, sent as a consent for every role.
    body = public.sign_class_consent(patient, "GrantClass", ["physician"], lab, nonce=0)
    body["message"]["roles"] = 0xFFFF
    status, detail = _status(lambda: post("POST", "/consents/class-grants", json=body))
    assert status == 400 and "signature" in detail

    # ... or for one hospital's readers turned into any hospital's (and back).
    body = public.sign_class_consent(patient, "GrantClass", ["physician"], lab, nonce=0, hospital=1)
    body["message"]["hospital"] = 0
    status, detail = _status(lambda: post("POST", "/consents/class-grants", json=body))
    assert status == 400 and "signature" in detail

    # A signed address Grant replayed as a class grant (type confusion).
    grant = public.sign_consent(patient, "Grant", mallory.address, lab, nonce=0)
    body = public.sign_class_consent(patient, "GrantClass", ["physician"], lab, nonce=0)
    body["signature"] = grant["signature"]
    status, detail = _status(lambda: post("POST", "/consents/class-grants", json=body))
    assert status == 400 and "signature" in detail

    # A RevokeClass signature submitted as a GrantClass of the same class.
    revoke = public.sign_class_consent(patient, "RevokeClass", ["physician"], lab, nonce=0)
    body = public.sign_class_consent(patient, "GrantClass", ["physician"], lab, nonce=0)
    body["signature"] = revoke["signature"]
    status, _ = _status(lambda: post("POST", "/consents/class-grants", json=body))
    assert status == 400

    # Expired deadline, past expiry, wrong domain, scope not matching its kind.
    body = public.sign_class_consent(patient, "GrantClass", ["physician"], lab, deadline_in=-10)
    status, detail = _status(lambda: post("POST", "/consents/class-grants", json=body))
    assert status == 400 and "deadline" in detail
    body = public.sign_class_consent(patient, "GrantClass", ["physician"], lab, expires_at=1)
    status, detail = _status(lambda: post("POST", "/consents/class-grants", json=body))
    assert status == 400 and "expiresAt" in detail
    bad_domain = dict(public.typed_data()["domain"], chainId=1)
    body = public.sign_class_consent(patient, "GrantClass", ["physician"], lab, domain=bad_domain)
    status, detail = _status(lambda: post("POST", "/consents/class-grants", json=body))
    assert status == 400 and "chainId" in detail
    body = public.sign_class_consent(
        patient, "GrantClass", ["physician"], Scope(lab.kind, b"\x00" * 32)
    )
    assert _status(lambda: post("POST", "/consents/class-grants", json=body))[0] == 400

    # A hospital id no member has (ids are never reused: it could name a future member).
    body = public.sign_class_consent(patient, "GrantClass", ["physician"], lab, hospital=77)
    status, detail = _status(lambda: post("POST", "/consents/class-grants", json=body))
    assert status == 400 and "77" in detail

    # Malformed: no role, roles or hospital out of range, a grantee field.
    for change in (
        {"roles": 0},
        {"roles": 2**16},
        {"hospital": 2**32},
        {"grantee": patient.address},
    ):
        body = public.sign_class_consent(patient, "GrantClass", ["physician"], lab)
        body["message"].update(change)
        assert _status(lambda b=body: post("POST", "/consents/class-grants", json=b))[0] == 422

    assert _head(rn) == head  # nothing reached the chain
    assert public.nonce(patient.address) == 0

    # A good grant, then its replay.
    body = public.sign_class_consent(patient, "GrantClass", ["physician"], lab)
    post("POST", "/consents/class-grants", json=body)
    head = _head(rn)
    status, detail = _status(lambda: post("POST", "/consents/class-grants", json=body))
    assert status == 409 and "nonce" in detail
    # A revoke signed by someone else does not end the patient's consent.
    body = public.sign_class_consent(mallory, "RevokeClass", ["physician"], lab, nonce=1)
    body["message"]["patient"] = patient.address
    status, detail = _status(lambda: post("POST", "/consents/class-revokes", json=body))
    assert status == 400 and "signature" in detail
    assert _head(rn) == head
    assert _expiry(rn, patient.address, PHYSICIAN, lab) > 0


def test_cli_grant_and_revoke_class(
    running_node: RunningNode, public: EmrClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from node.cli.main import app

    patient = Account.create()
    monkeypatch.setenv("EMR_WALLET_KEY", patient.key.hex())
    runner = CliRunner()
    common = ["--category", "lab", "--url", running_node.url]
    granted = runner.invoke(
        app, ["consent", "grant-class", "--roles", "physician,nurse", "--hospital", "1", *common]
    )
    assert granted.exit_code == 0, granted.output
    assert '"status": "relayed"' in granted.output
    both = roles_mask(["physician", "nurse"])
    assert _expiry(running_node, patient.address, both, Scope.category("lab"), hospital=1) > 0
    bad = runner.invoke(app, ["consent", "grant-class", "--roles", "janitor", *common])
    assert bad.exit_code != 0 and "unknown role" in bad.output
    revoked = runner.invoke(
        app, ["consent", "revoke-class", "--roles", "physician,nurse", "--hospital", "1", *common]
    )
    assert revoked.exit_code == 0, revoked.output
    assert _expiry(running_node, patient.address, both, Scope.category("lab"), hospital=1) == 0
    assert public.class_consents(patient.address) == []
