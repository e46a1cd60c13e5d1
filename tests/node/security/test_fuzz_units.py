"""Fuzzing the node's parsers one by one (hypothesis, bounded for CI): SIWE messages and
signatures, EIP-712 domains and consents (the off-chain signature check), field types of
the edge (addresses, 32-byte ids, field elements, request bodies), Groth16 proofs, sealed
boxes and the ZK policy language.

Property: each parser returns a value or raises its own documented error, never anything
else; a round trip through builder and parser gives back what was built.
"""

from __future__ import annotations

import contextlib
import json
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_utils import is_checksum_address, to_checksum_address
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, TypeAdapter, ValidationError

from node.api.schemas.common import parse_address, parse_hex32
from node.api.schemas.consent import SignedGrant, SignedGrantClass, SignedRevoke
from node.api.schemas.zk import CredentialsIn, RevokeIn, ZkReadIn
from node.auth import siwe
from node.chain.class_consents import ClassConsentGrant
from node.chain.models import ConsentGrant
from node.consent.typed_data import ScopeKind, domain, full_message
from node.exceptions import InvalidRequest
from node.flows.relay_consent import _signed_by_patient, check_domain
from node.zkaccess.sealed_box import SealedBox, SealedBoxError, check_recipient
from tests.node.production import TEST_ZK_KEYS
from tests.node.security.helpers import FUZZ
from zk.exceptions import ProofInvalid
from zk.field import P, R
from zk.models import Proof
from zk.policy.ast import PolicyError
from zk.policy.grammar import parse_policies
from zk.verifier import Groth16Verifier, verify_words

UNIT = settings(FUZZ, max_examples=150)
CHAIN_ID = 1337
REGISTRY = "0x" + "12" * 20

json_values = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(2**300), 2**300),
        st.floats(allow_nan=False),
        st.text(max_size=20),
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=12,
)


# -- SIWE ------------------------------------------------------------------------------------

siwe_text = st.one_of(
    st.text(max_size=300),
    st.text(alphabet=string.printable, max_size=300).map(lambda t: t + "\nNonce: " + t[:20]),
    st.from_regex(r"\A[a-z0-9.:-]{1,30} wants you to sign in with your Ethereum account:\n.*\Z"),
)


@UNIT
@given(message=siwe_text, signature=st.binary(max_size=80))
def test_siwe_parsers_never_raise(message: str, signature: bytes) -> None:
    nonce = siwe.nonce_of(message)
    assert nonce is None or (f"Nonce: {nonce}" in message and nonce.isalnum() and len(nonce) >= 8)
    found = siwe.domain_of(message)
    assert found is None or message.startswith(found)
    signer = siwe.recover_signer(message, signature)
    assert signer is None or is_checksum_address(signer)


@UNIT
@given(
    host=st.from_regex(r"\A[a-z0-9][a-z0-9.-]{0,30}(:[0-9]{1,5})?\Z"),
    issued=st.integers(0, 2**34),
    ttl=st.integers(1, 10**6),
    chain_id=st.integers(1, 2**64),
)
def test_siwe_messages_round_trip(host: str, issued: int, ttl: int, chain_id: int) -> None:
    account = Account.from_key(b"\x22" * 32)
    nonce = siwe.new_nonce()
    message = siwe.build_message(
        domain=host,
        address=account.address,
        uri=f"https://{host}",
        chain_id=chain_id,
        nonce=nonce,
        issued_at=issued,
        expires_at=issued + ttl,
    )
    assert siwe.nonce_of(message) == nonce and siwe.domain_of(message) == host
    from eth_account.messages import encode_defunct

    signature = account.sign_message(encode_defunct(text=message)).signature
    assert siwe.recover_signer(message, signature) == account.address
    assert siwe.recover_signer(message + " ", signature) != account.address


# -- EIP-712 typed data ----------------------------------------------------------------------


@dataclass
class _Deployment:
    chain_id: int = CHAIN_ID
    consent_registry: str = REGISTRY


class _Chain:
    deployment = _Deployment()

    def consent_domain(self) -> dict[str, Any]:
        return domain(CHAIN_ID, REGISTRY)


@UNIT
@given(
    signed=st.one_of(
        json_values,
        st.dictionaries(
            st.sampled_from(["name", "version", "chainId", "verifyingContract", "salt"]),
            json_values,
        ),
    )
)
def test_check_domain_accepts_ours_and_names_the_rest(signed: Any) -> None:
    if not isinstance(signed, dict):
        signed = {"chainId": signed}
    try:
        check_domain(signed, _Chain())  # type: ignore[arg-type]
    except InvalidRequest as err:
        assert "EIP-712 domain" in str(err)
    else:
        ours = domain(CHAIN_ID, REGISTRY)
        for key in ("name", "version", "chainId"):
            if signed.get(key) is not None:
                assert str(signed[key]) == str(ours[key])


checksummed = st.binary(min_size=20, max_size=20).map(to_checksum_address)
grants = st.builds(
    ConsentGrant,
    checksummed,
    checksummed,
    st.sampled_from(list(ScopeKind)),
    st.binary(min_size=32, max_size=32),
    st.integers(0, 2**64 - 1),
    st.integers(0, 2**256 - 1),
    st.integers(0, 2**256 - 1),
)
class_grants = st.builds(
    ClassConsentGrant,
    st.just(Account.from_key(b"\x05" * 32).address),
    st.integers(0, 2**32 - 1),
    st.integers(1, 2**16 - 1),
    st.sampled_from(list(ScopeKind)),
    st.binary(min_size=32, max_size=32),
    st.integers(0, 2**64 - 1),
    st.integers(0, 2**256 - 1),
    st.integers(0, 2**256 - 1),
)


