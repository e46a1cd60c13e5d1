"""ConsentRegistry: EIP-712 grants and revokes (EOA and ERC-1271), access bases, break-glass."""

from __future__ import annotations

from typing import Any

import pytest
from contract_helpers import (
    ZERO32,
    Chain,
    domain_of,
    expect_revert,
    grant_tuple,
    revoke_tuple,
    sign,
)
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils import keccak
from web3.logs import DISCARD

RECORD, CATEGORY, ALL = 0, 1, 2
NONE, BASIS_RECORD, BASIS_CATEGORY, BASIS_ALL, BREAK_GLASS = 0, 1, 2, 3, 4
HOUR, DAY = 3600, 24 * 3600
REC = keccak(text="record-42")
OTHER_REC = keccak(text="record-43")
RADIOLOGY = keccak(text="radiology")
LAB = keccak(text="laboratory")
REASON = keccak(text="unconscious patient in the emergency room")


def _scope(kind: int) -> bytes:
    return {RECORD: REC, CATEGORY: RADIOLOGY, ALL: ZERO32}[kind]


def grant_msg(
    chain: Chain,
    patient: str,
    grantee: str,
    kind: int = ALL,
    scope: bytes | None = None,
    *,
    expires_in: int = 30 * DAY,
    nonce: int | None = None,
    deadline: int | None = None,
) -> dict[str, Any]:
    now = chain.now()
    return {
        "patient": patient,
        "grantee": grantee,
        "scopeKind": kind,
        "scope": _scope(kind) if scope is None else scope,
        "expiresAt": now + expires_in,
        "nonce": chain.consent.functions.nonces(patient).call() if nonce is None else nonce,
        "deadline": now + HOUR if deadline is None else deadline,
    }


def revoke_msg(chain: Chain, grant: dict[str, Any], **overrides: Any) -> dict[str, Any]:
    msg = {k: v for k, v in grant.items() if k != "expiresAt"}
    msg["nonce"] = chain.consent.functions.nonces(grant["patient"]).call()
    msg["deadline"] = chain.now() + HOUR
    msg.update(overrides)
    return msg


def relay_grant(chain: Chain, msg: dict[str, Any], sig: bytes, relayer: str | None = None) -> Any:
    fn = chain.consent.functions.grantWithSig(grant_tuple(msg), sig)
    return chain.send(fn, relayer or chain.outsider)


def relay_revoke(chain: Chain, msg: dict[str, Any], sig: bytes) -> Any:
    return chain.send(chain.consent.functions.revokeWithSig(revoke_tuple(msg), sig), chain.outsider)


def grant(chain: Chain, patient: LocalAccount, grantee: str, kind: int = ALL, **kw: Any) -> Any:
    msg = grant_msg(chain, patient.address, grantee, kind, **kw)
    return msg, relay_grant(chain, msg, sign(patient.key, "Grant", msg, domain_of(chain.consent)))


def basis(
    chain: Chain, patient: str, grantee: str, record: bytes = REC, cat: bytes = RADIOLOGY
) -> int:
    return chain.consent.functions.accessBasis(patient, grantee, record, cat).call()


# ---------------------------------------------------------------- domain


def test_domain_and_typehashes(chain: Chain) -> None:
    dom = domain_of(chain.consent)
    assert dom == {
        "name": "EMR Consent",
        "version": "1",
        "chainId": chain.w3.eth.chain_id,
        "verifyingContract": chain.consent.address,
    }
    f = chain.consent.functions
    assert f.GRANT_TYPEHASH().call() == keccak(
        text="Grant(address patient,address grantee,uint8 scopeKind,bytes32 scope,"
        "uint64 expiresAt,uint256 nonce,uint256 deadline)"
    )
    assert f.REVOKE_TYPEHASH().call() == keccak(
        text="Revoke(address patient,address grantee,uint8 scopeKind,bytes32 scope,"
        "uint256 nonce,uint256 deadline)"
    )
    assert f.consortium().call() == chain.consortium.address


# ---------------------------------------------------------------- grants


