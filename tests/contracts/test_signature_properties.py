"""Property tests of the ConsentRegistry's EIP-712 signatures (hypothesis over eth-tester).

- A Grant, Revoke, GrantClass or RevokeClass signature is bound to its chain id and to the
  verifying contract: it is refused on another chain holding the same contract at the same
  address, and on another ConsentRegistry deployment of the same chain.
- A nonce is used once: a relayed signature cannot be relayed again, and a signature whose
  nonce is not the patient's next one is refused, whatever kind of consent it carries
  (address and class consents share one nonce).
- Racing relays: whatever order a relayer (or several) sends a patient's signed consents
  in, and however often it retries, the registry ends in the state that applying them in
  nonce order implies.

Bounded for CI: every example restores a chain snapshot; ``derandomize`` makes runs repeatable.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from contract_helpers import (
    FOUNDER_NAMES,
    ZERO32,
    Chain,
    decode_error,
    domain_of,
    revert_data,
    sign,
)
from eth.vm.chain_context import ChainContext
from eth_account import Account
from eth_tester import EthereumTester, PyEVMBackend
from eth_utils import keccak
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from web3 import EthereumTesterProvider, Web3
from web3.contract import Contract

from node.chain.artifacts import load_artifact
from node.chain.deploy import deploy_contracts

RECORD, CATEGORY, ALL = 0, 1, 2
HOUR, DAY = 3600, 24 * 3600
OTHER_CHAIN_ID = 4242  # the second chain: same deployer, same addresses, another chain id

BOUNDED = settings(
    max_examples=15,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

_FIELDS = {
    "Grant": ("patient", "grantee", "scopeKind", "scope", "expiresAt", "nonce", "deadline"),
    "Revoke": ("patient", "grantee", "scopeKind", "scope", "nonce", "deadline"),
    "GrantClass": (
        "patient",
        "hospital",
        "roles",
        "scopeKind",
        "scope",
        "expiresAt",
        "nonce",
        "deadline",
    ),
    "RevokeClass": ("patient", "hospital", "roles", "scopeKind", "scope", "nonce", "deadline"),
}
_FUNCTIONS = {
    "Grant": "grantWithSig",
    "Revoke": "revokeWithSig",
    "GrantClass": "grantClassWithSig",
    "RevokeClass": "revokeClassWithSig",
}

# ---------------------------------------------------------------- strategies

patient_keys = st.integers(1, 2**32).map(lambda i: keccak(text=f"patient-{i}"))
readers = st.sampled_from([keccak(text=f"reader-{i}")[:20] for i in range(3)]).map(
    Web3.to_checksum_address
)
scopes = st.one_of(
    st.just((ALL, ZERO32)),
    st.sampled_from([keccak(text="lab"), keccak(text="imaging")]).map(lambda s: (CATEGORY, s)),
    st.binary(min_size=32, max_size=32).filter(lambda b: b != ZERO32).map(lambda s: (RECORD, s)),
)
classes = st.tuples(st.sampled_from([0, 1, 2]), st.sampled_from([1, 2, 3, 0xFFFF]))
kinds = st.sampled_from(["Grant", "Revoke", "GrantClass", "RevokeClass"])


@st.composite
def consents(draw: st.DrawFn, kind: str | None = None) -> tuple[str, dict[str, Any]]:
    """(primary type, message without patient, nonce, deadline and expiry times)."""
    primary = kind or draw(kinds)
    scope_kind, scope = draw(scopes)
    body: dict[str, Any] = {"scopeKind": scope_kind, "scope": scope}
    if primary in ("Grant", "Revoke"):
        body["grantee"] = draw(readers)
    else:
        body["hospital"], body["roles"] = draw(classes)
    if primary.startswith("Grant"):
        body["expires_in"] = draw(st.integers(60, 365 * DAY))
    return primary, body


# ---------------------------------------------------------------- chains


@pytest.fixture(scope="module")
def other_chain() -> Chain:
    """A second eth-tester chain with another chain id: the same deployer and deployment
    order give the contracts the same addresses as on the session chain."""
    backend = PyEVMBackend()
    backend.chain.chain_id = OTHER_CHAIN_ID
    backend.chain.chain_context = ChainContext(OTHER_CHAIN_ID)
    tester = EthereumTester(backend)
    w3 = Web3(EthereumTesterProvider(tester))
    accounts = [Web3.to_checksum_address(a) for a in w3.eth.accounts]
    w3.eth.default_account = accounts[0]
    deployment = deploy_contracts(w3, list(zip(accounts[:3], FOUNDER_NAMES, strict=True)))

    def contract(name: str, address: str) -> Contract:
        return w3.eth.contract(address=address, abi=load_artifact(name).abi)

    return Chain(
        tester=tester,
        w3=w3,
        deployment=deployment,
        consortium=contract("Consortium", deployment.consortium),
        records=contract("RecordRegistry", deployment.record_registry),
        consent=contract("ConsentRegistry", deployment.consent_registry),
        access_log=contract("AccessLog", deployment.access_log),
        accounts=accounts,
    )


@pytest.fixture(scope="module")
def second_registry(_session_chain: Chain) -> Iterator[Contract]:
    """Another ConsentRegistry of the same consortium on the same chain (a redeployment),
    gone again after this module: other modules see the session chain as it was."""
    before = _session_chain.tester.take_snapshot()
    try:
        yield _session_chain.deploy("ConsentRegistry", _session_chain.consortium.address)
    finally:
        _session_chain.tester.revert_to_snapshot(before)


class _Snapshot:
    """Each hypothesis example starts from the same chain state."""

    def __init__(self, *chains: Chain) -> None:
        self._chains = chains
        self._ids = [c.tester.take_snapshot() for c in chains]

    def restore(self) -> None:
        for chain, snap in zip(self._chains, self._ids, strict=True):
            chain.tester.revert_to_snapshot(snap)


@pytest.fixture
def snapshot(_session_chain: Chain) -> Iterator[_Snapshot]:
    snap = _Snapshot(_session_chain)
    yield snap
    snap.restore()


# ---------------------------------------------------------------- helpers


@dataclass
class Signed:
    primary: str
    message: dict[str, Any]
    signature: bytes

    @property
    def nonce(self) -> int:
        return int(self.message["nonce"])


def _message(chain: Chain, patient: str, primary: str, body: dict[str, Any], nonce: int) -> dict:
    now = chain.now()
    message = {k: v for k, v in body.items() if k != "expires_in"}
    message.update(patient=patient, nonce=nonce, deadline=now + HOUR)
    if primary.startswith("Grant"):
        message["expiresAt"] = now + body["expires_in"]
    return message


def _sign(key: bytes, primary: str, message: dict[str, Any], domain: dict[str, Any]) -> Signed:
    return Signed(primary, message, sign(key, primary, message, domain))


def _relay(chain: Chain, registry: Contract, s: Signed) -> str | None:
    """Relay from an outsider; None when it landed, else the custom error's name."""
    args = tuple(s.message[f] for f in _FIELDS[s.primary])
    fn = getattr(registry.functions, _FUNCTIONS[s.primary])(args, s.signature)
    try:
        chain.send(fn, chain.outsider)
    except Exception as err:
        data = revert_data(err)
        assert data is not None, f"no revert data in {err!r}"
        return decode_error(data)[0]
    return None