@UNIT
@given(consent=st.one_of(grants, class_grants), signature=st.binary(max_size=100))
def test_offchain_consent_check_never_raises(consent: Any, signature: bytes) -> None:
    assert _signed_by_patient(consent, signature, _Chain()) is False  # type: ignore[arg-type]


@FUZZ
@given(consent=class_grants, other_chain=st.integers(1, 2**64).filter(lambda c: c != CHAIN_ID))
def test_offchain_consent_check_binds_the_domain(
    consent: ClassConsentGrant, other_chain: int
) -> None:
    key = b"\x05" * 32
    kind = "GrantClass"
    ours = encode_typed_data(
        full_message=full_message(kind, consent.message(), domain(CHAIN_ID, REGISTRY))
    )
    theirs = full_message(kind, consent.message(), domain(other_chain, REGISTRY))
    good = Account.sign_message(ours, key).signature
    bad = Account.sign_typed_data(key, full_message=theirs).signature
    assert _signed_by_patient(consent, good, _Chain())  # type: ignore[arg-type]
    assert not _signed_by_patient(consent, bad, _Chain())  # type: ignore[arg-type]


# -- edge field types and request bodies --------------------------------------------------

BODIES: list[type[BaseModel]] = [
    SignedGrant,
    SignedRevoke,
    SignedGrantClass,
    ZkReadIn,
    CredentialsIn,
    RevokeIn,
]


@UNIT
@given(value=st.one_of(st.text(max_size=80), st.from_regex(r"\A0x[0-9a-fA-F]{0,70}\Z")))
def test_address_and_id_parsers(value: str) -> None:
    for parse in (parse_address, parse_hex32):
        try:
            parsed = parse("field", value)
        except InvalidRequest as err:
            assert str(err).startswith("field: ")
        else:
            assert is_checksum_address(parsed) if parse is parse_address else len(parsed) == 32


@UNIT
@given(model=st.sampled_from(BODIES), body=json_values)
def test_request_bodies_refuse_with_validation_errors_only(
    model: type[BaseModel], body: Any
) -> None:
    adapter = TypeAdapter(model)
    for parse in (adapter.validate_python, lambda b: adapter.validate_json(json.dumps(b))):
        with contextlib.suppress(ValidationError):  # anything else fails the test
            parse(body)


@UNIT
@given(
    words=st.lists(st.one_of(st.integers(-5, 2**260), st.just(P), st.just(P - 1)), max_size=9),
    inputs=st.lists(st.integers(-5, 2**256), max_size=6),
)
def test_proof_words_decode_or_refuse(words: list[int], inputs: list[int]) -> None:
    try:
        proof = Proof.from_words(words, tuple(inputs))
    except ProofInvalid:
        assert len(words) != 8 or any(not 0 <= w < P for w in words)
    else:
        assert proof.words == tuple(words)


@pytest.fixture(scope="module")
def verifier() -> Groth16Verifier:
    found = sorted(TEST_ZK_KEYS.glob("clinician_access/*/verification_key.json"))
    if not found:
        pytest.skip("no test ZK keys yet (made by the first node test that needs them)")
    return Groth16Verifier.from_json(Path(found[0]).read_text())


@FUZZ
@given(
    words=st.lists(st.integers(0, P - 1), min_size=8, max_size=8),
    inputs=st.lists(st.integers(-1, R + 1), min_size=0, max_size=6),
    raw=st.binary(min_size=0, max_size=300),
)
def test_groth16_verifier_says_no_to_anything_forged(
    verifier: Groth16Verifier, words: list[int], inputs: list[int], raw: bytes
) -> None:
    assert verify_words(verifier, words, inputs) is False
    forged = object.__new__(Proof)
    object.__setattr__(forged, "data", raw)
    object.__setattr__(forged, "public_inputs", tuple(inputs))
    assert verifier.verify(forged) is False


# -- sealed boxes and X25519 keys --------------------------------------------------------------


@UNIT
@given(
    # a JSON object, as the client reads a ZK read's answer (from_json takes a dict)
    data=st.one_of(
        st.dictionaries(st.text(max_size=12), json_values, max_size=4),
        st.fixed_dictionaries(
            {},
            optional={
                k: st.one_of(
                    st.text(max_size=80),
                    st.binary(max_size=40).map(lambda b: "0x" + b.hex()),
                    json_values,
                )
                for k in ("ephemeral_public", "nonce", "ciphertext")
            },
        ),
    ),
    key=st.binary(max_size=40),
)
def test_sealed_box_parsers(data: Any, key: bytes) -> None:
    try:
        box = SealedBox.from_json(data)
    except SealedBoxError:
        pass
    else:
        assert len(box.ephemeral_public) == 32 and len(box.nonce) == 12
    try:
        check_recipient(key)
    except SealedBoxError:
        pass
    else:
        assert len(key) == 32


# -- the ZK policy language ------------------------------------------------------------------

policy_words = st.sampled_from(
    [
        "policy",
        "category",
        "roles",
        "licence",
        "hospitals",
        "valid",
        "any",
        "{",
        "}",
        ";",
        ",",
        "lab",
        "nurse",
        "physician",
        "1",
        "#",
        "//",
        "\n",
    ]
)


@UNIT
@given(text=st.one_of(st.text(max_size=200), st.lists(policy_words, max_size=30).map(" ".join)))
def test_policy_language_parses_or_says_where(text: str) -> None:
    try:
        parse_policies(text)
    except PolicyError as err:
        assert str(err)