@pytest.mark.parametrize(
    ("kind", "expected"), [(RECORD, BASIS_RECORD), (CATEGORY, BASIS_CATEGORY), (ALL, BASIS_ALL)]
)
def test_grant_each_scope(
    chain: Chain, patient: LocalAccount, clinician: LocalAccount, kind: int, expected: int
) -> None:
    assert basis(chain, patient.address, clinician.address) == NONE
    msg, receipt = grant(chain, patient, clinician.address, kind)
    ev = chain.consent.events.ConsentGranted().process_receipt(receipt, errors=DISCARD)
    assert dict(ev[0]["args"]) == {
        "patient": patient.address,
        "scope": _scope(kind),
        "grantee": clinician.address,
        "scopeKind": kind,
        "expiresAt": msg["expiresAt"],
    }
    assert basis(chain, patient.address, clinician.address) == expected
    f = chain.consent.functions
    expiry = f.consentExpiry(patient.address, clinician.address, kind, _scope(kind)).call()
    assert expiry == msg["expiresAt"]
    assert f.nonces(patient.address).call() == 1
    # scoped consents do not leak to other records / categories / grantees
    if kind != ALL:
        assert basis(chain, patient.address, clinician.address, OTHER_REC, LAB) == NONE
    assert basis(chain, patient.address, chain.outsider) == NONE


def test_access_basis_precedence(
    chain: Chain, patient: LocalAccount, clinician: LocalAccount
) -> None:
    p, g = patient.address, clinician.address
    chain.send(chain.consent.functions.openBreakGlass(p, g, ZERO32, 2 * HOUR, REASON), chain.a)
    assert basis(chain, p, g) == BREAK_GLASS
    grant(chain, patient, g, ALL)
    assert basis(chain, p, g) == BASIS_ALL
    grant(chain, patient, g, CATEGORY)
    assert basis(chain, p, g) == BASIS_CATEGORY
    assert basis(chain, p, g, OTHER_REC, LAB) == BASIS_ALL
    grant(chain, patient, g, RECORD)
    assert basis(chain, p, g) == BASIS_RECORD
    assert basis(chain, p, g, OTHER_REC, RADIOLOGY) == BASIS_CATEGORY
    # a zero record id / category never matches a scoped consent
    assert basis(chain, p, g, ZERO32, ZERO32) == BASIS_ALL


def test_grant_can_be_relayed_by_anyone(
    chain: Chain, patient: LocalAccount, clinician: LocalAccount
) -> None:
    """The relayer need not be a member (nor the patient)."""
    msg = grant_msg(chain, patient.address, clinician.address)
    sig = sign(patient.key, "Grant", msg, domain_of(chain.consent))
    relay_grant(chain, msg, sig, relayer=chain.accounts[7])
    assert basis(chain, patient.address, clinician.address) == BASIS_ALL


def test_wrong_signer(chain: Chain, patient: LocalAccount, clinician: LocalAccount) -> None:
    msg = grant_msg(chain, patient.address, clinician.address)
    sig = sign(clinician.key, "Grant", msg, domain_of(chain.consent))
    expect_revert(lambda: relay_grant(chain, msg, sig), "ConsentRegistryInvalidSignature")
    assert basis(chain, patient.address, clinician.address) == NONE
    assert chain.consent.functions.nonces(patient.address).call() == 0


def test_altered_message_is_rejected(
    chain: Chain, patient: LocalAccount, clinician: LocalAccount
) -> None:
    msg = grant_msg(chain, patient.address, clinician.address)
    sig = sign(patient.key, "Grant", msg, domain_of(chain.consent))
    for field, value in [
        ("expiresAt", msg["expiresAt"] + 1),
        ("grantee", chain.outsider),
        ("scopeKind", RECORD),
        ("deadline", msg["deadline"] + 1),
    ]:
        altered = dict(msg, **{field: value})
        if field == "scopeKind":
            altered["scope"] = REC
        expect_revert(
            lambda a=altered: relay_grant(chain, a, sig), "ConsentRegistryInvalidSignature"
        )
    expect_revert(lambda: relay_grant(chain, msg, sig[:-1]), "ConsentRegistryInvalidSignature")
    expect_revert(lambda: relay_grant(chain, msg, b""), "ConsentRegistryInvalidSignature")


@pytest.mark.parametrize("field", ["chainId", "verifyingContract", "name", "version"])
def test_wrong_domain_is_rejected(
    chain: Chain, patient: LocalAccount, clinician: LocalAccount, field: str
) -> None:
    dom = domain_of(chain.consent)
    dom[field] = {
        "chainId": 1,
        "verifyingContract": chain.records.address,
        "name": "EMR Consent ",
        "version": "2",
    }[field]
    msg = grant_msg(chain, patient.address, clinician.address)
    sig = sign(patient.key, "Grant", msg, dom)
    expect_revert(lambda: relay_grant(chain, msg, sig), "ConsentRegistryInvalidSignature")