def _nonce(registry: Contract, patient: str) -> int:
    return int(registry.functions.nonces(patient).call())


def _state(registry: Contract, s: Signed) -> int:
    """The expiry the registry holds for the consent ``s`` names (0: none)."""
    m = s.message
    if s.primary in ("Grant", "Revoke"):
        fn = registry.functions.consentExpiry(
            m["patient"], m["grantee"], m["scopeKind"], m["scope"]
        )
    else:
        fn = registry.functions.classConsentExpiry(
            m["patient"], m["hospital"], m["roles"], m["scopeKind"], m["scope"]
        )
    return int(fn.call())


def _key_of(s: Signed) -> tuple[Any, ...]:
    m = s.message
    reader = (m["grantee"],) if s.primary in ("Grant", "Revoke") else (m["hospital"], m["roles"])
    return (
        s.primary.removeprefix("Grant").removeprefix("Revoke"),
        *reader,
        m["scopeKind"],
        m["scope"],
    )


# ---------------------------------------------------------------- chain id and contract binding


@BOUNDED
@given(key=patient_keys, consent=consents())
def test_a_signature_is_refused_on_another_chain(
    _session_chain: Chain, other_chain: Chain, key: bytes, consent: tuple[str, dict[str, Any]]
) -> None:
    chain, other = _session_chain, other_chain
    assert chain.consent.address == other.consent.address  # only the chain id differs
    snap = _Snapshot(chain, other)
    try:
        primary, body = consent
        patient = Account.from_key(key).address
        message = _message(chain, patient, primary, body, nonce=0)
        here = _sign(key, primary, message, domain_of(chain.consent))
        there = _sign(key, primary, message, domain_of(other.consent))
        assert domain_of(other.consent)["chainId"] == OTHER_CHAIN_ID

        # the other chain's signature is refused here, and this chain's there
        assert _relay(chain, chain.consent, there) == "ConsentRegistryInvalidSignature"
        assert _relay(other, other.consent, here) == "ConsentRegistryInvalidSignature"
        # a domain naming any other chain id is refused too
        forged = dict(domain_of(chain.consent), chainId=OTHER_CHAIN_ID + 1)
        assert _relay(chain, chain.consent, _sign(key, primary, message, forged)) == (
            "ConsentRegistryInvalidSignature"
        )
        assert _nonce(chain.consent, patient) == 0 and _nonce(other.consent, patient) == 0
        # each is accepted where it was signed for (the message itself is valid)
        assert _relay(chain, chain.consent, here) is None
        assert _relay(other, other.consent, there) is None
        assert _nonce(chain.consent, patient) == 1 and _nonce(other.consent, patient) == 1
    finally:
        snap.restore()


