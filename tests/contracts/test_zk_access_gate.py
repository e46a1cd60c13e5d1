"""ZkAccessGate v2 with real clinician_access proofs (dev setup, groth16py prover).

Every rejection a test claims is tried with a real proof or a request built for one; checks
that come before the verifier are made with transactions (revert data), proof failures with
calls (py-evm pairing ~0.6 s each).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import pytest
from contract_helpers import Chain
from eth_account.signers.local import LocalAccount
from eth_utils import keccak
from web3.logs import DISCARD
from zk_helpers import (
    ANY_HOSPITAL,
    NURSE,
    PHYSICIAN,
    ROLES_NURSE,
    ROLES_PHYSICIAN,
    SCOPE_CATEGORY,
    SCOPE_RECORD,
    TX_GAS,
    Signed,
    Zk,
    clinician_prover,
    deploy_zk,
    expect_zk_revert,
    grant_class,
    identity,
    issue,
    make_request,
    revoke,
    revoke_class,
    send,
    set_policy,
)

from node.chain.artifacts import load_artifact
from zk.credentials import IssuedCredential, access_context, access_scope, epoch_of
from zk.exceptions import WitnessError
from zk.field import R

RADIOLOGY = keccak(text="radiology")
PSYCHIATRY = keccak(text="psychiatry")
MAX_AGE = 3600
MAX_SKEW = 900
EPOCH = 86400
BOTH = ROLES_NURSE | ROLES_PHYSICIAN


@dataclass
class Setup:
    zk: Zk
    nurse: IssuedCredential  # hospital 1 (a)
    doctor: IssuedCredential  # hospital 2 (b)


@pytest.fixture(autouse=True)
def _mirror(setup: Setup, chain: Chain) -> Any:
    """The chain is reverted after every test: so is the tree mirror."""
    saved = copy.deepcopy(setup.zk.tree)
    yield
    setup.zk.tree = saved


@pytest.fixture(scope="module")
def setup(_session_chain: Chain) -> Setup:
    chain = _session_chain
    zk = deploy_zk(chain, max_proof_age=MAX_AGE, max_clock_skew=MAX_SKEW, epoch_length=EPOCH)
    nurse = issue(chain, zk, identity("nurse-1"), chain.a, NURSE)
    doctor = issue(chain, zk, identity("doctor-1"), chain.b, PHYSICIAN)
    set_policy(chain, zk.gate, RADIOLOGY, BOTH)
    set_policy(chain, zk.gate, PSYCHIATRY, ROLES_PHYSICIAN)
    return Setup(zk, nurse, doctor)


def _request(
    chain: Chain, s: Setup, who: IssuedCredential, label: str, patient: str, **kw: Any
) -> Signed:
    kw.setdefault("category", RADIOLOGY)
    kw.setdefault("class_roles", 1 << who.role)
    return make_request(chain, s.zk, who, label=label, patient=patient, **kw)


def _access(chain: Chain, s: Setup, x: Signed, sender: str | None = None) -> Any:
    return send(chain, s.zk.gate.functions.access(x.request, x.proof), sender or chain.b)


def _rejects(chain: Chain, s: Setup, request: tuple, proof: list[int], error: str) -> tuple:
    """The access is refused with ``error``; checked with a call (no gas estimation, which
    would run the pairing twice)."""
    g = s.zk.gate.functions
    return expect_zk_revert(
        lambda: g.access(request, proof).call({"from": chain.b, "gas": TX_GAS}), error
    )


def _used(s: Setup, x: Signed) -> bool:
    return s.zk.gate.functions.requestUsed(x.record_id, x.signal).call()


def _granted(s: Setup, receipt: Any) -> list[dict[str, Any]]:
    events = s.zk.gate.events.ZkAccessGranted().process_receipt(receipt, errors=DISCARD)
    return [dict(e["args"]) for e in events]


# ---------------------------------------------------------------- wiring and inputs


def test_deployment_wiring(chain: Chain, setup: Setup) -> None:
    g = setup.zk.gate.functions
    dep = setup.zk.deployment
    assert g.credentialRegistry().call() == dep.credential_registry
    assert g.consentRegistry().call() == chain.deployment.consent_registry
    assert g.verifier().call() == dep.clinician_verifier
    assert g.consortium().call() == chain.deployment.consortium
    assert (g.maxProofAge().call(), g.maxClockSkew().call(), g.epochLength().call()) == (
        MAX_AGE,
        MAX_SKEW,
        EPOCH,
    )


def test_public_inputs_are_the_spec_encodings(
    chain: Chain, setup: Setup, patient: LocalAccount
) -> None:
    for who, hospital in ((setup.nurse, ANY_HOSPITAL), (setup.doctor, 2)):
        x = _request(
            chain,
            setup,
            who,
            f"inputs-{who.role}",
            patient.address,
            class_hospital=hospital,
            class_roles=BOTH,
            prove=False,
        )
        got = setup.zk.gate.functions.publicInputs(x.request).call()
        now = x.request[7]
        expected = [
            setup.zk.tree.root,
            access_context(now, BOTH, hospital, x.signal),
            access_scope(
                chain.w3.eth.chain_id,
                setup.zk.gate.address,
                x.record_id,
                x.request[1],
                x.request[2],
                epoch_of(now, EPOCH),
            ),
            x.inputs["epochNullifier"],
        ]
        assert got == expected
        assert got == [x.inputs[k] for k in ("root", "context", "scope", "epochNullifier")]


# ---------------------------------------------------------------- consent


def test_access_under_a_class_consent(chain: Chain, setup: Setup, patient: LocalAccount) -> None:
    grant_class(chain, patient.key, ANY_HOSPITAL, ROLES_NURSE)
    x = _request(chain, setup, setup.nurse, "granted", patient.address)
    receipt = _access(chain, setup, x)
    epoch = x.request[7] // EPOCH
    assert _granted(setup, receipt) == [
        {
            "recordId": x.record_id,
            "patient": patient.address,
            "epochNullifier": x.inputs["epochNullifier"],
            "epoch": epoch,
            "category": RADIOLOGY,
            "signal": x.signal,
            "relayer": chain.b,
        }
    ]
    # nothing in the log identifies the reader
    (log,) = receipt["logs"]
    blob = bytes(log["data"]) + b"".join(bytes(t) for t in log["topics"])
    nurse = setup.nurse
    for secret in (nurse.identity.commitment, nurse.identity.secret, nurse.leaf, nurse.attributes):
        assert secret.to_bytes(32, "big") not in blob
    assert _used(setup, x)
    # replay: the same request again, from any relayer, is refused before the verifier
    args = expect_zk_revert(
        lambda: setup.zk.gate.functions.access(x.request, x.proof).transact({"from": chain.c}),
        "ZkAccessGateReplayed",
    )
    assert args == (keccak(x.record_id + x.signal),)


def test_no_consent_no_anonymous_read(
    chain: Chain, setup: Setup, patient: LocalAccount, patient2: LocalAccount
) -> None:
    # a valid proof (the nurse is a nurse, the policy allows nurses) but no consent at all
    x = _request(chain, setup, setup.nurse, "no-consent", patient2.address)
    assert expect_zk_revert(
        lambda: setup.zk.gate.functions.access(x.request, x.proof).transact({"from": chain.b}),
        "ZkAccessGateNoConsent",
    ) == (patient2.address,)
    # another patient's consent does not help
    grant_class(chain, patient.key, ANY_HOSPITAL, ROLES_NURSE)
    _rejects(chain, setup, x.request, x.proof, "ZkAccessGateNoConsent")
    # a record-scoped consent covers that record only
    other = keccak(text="another record")
    grant_class(chain, patient2.key, ANY_HOSPITAL, ROLES_NURSE, SCOPE_RECORD, other)
    _rejects(chain, setup, x.with_(scopeKind=SCOPE_RECORD), x.proof, "ZkAccessGateNoConsent")
    # a category consent for psychiatry does not cover radiology
    grant_class(chain, patient2.key, ANY_HOSPITAL, ROLES_NURSE, SCOPE_CATEGORY, PSYCHIATRY)
    _rejects(chain, setup, x.with_(scopeKind=SCOPE_CATEGORY), x.proof, "ZkAccessGateNoConsent")
    # an unknown scope kind matches no consent
    _rejects(chain, setup, x.with_(scopeKind=3), x.proof, "ZkAccessGateNoConsent")
    assert not _used(setup, x)
    # an expired consent is no consent
    grant_class(chain, patient2.key, ANY_HOSPITAL, ROLES_NURSE, expires_in=60)
    chain.travel(61)
    y = _request(chain, setup, setup.nurse, "expired-consent", patient2.address)
    _rejects(chain, setup, y.request, y.proof, "ZkAccessGateNoConsent")


def test_record_and_category_scoped_consents(
    chain: Chain, setup: Setup, patient: LocalAccount
) -> None:
    x = _request(
        chain, setup, setup.nurse, "scoped-record", patient.address, scope_kind=SCOPE_RECORD
    )
    grant_class(chain, patient.key, ANY_HOSPITAL, ROLES_NURSE, SCOPE_RECORD, x.record_id)
    _access(chain, setup, x)
    y = _request(
        chain, setup, setup.nurse, "scoped-category", patient.address, scope_kind=SCOPE_CATEGORY
    )
    grant_class(chain, patient.key, ANY_HOSPITAL, ROLES_NURSE, SCOPE_CATEGORY, RADIOLOGY)
    _access(chain, setup, y)


def test_a_revoke_stops_the_next_anonymous_read(
    chain: Chain, setup: Setup, patient: LocalAccount
) -> None:
    grant_class(chain, patient.key, ANY_HOSPITAL, ROLES_NURSE)
    first = _request(chain, setup, setup.nurse, "before-revoke", patient.address)
    _access(chain, setup, first)
    revoke_class(chain, patient.key, ANY_HOSPITAL, ROLES_NURSE)
    after = _request(chain, setup, setup.nurse, "after-revoke", patient.address)
    _rejects(chain, setup, after.request, after.proof, "ZkAccessGateNoConsent")
    assert not _used(setup, after)


def test_a_physician_consent_does_not_admit_a_nurse(
    chain: Chain, setup: Setup, patient: LocalAccount
) -> None:
    grant_class(chain, patient.key, ANY_HOSPITAL, ROLES_PHYSICIAN)
    # the nurse cannot produce a proof for the physician-only mask
    forced = _request(
        chain,
        setup,
        setup.nurse,
        "nurse-as-doctor",
        patient.address,
        class_roles=ROLES_PHYSICIAN,
        prove=False,
    )
    assert forced.inputs["context"] >> 40 & 0xFFFF == ROLES_PHYSICIAN
    with pytest.raises(WitnessError):
        clinician_prover().prove(forced.inputs)
    # her valid nurse proof, presented under the physicians' class: the mask input differs
    own = _request(chain, setup, setup.nurse, "nurse-own", patient.address)
    _rejects(
        chain, setup, own.with_(classRoles=ROLES_PHYSICIAN), own.proof, "ZkAccessGateInvalidProof"
    )
    # naming the class she belongs to (nurses, or nurses + physicians): not consented
    _rejects(chain, setup, own.request, own.proof, "ZkAccessGateNoConsent")
    _rejects(chain, setup, own.with_(classRoles=BOTH), own.proof, "ZkAccessGateNoConsent")
    # the physician is admitted
    doc = _request(chain, setup, setup.doctor, "doctor-ok", patient.address)
    _access(chain, setup, doc)
    assert not _used(setup, own)


def test_a_hospital_class_admits_that_hospital_only(
    chain: Chain, setup: Setup, patient: LocalAccount
) -> None:
    grant_class(chain, patient.key, 2, BOTH)  # nurses and physicians of hospital 2 (b)
    # the nurse works at hospital 1: no proof for class hospital 2
    forced = _request(
        chain,
        setup,
        setup.nurse,
        "wrong-hospital",
        patient.address,
        class_hospital=2,
        class_roles=BOTH,
        prove=False,
    )
    with pytest.raises(WitnessError):
        clinician_prover().prove(forced.inputs)
    # her any-hospital proof relabelled as class hospital 2: the context differs
    own = _request(chain, setup, setup.nurse, "any-hospital", patient.address, class_roles=BOTH)
    _rejects(chain, setup, own.with_(classHospital=2), own.proof, "ZkAccessGateInvalidProof")
    # hospital 2's physician is admitted
    doc = _request(
        chain,
        setup,
        setup.doctor,
        "hospital-2",
        patient.address,
        class_hospital=2,
        class_roles=BOTH,
    )
    _access(chain, setup, doc)


# ---------------------------------------------------------------- consortium policy


def test_policy_is_set_only_by_a_consortium_vote(chain: Chain, setup: Setup) -> None:
    g = setup.zk.gate.functions
    cat = keccak(text="genetics")
    for who in (chain.a, chain.b, chain.outsider):
        assert expect_zk_revert(
            lambda w=who: g.setCategoryPolicy(cat, BOTH).transact({"from": w}),
            "ZkAccessGateNotConsortium",
        ) == (who,)
    assert g.categoryPolicy(cat).call() == 0
    data = bytes.fromhex(setup.zk.gate.encode_abi("setCategoryPolicy", args=[cat, BOTH])[2:])
    c = chain.consortium
    receipt = chain.send(c.functions.proposeCall(setup.zk.gate.address, data, "open"), chain.a)
    (created,) = c.events.ProposalCreated().process_receipt(receipt, errors=DISCARD)
    assert g.categoryPolicy(cat).call() == 0  # one vote of three
    receipt = send(chain, c.functions.vote(created["args"]["id"]), chain.c)
    (event,) = setup.zk.gate.events.PolicySet().process_receipt(receipt, errors=DISCARD)
    assert dict(event["args"]) == {"category": cat, "allowedRoles": BOTH}
    assert g.categoryPolicy(cat).call() == BOTH


def test_policy_narrower_than_the_consent(
    chain: Chain, setup: Setup, patient: LocalAccount
) -> None:
    grant_class(chain, patient.key, ANY_HOSPITAL, BOTH)
    # psychiatry: physicians only, so mask = BOTH & PHYSICIAN
    forced = _request(
        chain,
        setup,
        setup.nurse,
        "psych-nurse",
        patient.address,
        category=PSYCHIATRY,
        class_roles=BOTH,
        prove=False,
    )
    assert forced.inputs["context"] >> 40 & 0xFFFF == ROLES_PHYSICIAN
    with pytest.raises(WitnessError):
        clinician_prover().prove(forced.inputs)
    # a proof made for the consent's wider mask does not match the narrowed one
    wide = _request(
        chain,
        setup,
        setup.nurse,
        "psych-wide",
        patient.address,
        category=PSYCHIATRY,
        class_roles=BOTH,
        mask=BOTH,
    )
    _rejects(chain, setup, wide.request, wide.proof, "ZkAccessGateInvalidProof")
    # the same proof relabelled as radiology (where the mask is BOTH) would match, but
    # radiology is another category: only the consortium's policy decides the mask
    # a category no policy opens: no role at all
    nowhere = wide.with_(category=keccak(text="closed"))
    assert expect_zk_revert(
        lambda: setup.zk.gate.functions.access(nowhere, wide.proof).transact({"from": chain.b}),
        "ZkAccessGateRolesNotAllowed",
    ) == (keccak(text="closed"), BOTH)
    # a nurse-only class in psychiatry: the intersection is empty
    nurse_only = wide.with_(classRoles=ROLES_NURSE)
    expect_zk_revert(
        lambda: setup.zk.gate.functions.access(nurse_only, wide.proof).transact({"from": chain.b}),
        "ZkAccessGateRolesNotAllowed",
    )
    # the physician reads psychiatry under the same consent
    doc = _request(
        chain,
        setup,
        setup.doctor,
        "psych-doc",
        patient.address,
        category=PSYCHIATRY,
        class_roles=BOTH,
    )
    _access(chain, setup, doc)


# ---------------------------------------------------------------- binding


def test_a_proof_is_bound_to_its_chain_and_gate(
    chain: Chain, setup: Setup, patient: LocalAccount
) -> None:
    grant_class(chain, patient.key, ANY_HOSPITAL, ROLES_NURSE)
    zk = setup.zk
    dep = zk.deployment
    art = load_artifact("ZkAccessGate")
    factory = chain.w3.eth.contract(abi=art.abi, bytecode=art.bytecode)
    receipt = send(
        chain,
        factory.constructor(
            chain.deployment.consortium,
            dep.credential_registry,
            chain.deployment.consent_registry,
            dep.clinician_verifier,
            MAX_AGE,
            MAX_SKEW,
            EPOCH,
        ),
        chain.a,
    )
    gate2 = chain.contract("ZkAccessGate", receipt["contractAddress"])
    set_policy(chain, gate2, RADIOLOGY, BOTH)
    x = _request(chain, setup, setup.nurse, "bound", patient.address)
    # the proof for gate 1 does not open gate 2 (same registry, verifier, consent, policy)
    expect_zk_revert(
        lambda: gate2.functions.access(x.request, x.proof).call({"from": chain.b, "gas": TX_GAS}),
        "ZkAccessGateInvalidProof",
    )
    # a proof made for another chain id does not open gate 1
    other_chain = _request(
        chain,
        setup,
        setup.nurse,
        "bound-chain",
        patient.address,
        chain_id=chain.w3.eth.chain_id + 1,
    )
    _rejects(chain, setup, other_chain.request, other_chain.proof, "ZkAccessGateInvalidProof")
    # a proof made for gate 2 opens gate 2 only
    y = _request(chain, setup, setup.nurse, "bound-2", patient.address, gate=gate2.address)
    _rejects(chain, setup, y.request, y.proof, "ZkAccessGateInvalidProof")
    send(chain, gate2.functions.access(y.request, y.proof), chain.b)
    # and gate 1 still takes its own
    _access(chain, setup, x)


def test_a_relayer_cannot_relabel_the_patient_or_category(
    chain: Chain, setup: Setup, patient: LocalAccount, patient2: LocalAccount
) -> None:
    """Patient Q consented, patient P did not: a proof made for P's record (scope binds P)
    cannot be relayed as if the record were Q's, nor under another category's policy."""
    grant_class(chain, patient2.key, ANY_HOSPITAL, ROLES_NURSE)
    x = _request(chain, setup, setup.nurse, "relabel", patient.address)
    relabelled = (x.request[0], patient2.address, *x.request[2:])
    _rejects(chain, setup, relabelled, x.proof, "ZkAccessGateInvalidProof")
    other_category = keccak(text="lab")
    set_policy(chain, setup.zk.gate, other_category, BOTH)
    y = _request(chain, setup, setup.nurse, "relabel-cat", patient2.address)
    recategorised = (y.request[0], y.request[1], other_category, *y.request[3:])
    _rejects(chain, setup, recategorised, y.proof, "ZkAccessGateInvalidProof")
    # the honest request (patient Q, radiology) goes through
    _access(chain, setup, y)


def test_every_public_input_is_bound(chain: Chain, setup: Setup, patient: LocalAccount) -> None:
    grant_class(chain, patient.key, ANY_HOSPITAL, ROLES_NURSE)
    grant_class(chain, patient.key, 1, ROLES_NURSE)
    grant_class(chain, patient.key, ANY_HOSPITAL, BOTH)
    x = _request(chain, setup, setup.nurse, "tamper", patient.address)
    # a later root (still valid) instead of the proof's root
    issue(chain, setup.zk, identity("later"), chain.c, NURSE)
    assert setup.zk.registry.functions.isValidRoot(x.request[6]).call()
    cases = {
        "root": x.with_(root=setup.zk.tree.root),
        "context: currentTime": x.with_(currentTime=x.request[7] - 1),
        "context: mask": x.with_(classRoles=BOTH),
        "context: classHospital": x.with_(classHospital=1),
        "context: signal": x.with_(signal=keccak(text="someone else's key")),
        "scope: recordId": x.with_(recordId=keccak(text="another record")),
        "epochNullifier": x.with_(epochNullifier=(x.request[9] + 1) % R),
    }
    for label, request in cases.items():
        try:
            _rejects(chain, setup, request, x.proof, "ZkAccessGateInvalidProof")
        except AssertionError as err:  # pragma: no cover - names the failing case
            raise AssertionError(label) from err
    # the proof words themselves
    for i in (0, 2, 6):
        bad = list(x.proof)
        bad[i] = (bad[i] + 1) % (1 << 256)
        _rejects(chain, setup, x.request, bad, "ZkAccessGateInvalidProof")
    assert not _used(setup, x)
    _access(chain, setup, x)


def test_time_window(chain: Chain, setup: Setup, patient: LocalAccount) -> None:
    grant_class(chain, patient.key, ANY_HOSPITAL, ROLES_NURSE)
    now = chain.now()
    future = _request(
        chain,
        setup,
        setup.nurse,
        "future",
        patient.address,
        current_time=now + MAX_SKEW + 60,
        prove=False,
    )
    g = setup.zk.gate.functions
    assert (
        expect_zk_revert(
            lambda: g.access(future.request, future.proof).transact({"from": chain.b}),
            "ZkAccessGateFutureProof",
        )[0]
        == now + MAX_SKEW + 60
    )
    huge = future.with_(currentTime=2**64 - 1)  # no overflow panic, no context overflow
    expect_zk_revert(
        lambda: g.access(huge, future.proof).transact({"from": chain.b}), "ZkAccessGateFutureProof"
    )
    x = _request(chain, setup, setup.nurse, "stale", patient.address)
    chain.travel_to(x.request[7] + MAX_AGE + 1)
    expect_zk_revert(
        lambda: g.access(x.request, x.proof).transact({"from": chain.b}), "ZkAccessGateStaleProof"
    )
    assert not _used(setup, x)


def test_unknown_root(chain: Chain, setup: Setup, patient: LocalAccount) -> None:
    grant_class(chain, patient.key, ANY_HOSPITAL, ROLES_NURSE)
    x = _request(chain, setup, setup.nurse, "root", patient.address)
    g = setup.zk.gate.functions
    for bad in (424242, 0):
        assert expect_zk_revert(
            lambda b=bad: g.access(x.with_(root=b), x.proof).transact({"from": chain.b}),
            "ZkAccessGateUnknownRoot",
        ) == (bad,)


def test_a_removed_members_revoked_credential_stops_verifying(
    chain: Chain, setup: Setup, patient: LocalAccount
) -> None:
    grant_class(chain, patient.key, ANY_HOSPITAL, ROLES_NURSE)
    zk = setup.zk
    rogue = issue(chain, zk, identity("rogue-nurse"), chain.c, NURSE)
    x = _request(chain, setup, rogue, "rogue", patient.address)
    c = chain.consortium.functions
    receipt = chain.send(c.propose(1, chain.c, ""), chain.a)
    (created,) = chain.consortium.events.ProposalCreated().process_receipt(receipt, errors=DISCARD)
    chain.send(c.vote(created["args"]["id"]), chain.b)
    assert not c.isMember(chain.c).call()
    # another member revokes the removed hospital's credential
    revoke(chain, zk, rogue, chain.a)
    _rejects(chain, setup, x.request, x.proof, "ZkAccessGateUnknownRoot")
    # against the new root the revoked leaf (now 0) has no proof
    stale = dict(x.inputs, root=zk.tree.root)
    with pytest.raises(WitnessError):
        clinician_prover().prove(stale)
    # the others still read
    y = _request(chain, setup, setup.nurse, "after-rogue", patient.address)
    _access(chain, setup, y, chain.a)


# ---------------------------------------------------------------- batches and relayers


def test_batch(chain: Chain, setup: Setup, patient: LocalAccount, patient2: LocalAccount) -> None:
    grant_class(chain, patient.key, ANY_HOSPITAL, ROLES_NURSE)
    grant_class(chain, patient2.key, ANY_HOSPITAL, ROLES_PHYSICIAN)
    one = _request(chain, setup, setup.nurse, "batch-1", patient.address)
    two = _request(chain, setup, setup.doctor, "batch-2", patient2.address)
    three = _request(chain, setup, setup.nurse, "batch-3", patient.address)
    g = setup.zk.gate.functions
    for requests, proofs in (([], []), ([one.request], [one.proof, two.proof])):
        expect_zk_revert(
            lambda r=requests, p=proofs: g.accessBatch(r, p).transact({"from": chain.a}),
            "ZkAccessGateInvalidBatch",
        )
    expect_zk_revert(
        lambda: g.accessBatch([one.request, one.request], [one.proof, one.proof]).transact(
            {"from": chain.a}
        ),
        "ZkAccessGateReplayed",
    )
    # one bad proof (bound to another signal) fails the whole batch
    forged = three.with_(signal=keccak(text="forged"))
    expect_zk_revert(
        lambda: g.accessBatch(
            [one.request, two.request, forged], [one.proof, two.proof, three.proof]
        ).call({"from": chain.a, "gas": TX_GAS}),
        "ZkAccessGateInvalidProof",
    )
    # swapped proofs fail too
    expect_zk_revert(
        lambda: g.accessBatch([one.request, two.request], [two.proof, one.proof]).call(
            {"from": chain.a, "gas": TX_GAS}
        ),
        "ZkAccessGateInvalidProof",
    )
    # a consent missing for one request fails the batch before the verifier
    no_consent = two.with_(patient=patient.address)
    expect_zk_revert(
        lambda: g.accessBatch([one.request, no_consent], [one.proof, two.proof]).transact(
            {"from": chain.a}
        ),
        "ZkAccessGateNoConsent",
    )
    assert not any(_used(setup, x) for x in (one, two, three))
    receipt = send(
        chain,
        g.accessBatch(
            [one.request, two.request, three.request], [one.proof, two.proof, three.proof]
        ),
        chain.a,
    )
    events = _granted(setup, receipt)
    assert [e["epochNullifier"] for e in events] == [x.request[9] for x in (one, two, three)]
    assert [e["patient"] for e in events] == [patient.address, patient2.address, patient.address]
    assert {e["relayer"] for e in events} == {chain.a}
    assert all(_used(setup, x) for x in (one, two, three))
    # the same credential, record and epoch would give the same epoch nullifier: here the
    # records differ, so the nurse's two reads have different ones
    assert one.request[9] != three.request[9]


def test_epoch_nullifier_counts_readers_per_record_and_epoch(
    chain: Chain, setup: Setup, patient: LocalAccount
) -> None:
    """Two reads of one record by one credential in one epoch carry the same epoch
    nullifier (auditors count one reader); another credential has another one."""
    grant_class(chain, patient.key, ANY_HOSPITAL, BOTH)
    record = keccak(text="shared record")
    reads = [
        _request(chain, setup, who, label, patient.address, class_roles=BOTH, record_id=record)
        for who, label in ((setup.nurse, "r1"), (setup.nurse, "r2"), (setup.doctor, "r3"))
    ]
    receipt = send(
        chain,
        setup.zk.gate.functions.accessBatch([x.request for x in reads], [x.proof for x in reads]),
        chain.c,
    )
    events = _granted(setup, receipt)
    assert {e["recordId"] for e in events} == {record}
    nullifiers = [e["epochNullifier"] for e in events]
    assert nullifiers[0] == nullifiers[1] != nullifiers[2]
    assert len({e["epoch"] for e in events}) == 1


def test_relayer_must_be_a_member(chain: Chain, setup: Setup, patient: LocalAccount) -> None:
    grant_class(chain, patient.key, ANY_HOSPITAL, ROLES_NURSE)
    x = _request(chain, setup, setup.nurse, "relayer", patient.address, prove=False)
    g = setup.zk.gate.functions
    expect_zk_revert(
        lambda: g.access(x.request, x.proof).transact({"from": chain.outsider}),
        "ConsortiumGatedNotMember",
    )
    expect_zk_revert(
        lambda: g.accessBatch([x.request], [x.proof]).transact({"from": chain.outsider}),
        "ConsortiumGatedNotMember",
    )


def test_constructor_checks(chain: Chain, setup: Setup) -> None:
    dep = setup.zk.deployment
    zero = "0x" + "00" * 20
    art = load_artifact("ZkAccessGate")
    factory = chain.w3.eth.contract(abi=art.abi, bytecode=art.bytecode)
    cons, consent = chain.deployment.consortium, chain.deployment.consent_registry
    reg, ver = dep.credential_registry, dep.clinician_verifier
    for args in (
        (cons, zero, consent, ver, 60, 0, EPOCH),
        (cons, reg, zero, ver, 60, 0, EPOCH),
        (cons, reg, consent, zero, 60, 0, EPOCH),
        (cons, reg, consent, ver, 0, 0, EPOCH),
        (cons, reg, consent, ver, 60, 0, 0),
        (cons, reg, consent, ver, 60, 2**32, EPOCH),
    ):
        expect_zk_revert(
            lambda a=args: factory.constructor(*a).transact({"from": chain.a}),
            "ZkAccessGateInvalidConfig",
        )


def test_batch_consent_answers_are_reused_only_for_the_same_consent(
    chain: Chain, setup: Setup, patient: LocalAccount, patient2: LocalAccount
) -> None:
    """accessBatch asks the consent registry once per run of requests naming the same
    (patient, class, scope kind, scope): a request that differs in any of them is asked
    again, so a live consent never covers a neighbour it does not name."""
    nurse = setup.nurse
    first = _request(chain, setup, nurse, "cache-1", patient.address, scope_kind=SCOPE_RECORD)
    grant_class(chain, patient.key, ANY_HOSPITAL, ROLES_NURSE, SCOPE_RECORD, first.record_id)
    g = setup.zk.gate.functions
    # same patient and class, record scope, another record: not consented
    other_record = _request(
        chain, setup, nurse, "cache-2", patient.address, scope_kind=SCOPE_RECORD
    )
    # same record and class, another patient: not consented
    other_patient = _request(
        chain, setup, nurse, "cache-3", patient2.address, scope_kind=SCOPE_RECORD
    ).with_(recordId=first.record_id)
    # same patient and record, another class (hospital 2's nurses): not consented
    other_class = first.with_(classHospital=2, signal=keccak(text="cache-4"))
    for bad in (other_record.request, other_patient, other_class):
        expect_zk_revert(
            lambda b=bad: g.accessBatch([first.request, b], [first.proof, first.proof]).transact(
                {"from": chain.a}
            ),
            "ZkAccessGateNoConsent",
        )
    assert not _used(setup, first)