def test_replayed_signature(chain: Chain, patient: LocalAccount, clinician: LocalAccount) -> None:
    msg = grant_msg(chain, patient.address, clinician.address)
    sig = sign(patient.key, "Grant", msg, domain_of(chain.consent))
    relay_grant(chain, msg, sig)
    args = expect_revert(lambda: relay_grant(chain, msg, sig), "InvalidAccountNonce")
    assert args == (patient.address, 1)


def test_future_nonce_is_rejected(
    chain: Chain, patient: LocalAccount, clinician: LocalAccount
) -> None:
    msg = grant_msg(chain, patient.address, clinician.address, nonce=1)
    sig = sign(patient.key, "Grant", msg, domain_of(chain.consent))
    args = expect_revert(lambda: relay_grant(chain, msg, sig), "InvalidAccountNonce")
    assert args == (patient.address, 0)


def test_expired_deadline(chain: Chain, patient: LocalAccount, clinician: LocalAccount) -> None:
    deadline = chain.now()
    msg = grant_msg(chain, patient.address, clinician.address, deadline=deadline)
    sig = sign(patient.key, "Grant", msg, domain_of(chain.consent))
    args = expect_revert(lambda: relay_grant(chain, msg, sig), "ConsentRegistryExpiredDeadline")
    assert args == (deadline,)
    # same for revocations
    rmsg = revoke_msg(chain, msg, deadline=deadline)
    rsig = sign(patient.key, "Revoke", rmsg, domain_of(chain.consent))
    expect_revert(lambda: relay_revoke(chain, rmsg, rsig), "ConsentRegistryExpiredDeadline")


@pytest.mark.parametrize(
    ("kind", "scope"),
    [(RECORD, ZERO32), (CATEGORY, ZERO32), (ALL, REC), (3, REC), (3, ZERO32), (255, ZERO32)],
)
def test_invalid_scope(
    chain: Chain, patient: LocalAccount, clinician: LocalAccount, kind: int, scope: bytes
) -> None:
    msg = grant_msg(chain, patient.address, clinician.address, kind, scope)
    sig = sign(patient.key, "Grant", msg, domain_of(chain.consent))
    expect_revert(lambda: relay_grant(chain, msg, sig), "ConsentRegistryInvalidScope")
    rmsg = revoke_msg(chain, msg)
    rsig = sign(patient.key, "Revoke", rmsg, domain_of(chain.consent))
    expect_revert(lambda: relay_revoke(chain, rmsg, rsig), "ConsentRegistryInvalidScope")


def test_expiry_must_be_in_the_future(
    chain: Chain, patient: LocalAccount, clinician: LocalAccount
) -> None:
    msg = grant_msg(chain, patient.address, clinician.address, expires_in=0)
    msg["expiresAt"] = chain.now() - 1
    sig = sign(patient.key, "Grant", msg, domain_of(chain.consent))
    expect_revert(lambda: relay_grant(chain, msg, sig), "ConsentRegistryInvalidExpiry")


def test_consent_expires(chain: Chain, patient: LocalAccount, clinician: LocalAccount) -> None:
    msg, _ = grant(chain, patient, clinician.address, CATEGORY, expires_in=100)
    assert basis(chain, patient.address, clinician.address) == BASIS_CATEGORY
    chain.travel_to(msg["expiresAt"] - 1)
    assert basis(chain, patient.address, clinician.address) == BASIS_CATEGORY
    chain.travel_to(msg["expiresAt"])  # valid while now < expiresAt
    assert basis(chain, patient.address, clinician.address) == NONE
    # the stored expiry stays readable
    f = chain.consent.functions
    expiry = f.consentExpiry(patient.address, clinician.address, CATEGORY, RADIOLOGY).call()
    assert expiry == msg["expiresAt"]


# ---------------------------------------------------------------- revocation


