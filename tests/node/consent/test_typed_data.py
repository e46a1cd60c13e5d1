"""The EIP-712 types a patient's wallet signs are exactly the ConsentRegistry's."""

from __future__ import annotations

from eth_account import Account
from eth_account.messages import encode_typed_data

from node.consent.typed_data import PRIMARY_TYPES, domain, full_message

# SPEC §3 / IConsentRegistry.sol: the type strings the contract hashes.
CONTRACT_TYPES = {
    "Grant": "Grant(address patient,address grantee,uint8 scopeKind,bytes32 scope,"
    "uint64 expiresAt,uint256 nonce,uint256 deadline)",
    "Revoke": "Revoke(address patient,address grantee,uint8 scopeKind,bytes32 scope,"
    "uint256 nonce,uint256 deadline)",
    "GrantClass": "GrantClass(address patient,uint32 hospital,uint16 roles,uint8 scopeKind,"
    "bytes32 scope,uint64 expiresAt,uint256 nonce,uint256 deadline)",
    "RevokeClass": "RevokeClass(address patient,uint32 hospital,uint16 roles,uint8 scopeKind,"
    "bytes32 scope,uint256 nonce,uint256 deadline)",
}


def test_type_strings_match_the_contract() -> None:
    for name, fields in PRIMARY_TYPES.items():
        encoded = f"{name}({','.join(f['type'] + ' ' + f['name'] for f in fields)})"
        assert encoded == CONTRACT_TYPES[name]


def test_a_class_signature_does_not_pass_for_another_class() -> None:
    patient = Account.create()
    dom = domain(31337, "0x" + "03" * 20)
    message = {
        "patient": patient.address,
        "hospital": 0,
        "roles": 0b1,
        "scopeKind": 2,
        "scope": b"\x00" * 32,
        "expiresAt": 2**40,
        "nonce": 0,
        "deadline": 2**40,
    }
    signed = Account.sign_typed_data(
        patient.key, full_message=full_message("GrantClass", message, dom)
    )
    for changed in ({"roles": 0b11}, {"hospital": 2}, {"scopeKind": 1}):
        other = encode_typed_data(
            full_message=full_message("GrantClass", {**message, **changed}, dom)
        )
        assert Account.recover_message(other, signature=signed.signature) != patient.address
    same = encode_typed_data(full_message=full_message("GrantClass", message, dom))
    assert Account.recover_message(same, signature=signed.signature) == patient.address