@BOUNDED
@given(key=patient_keys, consent=consents())
def test_a_signature_is_refused_by_another_deployment(
    _session_chain: Chain, second_registry: Contract, key: bytes, consent: tuple[str, dict]
) -> None:
    chain = _session_chain
    assert second_registry.address != chain.consent.address
    snap = _Snapshot(chain)
    try:
        primary, body = consent
        patient = Account.from_key(key).address
        message = _message(chain, patient, primary, body, nonce=0)
        first = _sign(key, primary, message, domain_of(chain.consent))
        second = _sign(key, primary, message, domain_of(second_registry))

        assert _relay(chain, second_registry, first) == "ConsentRegistryInvalidSignature"
        assert _relay(chain, chain.consent, second) == "ConsentRegistryInvalidSignature"
        assert _relay(chain, chain.consent, first) is None
        # landing on the first registry neither spends the second's nonce nor makes the
        # signature valid there
        assert _nonce(second_registry, patient) == 0
        assert _relay(chain, second_registry, first) == "ConsentRegistryInvalidSignature"
        assert _relay(chain, second_registry, second) is None
    finally:
        snap.restore()


@BOUNDED
@given(
    key=patient_keys,
    consent=consents(),
    other_key=patient_keys,
    garbage=st.binary(min_size=0, max_size=100),
)
def test_only_the_patients_own_signature_counts(
    _session_chain: Chain,
    snapshot: _Snapshot,
    key: bytes,
    consent: tuple[str, dict[str, Any]],
    other_key: bytes,
    garbage: bytes,
) -> None:
    chain = _session_chain
    try:
        primary, body = consent
        patient = Account.from_key(key).address
        message = _message(chain, patient, primary, body, nonce=0)
        dom = domain_of(chain.consent)
        if other_key != key:
            assert _relay(chain, chain.consent, _sign(other_key, primary, message, dom)) == (
                "ConsentRegistryInvalidSignature"
            )
        assert _relay(chain, chain.consent, Signed(primary, message, garbage)) == (
            "ConsentRegistryInvalidSignature"
        )
        # a signature over one kind of consent does not pass as another kind
        good = _sign(key, primary, message, dom)
        twin = {"Grant": "GrantClass", "GrantClass": "Grant"}.get(primary)
        if twin is None:
            twin = {"Revoke": "RevokeClass", "RevokeClass": "Revoke"}[primary]
        twin_msg = dict(message, grantee=chain.outsider, hospital=0, roles=1)
        assert _relay(chain, chain.consent, Signed(twin, twin_msg, good.signature)) == (
            "ConsentRegistryInvalidSignature"
        )
        assert _nonce(chain.consent, patient) == 0
    finally:
        snapshot.restore()


# ---------------------------------------------------------------- nonces