def test_revoke_takes_effect_in_the_same_block(
    chain: Chain, patient: LocalAccount, clinician: LocalAccount
) -> None:
    msg, _ = grant(chain, patient, clinician.address, RECORD)
    assert basis(chain, patient.address, clinician.address) == BASIS_RECORD
    rmsg = revoke_msg(chain, msg)
    assert rmsg["nonce"] == 1  # one nonce sequence for grants and revokes
    receipt = relay_revoke(chain, rmsg, sign(patient.key, "Revoke", rmsg, domain_of(chain.consent)))
    block = receipt["blockNumber"]
    f = chain.consent.functions
    args = (patient.address, clinician.address, REC, RADIOLOGY)
    assert f.accessBasis(*args).call(block_identifier=block - 1) == BASIS_RECORD
    assert f.accessBasis(*args).call(block_identifier=block) == NONE
    assert f.consentExpiry(patient.address, clinician.address, RECORD, REC).call() == 0
    ev = chain.consent.events.ConsentRevoked().process_receipt(receipt, errors=DISCARD)
    assert dict(ev[0]["args"]) == {
        "patient": patient.address,
        "scope": REC,
        "grantee": clinician.address,
        "scopeKind": RECORD,
    }
    assert f.nonces(patient.address).call() == 2


def test_revoke_wrong_signer_and_replay(
    chain: Chain, patient: LocalAccount, clinician: LocalAccount
) -> None:
    msg, _ = grant(chain, patient, clinician.address)
    rmsg = revoke_msg(chain, msg)
    dom = domain_of(chain.consent)
    expect_revert(
        lambda: relay_revoke(chain, rmsg, sign(clinician.key, "Revoke", rmsg, dom)),
        "ConsentRegistryInvalidSignature",
    )
    assert basis(chain, patient.address, clinician.address) == BASIS_ALL
    sig = sign(patient.key, "Revoke", rmsg, dom)
    relay_revoke(chain, rmsg, sig)
    args = expect_revert(lambda: relay_revoke(chain, rmsg, sig), "InvalidAccountNonce")
    assert args == (patient.address, 2)
    # a grant signature used as a revoke (different type hash) is rejected
    gsig = sign(patient.key, "Grant", dict(msg, nonce=2), dom)
    expect_revert(
        lambda: relay_revoke(chain, dict(rmsg, nonce=2), gsig), "ConsentRegistryInvalidSignature"
    )


def test_old_grant_cannot_be_replayed_after_revoke(
    chain: Chain, patient: LocalAccount, clinician: LocalAccount
) -> None:
    dom = domain_of(chain.consent)
    msg = grant_msg(chain, patient.address, clinician.address)
    gsig = sign(patient.key, "Grant", msg, dom)
    relay_grant(chain, msg, gsig)
    rmsg = revoke_msg(chain, msg)
    relay_revoke(chain, rmsg, sign(patient.key, "Revoke", rmsg, dom))
    expect_revert(lambda: relay_grant(chain, msg, gsig), "InvalidAccountNonce")
    assert basis(chain, patient.address, clinician.address) == NONE


# ---------------------------------------------------------------- ERC-1271


def test_erc1271_wallet_as_patient(chain: Chain, clinician: LocalAccount) -> None:
    # funded eth-tester accounts, so the owner can also send the ownership transfer
    owner = Account.from_key(chain.tester.backend.account_keys[8])
    stranger = Account.from_key(chain.tester.backend.account_keys[9])
    assert (owner.address, stranger.address) == (chain.accounts[8], chain.accounts[9])
    wallet = chain.deploy("ERC1271WalletMock", owner.address)
    assert wallet.functions.owner().call() == owner.address
    dom = domain_of(chain.consent)

    msg = grant_msg(chain, wallet.address, clinician.address, CATEGORY)
    expect_revert(
        lambda: relay_grant(chain, msg, sign(stranger.key, "Grant", msg, dom)),
        "ConsentRegistryInvalidSignature",
    )
    relay_grant(chain, msg, sign(owner.key, "Grant", msg, dom))
    assert basis(chain, wallet.address, clinician.address) == BASIS_CATEGORY
    assert chain.consent.functions.nonces(wallet.address).call() == 1

    # the wallet's owner decides: after a transfer only the new owner's signature counts
    expect_revert(
        lambda: wallet.functions.transferOwnership(chain.a).transact({"from": chain.a}),
        "OwnableUnauthorizedAccount",
    )
    chain.send(wallet.functions.transferOwnership(stranger.address), owner.address)
    rmsg = revoke_msg(chain, msg)
    expect_revert(
        lambda: relay_revoke(chain, rmsg, sign(owner.key, "Revoke", rmsg, dom)),
        "ConsentRegistryInvalidSignature",
    )
    relay_revoke(chain, rmsg, sign(stranger.key, "Revoke", rmsg, dom))
    assert basis(chain, wallet.address, clinician.address) == NONE


def test_erc1271_mock_never_reverts(chain: Chain) -> None:
    owner = Account.from_key(keccak(text="wallet owner"))
    wallet = chain.deploy("ERC1271WalletMock", owner.address)
    digest = keccak(text="hash")
    signed = Account.unsafe_sign_hash(digest, owner.key).signature
    assert wallet.functions.isValidSignature(digest, bytes(signed)).call() == bytes.fromhex(
        "1626ba7e"
    )
    assert wallet.functions.isValidSignature(digest, b"\x01\x02").call() == b"\xff" * 4
    assert wallet.functions.isValidSignature(keccak(text="other"), signed).call() == b"\xff" * 4


# ---------------------------------------------------------------- break-glass


def test_break_glass_opens_and_expires(
    chain: Chain, patient: LocalAccount, clinician: LocalAccount
) -> None:
    f = chain.consent.functions
    receipt = chain.send(
        f.openBreakGlass(patient.address, clinician.address, REC, 2 * HOUR, REASON), chain.b
    )
    ts = chain.w3.eth.get_block(receipt["blockNumber"])["timestamp"]
    ev = chain.consent.events.BreakGlassOpened().process_receipt(receipt, errors=DISCARD)
    assert dict(ev[0]["args"]) == {
        "patient": patient.address,
        "recordId": REC,
        "clinician": clinician.address,
        "hospital": chain.b,
        "expiresAt": ts + 2 * HOUR,
        "reasonHash": REASON,
    }
    assert f.breakGlassExpiry(patient.address, clinician.address, REC).call() == ts + 2 * HOUR
    assert basis(chain, patient.address, clinician.address) == BREAK_GLASS
    assert basis(chain, patient.address, clinician.address, OTHER_REC) == NONE
    assert basis(chain, patient2_addr := chain.outsider, clinician.address) == NONE
    assert patient2_addr != patient.address
    chain.travel_to(ts + 2 * HOUR - 1)
    assert basis(chain, patient.address, clinician.address) == BREAK_GLASS
    chain.travel_to(ts + 2 * HOUR)
    assert basis(chain, patient.address, clinician.address) == NONE


def test_break_glass_for_all_records(
    chain: Chain, patient: LocalAccount, clinician: LocalAccount
) -> None:
    f = chain.consent.functions
    chain.send(f.openBreakGlass(patient.address, clinician.address, ZERO32, DAY, REASON), chain.a)
    assert basis(chain, patient.address, clinician.address, REC) == BREAK_GLASS
    assert basis(chain, patient.address, clinician.address, OTHER_REC, LAB) == BREAK_GLASS
    assert basis(chain, patient.address, clinician.address, ZERO32, ZERO32) == BREAK_GLASS


def test_break_glass_member_only(
    chain: Chain, patient: LocalAccount, clinician: LocalAccount
) -> None:
    fn = chain.consent.functions.openBreakGlass(
        patient.address, clinician.address, REC, HOUR, REASON
    )
    args = expect_revert(lambda: fn.transact({"from": chain.outsider}), "ConsortiumGatedNotMember")
    assert args == (chain.outsider,)


@pytest.mark.parametrize(
    ("duration", "reason", "ok"),
    [
        (0, REASON, False),
        (1, REASON, True),
        (DAY, REASON, True),
        (DAY + 1, REASON, False),
        (HOUR, ZERO32, False),  # the reason is mandatory
    ],
)
def test_break_glass_bounds(
    chain: Chain,
    patient: LocalAccount,
    clinician: LocalAccount,
    duration: int,
    reason: bytes,
    ok: bool,
) -> None:
    fn = chain.consent.functions.openBreakGlass(
        patient.address, clinician.address, REC, duration, reason
    )
    if ok:
        chain.send(fn, chain.a)
        assert basis(chain, patient.address, clinician.address) == BREAK_GLASS
    else:
        expect_revert(lambda: fn.transact({"from": chain.a}), "ConsentRegistryInvalidBreakGlass")


def test_break_glass_zero_addresses(chain: Chain, patient: LocalAccount) -> None:
    zero = "0x0000000000000000000000000000000000000000"
    f = chain.consent.functions
    for who, clin in [(zero, patient.address), (patient.address, zero)]:
        expect_revert(
            lambda w=who, c=clin: f.openBreakGlass(w, c, REC, HOUR, REASON).transact(
                {"from": chain.a}
            ),
            "ConsentRegistryInvalidBreakGlass",
        )


# ---------------------------------------------------------------- reader-class consents