@BOUNDED
@given(key=patient_keys, batch=st.lists(consents(), min_size=1, max_size=4), skew=st.integers(1, 5))
def test_nonces_are_used_once_and_in_order(
    _session_chain: Chain,
    snapshot: _Snapshot,
    key: bytes,
    batch: list[tuple[str, dict[str, Any]]],
    skew: int,
) -> None:
    chain = _session_chain
    try:
        patient = Account.from_key(key).address
        dom = domain_of(chain.consent)
        relayed: list[Signed] = []
        for i, (primary, body) in enumerate(batch):
            # a nonce ahead of the patient's next one is refused
            ahead = _sign(key, primary, _message(chain, patient, primary, body, i + skew), dom)
            assert _relay(chain, chain.consent, ahead) == "InvalidAccountNonce"
            signed = _sign(key, primary, _message(chain, patient, primary, body, i), dom)
            assert _relay(chain, chain.consent, signed) is None
            relayed.append(signed)
            assert _nonce(chain.consent, patient) == i + 1
        # every signature already used is refused again, whatever its kind
        for signed in relayed:
            assert _relay(chain, chain.consent, signed) == "InvalidAccountNonce"
        assert _nonce(chain.consent, patient) == len(batch)
    finally:
        snapshot.restore()


# ---------------------------------------------------------------- races


def _expected(signed: list[Signed], landed: int) -> dict[tuple[Any, ...], int]:
    """Apply the first ``landed`` consents in nonce order: the registry's expected state."""
    state: dict[tuple[Any, ...], int] = {}
    for s in sorted(signed, key=lambda s: s.nonce)[:landed]:
        state[_key_of(s)] = s.message["expiresAt"] if s.primary.startswith("Grant") else 0
    return state


def _race_batches() -> st.SearchStrategy[list[tuple[str, dict[str, Any]]]]:
    """A grant and a revoke of the same consent (both address and class kinds), plus others."""

    @st.composite
    def build(draw: st.DrawFn) -> list[tuple[str, dict[str, Any]]]:
        grant_kind = draw(st.sampled_from(["Grant", "GrantClass"]))
        primary, body = draw(consents(grant_kind))
        revoke = {k: v for k, v in body.items() if k != "expires_in"}
        pair = [(primary, body), (primary.replace("Grant", "Revoke"), revoke)]
        if draw(st.booleans()):
            pair.reverse()  # a revoke signed before the grant it races with
        extra = draw(st.lists(consents(), max_size=2))
        return pair + extra

    return build()


@BOUNDED
@given(
    key=patient_keys,
    batch=_race_batches(),
    order=st.randoms(use_true_random=False),
    dropped=st.one_of(st.none(), st.integers(0, 3)),
)
def test_racing_relays_leave_the_state_of_nonce_order(
    _session_chain: Chain,
    snapshot: _Snapshot,
    key: bytes,
    batch: list[tuple[str, dict[str, Any]]],
    order: Any,
    dropped: int | None,
) -> None:
    """Several relayers send the signed consents in any order and retry what failed; a
    consent that is never sent (``dropped``) holds back every later nonce."""
    chain = _session_chain
    try:
        patient = Account.from_key(key).address
        dom = domain_of(chain.consent)
        signed = [
            _sign(key, p, _message(chain, patient, p, body, nonce), dom)
            for nonce, (p, body) in enumerate(batch)
        ]
        sent = [s for s in signed if dropped is None or s.nonce != dropped]
        pending = list(sent)
        for _round in range(len(sent) + 1):  # bounded: each round lands at least one, or none
            order.shuffle(pending)
            still = []
            for s in pending:
                error = _relay(chain, chain.consent, s)
                assert error in (None, "InvalidAccountNonce"), error
                if error is not None:
                    still.append(s)
            pending = still
            if not pending:
                break
        landed = len(signed) if dropped is None or dropped >= len(signed) else dropped
        assert _nonce(chain.consent, patient) == landed
        assert {s.nonce for s in sent} - {s.nonce for s in pending} == set(range(landed))
        for consent_key, expiry in _expected(signed, landed).items():
            probe = next(s for s in signed if _key_of(s) == consent_key)
            assert _state(chain.consent, probe) == expiry, consent_key
        # consents that never landed left nothing behind
        touched = set(_expected(signed, landed))
        for s in signed:
            if _key_of(s) not in touched:
                assert _state(chain.consent, s) == 0
    finally:
        snapshot.restore()