# The EIP-712 types, written out here (independent of the node's typed_data module).
_DOMAIN_TYPE = [
    {"name": "name", "type": "string"},
    {"name": "version", "type": "string"},
    {"name": "chainId", "type": "uint256"},
    {"name": "verifyingContract", "type": "address"},
]
_CLASS_TYPES = {
    "GrantClass": [
        {"name": "patient", "type": "address"},
        {"name": "hospital", "type": "uint32"},
        {"name": "roles", "type": "uint16"},
        {"name": "scopeKind", "type": "uint8"},
        {"name": "scope", "type": "bytes32"},
        {"name": "expiresAt", "type": "uint64"},
        {"name": "nonce", "type": "uint256"},
        {"name": "deadline", "type": "uint256"},
    ],
    "RevokeClass": [
        {"name": "patient", "type": "address"},
        {"name": "hospital", "type": "uint32"},
        {"name": "roles", "type": "uint16"},
        {"name": "scopeKind", "type": "uint8"},
        {"name": "scope", "type": "bytes32"},
        {"name": "nonce", "type": "uint256"},
        {"name": "deadline", "type": "uint256"},
    ],
}
PHYSICIANS, NURSES = 1 << 0, 1 << 1
ANY_HOSPITAL = 0


def sign_class(key: bytes, primary: str, message: dict[str, Any], domain: dict[str, Any]) -> bytes:
    payload = {
        "types": {"EIP712Domain": _DOMAIN_TYPE, primary: _CLASS_TYPES[primary]},
        "primaryType": primary,
        "domain": domain,
        "message": message,
    }
    return bytes(Account.sign_typed_data(key, full_message=payload).signature)


def class_msg(
    chain: Chain,
    patient: str,
    hospital: int = ANY_HOSPITAL,
    roles: int = PHYSICIANS,
    kind: int = ALL,
    *,
    expires_in: int = 30 * DAY,
    nonce: int | None = None,
    deadline: int | None = None,
) -> dict[str, Any]:
    now = chain.now()
    return {
        "patient": patient,
        "hospital": hospital,
        "roles": roles,
        "scopeKind": kind,
        "scope": _scope(kind),
        "expiresAt": now + expires_in,
        "nonce": chain.consent.functions.nonces(patient).call() if nonce is None else nonce,
        "deadline": now + HOUR if deadline is None else deadline,
    }


def class_revoke_msg(chain: Chain, grant: dict[str, Any], **overrides: Any) -> dict[str, Any]:
    msg = {k: v for k, v in grant.items() if k != "expiresAt"}
    msg["nonce"] = chain.consent.functions.nonces(grant["patient"]).call()
    msg["deadline"] = chain.now() + HOUR
    msg.update(overrides)
    return msg


_GRANT_CLASS_FIELDS = (
    "patient",
    "hospital",
    "roles",
    "scopeKind",
    "scope",
    "expiresAt",
    "nonce",
    "deadline",
)
_REVOKE_CLASS_FIELDS = ("patient", "hospital", "roles", "scopeKind", "scope", "nonce", "deadline")


def relay_class_grant(chain: Chain, msg: dict[str, Any], sig: bytes) -> Any:
    fn = chain.consent.functions.grantClassWithSig(tuple(msg[k] for k in _GRANT_CLASS_FIELDS), sig)
    return chain.send(fn, chain.outsider)


def relay_class_revoke(chain: Chain, msg: dict[str, Any], sig: bytes) -> Any:
    fn = chain.consent.functions.revokeClassWithSig(
        tuple(msg[k] for k in _REVOKE_CLASS_FIELDS), sig
    )
    return chain.send(fn, chain.outsider)


def class_expiry(chain: Chain, msg: dict[str, Any], **kw: Any) -> int:
    m = {**msg, **kw}
    return chain.consent.functions.classConsentExpiry(
        m["patient"], m["hospital"], m["roles"], m["scopeKind"], m["scope"]
    ).call(**({"block_identifier": kw["block"]} if "block" in kw else {}))


def test_class_typehashes(chain: Chain) -> None:
    f = chain.consent.functions
    assert f.GRANT_CLASS_TYPEHASH().call() == keccak(
        text="GrantClass(address patient,uint32 hospital,uint16 roles,uint8 scopeKind,"
        "bytes32 scope,uint64 expiresAt,uint256 nonce,uint256 deadline)"
    )
    assert f.REVOKE_CLASS_TYPEHASH().call() == keccak(
        text="RevokeClass(address patient,uint32 hospital,uint16 roles,uint8 scopeKind,"
        "bytes32 scope,uint256 nonce,uint256 deadline)"
    )


@pytest.mark.parametrize("kind", [RECORD, CATEGORY, ALL])
def test_class_grant_each_scope(chain: Chain, patient: LocalAccount, kind: int) -> None:
    msg = class_msg(chain, patient.address, hospital=2, roles=PHYSICIANS | NURSES, kind=kind)
    receipt = relay_class_grant(
        chain, msg, sign_class(patient.key, "GrantClass", msg, domain_of(chain.consent))
    )
    assert class_expiry(chain, msg) == msg["expiresAt"]
    ev = chain.consent.events.ClassConsentGranted().process_receipt(receipt, errors=DISCARD)
    assert dict(ev[0]["args"]) == {
        "patient": patient.address,
        "scope": _scope(kind),
        "hospital": 2,
        "roles": PHYSICIANS | NURSES,
        "scopeKind": kind,
        "expiresAt": msg["expiresAt"],
    }
    # the class is exactly (hospital, roles): neighbours are not covered
    assert class_expiry(chain, msg, roles=PHYSICIANS) == 0
    assert class_expiry(chain, msg, hospital=ANY_HOSPITAL) == 0
    assert class_expiry(chain, msg, hospital=3) == 0
    assert chain.consent.functions.nonces(patient.address).call() == 1


def test_class_grant_only_by_the_patients_signature(
    chain: Chain, patient: LocalAccount, patient2: LocalAccount, clinician: LocalAccount
) -> None:
    dom = domain_of(chain.consent)
    msg = class_msg(chain, patient.address)
    # the clinician (or anyone else) cannot sign the patient's class consent
    for key in (clinician.key, patient2.key):
        expect_revert(
            lambda k=key: relay_class_grant(chain, msg, sign_class(k, "GrantClass", msg, dom)),
            "ConsentRegistryInvalidSignature",
        )
    # an altered message (wider roles) does not match the signature
    sig = sign_class(patient.key, "GrantClass", msg, dom)
    expect_revert(
        lambda: relay_class_grant(chain, dict(msg, roles=PHYSICIANS | NURSES), sig),
        "ConsentRegistryInvalidSignature",
    )
    # an address-consent Grant signature cannot pass as a class consent
    gmsg = grant_msg(chain, patient.address, clinician.address)
    gsig = sign(patient.key, "Grant", gmsg, dom)
    expect_revert(lambda: relay_class_grant(chain, msg, gsig), "ConsentRegistryInvalidSignature")
    assert class_expiry(chain, msg) == 0
    relay_class_grant(chain, msg, sig)
    assert class_expiry(chain, msg) == msg["expiresAt"]


def test_class_grant_replay_deadline_roles_scope_expiry(
    chain: Chain, patient: LocalAccount
) -> None:
    dom = domain_of(chain.consent)
    msg = class_msg(chain, patient.address)
    sig = sign_class(patient.key, "GrantClass", msg, dom)
    relay_class_grant(chain, msg, sig)
    assert expect_revert(lambda: relay_class_grant(chain, msg, sig), "InvalidAccountNonce") == (
        patient.address,
        1,
    )
    # deadline passed
    late = class_msg(chain, patient.address, deadline=chain.now())
    late_sig = sign_class(patient.key, "GrantClass", late, dom)
    chain.travel(10)
    assert expect_revert(
        lambda: relay_class_grant(chain, late, late_sig), "ConsentRegistryExpiredDeadline"
    ) == (late["deadline"],)
    # roles 0 is no class
    empty = class_msg(chain, patient.address, roles=0)
    expect_revert(
        lambda: relay_class_grant(chain, empty, sign_class(patient.key, "GrantClass", empty, dom)),
        "ConsentRegistryInvalidClass",
    )
    # a bad scope shape and a past expiry
    bad = dict(class_msg(chain, patient.address, kind=RECORD), scope=ZERO32)
    expect_revert(
        lambda: relay_class_grant(chain, bad, sign_class(patient.key, "GrantClass", bad, dom)),
        "ConsentRegistryInvalidScope",
    )
    past = class_msg(chain, patient.address, expires_in=0)
    expect_revert(
        lambda: relay_class_grant(chain, past, sign_class(patient.key, "GrantClass", past, dom)),
        "ConsentRegistryInvalidExpiry",
    )
    assert chain.consent.functions.nonces(patient.address).call() == 1


def test_class_and_address_consents_share_the_nonce(
    chain: Chain, patient: LocalAccount, clinician: LocalAccount
) -> None:
    dom = domain_of(chain.consent)
    gmsg = grant_msg(chain, patient.address, clinician.address)
    cmsg = class_msg(chain, patient.address)
    assert gmsg["nonce"] == cmsg["nonce"] == 0
    gsig = sign(patient.key, "Grant", gmsg, dom)
    csig = sign_class(patient.key, "GrantClass", cmsg, dom)
    relay_class_grant(chain, cmsg, csig)
    # the address grant signed for the same nonce is now stale
    expect_revert(lambda: relay_grant(chain, gmsg, gsig), "InvalidAccountNonce")


def test_class_revoke_ends_it_in_the_same_block(chain: Chain, patient: LocalAccount) -> None:
    dom = domain_of(chain.consent)
    msg = class_msg(chain, patient.address, hospital=1, roles=NURSES, kind=CATEGORY)
    relay_class_grant(chain, msg, sign_class(patient.key, "GrantClass", msg, dom))
    rmsg = class_revoke_msg(chain, msg)
    # the revoke is the patient's too
    expect_revert(
        lambda: relay_class_revoke(
            chain, rmsg, sign_class(keccak(text="someone"), "RevokeClass", rmsg, dom)
        ),
        "ConsentRegistryInvalidSignature",
    )
    empty = dict(rmsg, roles=0)
    expect_revert(
        lambda: relay_class_revoke(
            chain, empty, sign_class(patient.key, "RevokeClass", empty, dom)
        ),
        "ConsentRegistryInvalidClass",
    )
    sig = sign_class(patient.key, "RevokeClass", rmsg, dom)
    receipt = relay_class_revoke(chain, rmsg, sig)
    block = receipt["blockNumber"]
    assert class_expiry(chain, msg, block=block - 1) == msg["expiresAt"]
    assert class_expiry(chain, msg, block=block) == 0
    ev = chain.consent.events.ClassConsentRevoked().process_receipt(receipt, errors=DISCARD)
    assert dict(ev[0]["args"]) == {
        "patient": patient.address,
        "scope": RADIOLOGY,
        "hospital": 1,
        "roles": NURSES,
        "scopeKind": CATEGORY,
    }
    expect_revert(lambda: relay_class_revoke(chain, rmsg, sig), "InvalidAccountNonce")
    # a revoke past its deadline is refused
    late = class_revoke_msg(chain, msg, deadline=chain.now())
    late_sig = sign_class(patient.key, "RevokeClass", late, dom)
    chain.travel(10)
    expect_revert(
        lambda: relay_class_revoke(chain, late, late_sig), "ConsentRegistryExpiredDeadline"
    )


def test_class_consent_expires(chain: Chain, patient: LocalAccount) -> None:
    dom = domain_of(chain.consent)
    msg = class_msg(chain, patient.address, expires_in=HOUR)
    relay_class_grant(chain, msg, sign_class(patient.key, "GrantClass", msg, dom))
    # the stored expiry stays; "live" means block.timestamp < expiresAt (what the gate checks)
    assert class_expiry(chain, msg) == msg["expiresAt"] > chain.now()
    chain.travel_to(msg["expiresAt"])
    assert class_expiry(chain, msg) == chain.now()


def test_class_consent_by_erc1271_wallet(chain: Chain) -> None:
    owner = Account.from_key(chain.tester.backend.account_keys[8])
    stranger = Account.from_key(chain.tester.backend.account_keys[9])
    wallet = chain.deploy("ERC1271WalletMock", owner.address)
    dom = domain_of(chain.consent)
    msg = class_msg(chain, wallet.address, roles=NURSES)
    expect_revert(
        lambda: relay_class_grant(chain, msg, sign_class(stranger.key, "GrantClass", msg, dom)),
        "ConsentRegistryInvalidSignature",
    )
    relay_class_grant(chain, msg, sign_class(owner.key, "GrantClass", msg, dom))
    assert class_expiry(chain, msg) == msg["expiresAt"]
    chain.send(wallet.functions.transferOwnership(stranger.address), owner.address)
    rmsg = class_revoke_msg(chain, msg)
    expect_revert(
        lambda: relay_class_revoke(chain, rmsg, sign_class(owner.key, "RevokeClass", rmsg, dom)),
        "ConsentRegistryInvalidSignature",
    )
    relay_class_revoke(chain, rmsg, sign_class(stranger.key, "RevokeClass", rmsg, dom))
    assert class_expiry(chain, msg) == 0
