"""RecoverableWallet and its factory: creation, ERC-1271, guardian approvals (EOA and
ERC-1271 guardians), the delay, the owner's cancellation, replays, and the ConsentRegistry
honouring the wallet's owner before and after a recovery."""

from __future__ import annotations

from typing import Any

import pytest
from contract_helpers import (
    ERRORS,
    ZERO32,
    Chain,
    domain_of,
    expect_revert,
    grant_tuple,
    sign,
)
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils import function_signature_to_4byte_selector, keccak
from web3.contract import Contract
from web3.logs import DISCARD

from node.chain.artifacts import load_artifact
from node.chain.wallet_typed_data import full_message, wallet_domain
from node.chain.wallets import clone_code

MAGIC = bytes.fromhex("1626ba7e")
INVALID = b"\xff" * 4
DAY = 86_400
HOUR = 3_600
ALL = 2

# The wallet's, factory's and OZ's errors, for expect_revert.
for _name in ("RecoverableWallet", "RecoverableWalletFactory"):
    for _item in load_artifact(_name).abi:
        if _item["type"] == "error":
            _types = [i["type"] for i in _item["inputs"]]
            _sel = function_signature_to_4byte_selector(f"{_item['name']}({','.join(_types)})")
            ERRORS[_sel] = (_item["name"], _types)
ERRORS[function_signature_to_4byte_selector("FailedDeployment()")] = ("FailedDeployment", [])


def _key(label: str) -> LocalAccount:
    return Account.from_key(keccak(text=label))


OWNER, NEW_OWNER, STRANGER = _key("wallet-owner"), _key("wallet-new-owner"), _key("stranger")
GUARDIANS = [_key(f"guardian-{i}") for i in range(3)]


@pytest.fixture
def factory(chain: Chain) -> Contract:
    return chain.deploy("RecoverableWalletFactory")


def create(
    chain: Chain,
    factory: Contract,
    *,
    owner: str = OWNER.address,
    guardians: list[str] | None = None,
    threshold: int = 2,
    delay: int = DAY,
) -> Contract:
    gs = [g.address for g in GUARDIANS] if guardians is None else guardians
    args = (owner, gs, threshold, delay, ZERO32)
    predicted = factory.functions.predictWallet(*args).call()
    receipt = chain.send(factory.functions.createWallet(*args), chain.outsider)
    created = factory.events.WalletCreated().process_receipt(receipt, errors=DISCARD)
    assert created[0]["args"]["wallet"] == predicted
    assert created[0]["args"]["creator"] == chain.outsider
    return chain.contract("RecoverableWallet", predicted)


def approval_sig(
    chain: Chain,
    wallet: Contract,
    signer: LocalAccount,
    new_owner: str,
    *,
    nonce: int | None = None,
    deadline: int | None = None,
) -> tuple[int, bytes]:
    deadline = chain.now() + HOUR if deadline is None else deadline
    message = {
        "newOwner": new_owner,
        "nonce": wallet.functions.nonce().call() if nonce is None else nonce,
        "deadline": deadline,
    }
    dom = wallet_domain(chain.w3.eth.chain_id, wallet.address)
    payload = full_message("ApproveRecovery", message, dom)
    return deadline, bytes(Account.sign_typed_data(signer.key, full_message=payload).signature)


def cancel_sig(
    chain: Chain, wallet: Contract, signer: LocalAccount, *, nonce: int | None = None
) -> tuple[int, bytes]:
    deadline = chain.now() + HOUR
    message = {
        "nonce": wallet.functions.nonce().call() if nonce is None else nonce,
        "deadline": deadline,
    }
    dom = wallet_domain(chain.w3.eth.chain_id, wallet.address)
    payload = full_message("CancelRecovery", message, dom)
    return deadline, bytes(Account.sign_typed_data(signer.key, full_message=payload).signature)


def approve(
    chain: Chain, wallet: Contract, guardian: LocalAccount, new_owner: str = NEW_OWNER.address
) -> Any:
    deadline, sig = approval_sig(chain, wallet, guardian, new_owner)
    fn = wallet.functions.approveRecovery(new_owner, guardian.address, deadline, sig)
    return chain.send(fn, chain.outsider)


def signs(wallet: Contract, key: LocalAccount, digest: bytes | None = None) -> bool:
    digest = digest or keccak(text="anything")
    signature = bytes(Account.unsafe_sign_hash(digest, key.key).signature)
    return bool(wallet.functions.isValidSignature(digest, signature).call() == MAGIC)


# ---------------------------------------------------------------- creation


def test_create_sets_up_a_clone_at_the_predicted_address(chain: Chain, factory: Contract) -> None:
    wallet = create(chain, factory)
    f = wallet.functions
    assert f.owner().call() == OWNER.address
    assert f.guardians().call() == [g.address for g in GUARDIANS]
    assert (f.threshold().call(), f.recoveryDelay().call(), f.nonce().call()) == (2, DAY, 0)
    assert list(f.pendingRecovery().call())[1:] == [0, 0]  # nothing pending
    implementation = factory.functions.implementation().call()
    assert bytes(chain.w3.eth.get_code(wallet.address)) == clone_code(implementation)
    # the EIP-712 domain is the clone's own
    assert domain_of(wallet)["verifyingContract"] == wallet.address
    assert domain_of(wallet)["name"] == "RecoverableWallet"


def test_neither_the_implementation_nor_a_wallet_can_be_initialized_again(
    chain: Chain, factory: Contract
) -> None:
    wallet = create(chain, factory)
    impl = chain.contract("RecoverableWallet", factory.functions.implementation().call())
    for target in (impl, wallet):
        fn = target.functions.initialize(STRANGER.address, [chain.outsider], 1, 0)
        expect_revert(
            lambda fn=fn: fn.transact({"from": chain.outsider}),
            "RecoverableWalletAlreadyInitialized",
        )
    assert wallet.functions.owner().call() == OWNER.address


def test_the_same_settings_cannot_be_taken_twice(chain: Chain, factory: Contract) -> None:
    create(chain, factory)
    args = (OWNER.address, [g.address for g in GUARDIANS], 2, DAY, ZERO32)
    expect_revert(
        lambda: factory.functions.createWallet(*args).transact({"from": chain.outsider}),
        "FailedDeployment",
    )


@pytest.mark.parametrize(
    ("owner", "guardians", "threshold", "delay", "error"),
    [
        ("0x" + "00" * 20, None, 1, DAY, "RecoverableWalletInvalidOwner"),
        (None, [], 1, DAY, "RecoverableWalletInvalidGuardian"),
        (
            None,
            [_key(f"g{i}").address for i in range(9)],
            1,
            DAY,
            "RecoverableWalletInvalidGuardian",
        ),
        (None, [GUARDIANS[0].address] * 2, 1, DAY, "RecoverableWalletInvalidGuardian"),
        (None, [OWNER.address], 1, DAY, "RecoverableWalletInvalidGuardian"),
        (None, ["0x" + "00" * 20], 1, DAY, "RecoverableWalletInvalidGuardian"),
        (None, None, 0, DAY, "RecoverableWalletInvalidThreshold"),
        (None, None, 4, DAY, "RecoverableWalletInvalidThreshold"),
        (None, None, 2, 2**32, "RecoverableWalletInvalidDelay"),
    ],
)
def test_invalid_settings_are_refused(
    chain: Chain,
    factory: Contract,
    owner: str | None,
    guardians: list[str] | None,
    threshold: int,
    delay: int,
    error: str,
) -> None:
    gs = [g.address for g in GUARDIANS] if guardians is None else guardians
    fn = factory.functions.createWallet(owner or OWNER.address, gs, threshold, delay, ZERO32)
    expect_revert(lambda: fn.transact({"from": chain.outsider}), error)


# ---------------------------------------------------------------- ERC-1271


def test_only_the_owner_key_signs_for_the_wallet(chain: Chain, factory: Contract) -> None:
    wallet = create(chain, factory)
    assert signs(wallet, OWNER)
    assert not signs(wallet, STRANGER)
    assert not signs(wallet, GUARDIANS[0])  # guardians recover; they never sign for it
    digest = keccak(text="x")
    assert wallet.functions.isValidSignature(digest, b"\x01\x02").call() == INVALID
    assert wallet.functions.isValidSignature(digest, b"\x00" * 65).call() == INVALID


# ---------------------------------------------------------------- recovery


def test_recovery_end_to_end(chain: Chain, factory: Contract) -> None:
    wallet = create(chain, factory)
    receipt = approve(chain, wallet, GUARDIANS[0])
    approved = wallet.events.RecoveryApproved().process_receipt(receipt, errors=DISCARD)
    assert approved[0]["args"]["approvals"] == 1
    assert wallet.functions.approvals(NEW_OWNER.address).call() == 0b001
    assert wallet.functions.pendingRecovery().call()[1] == 0  # below the threshold

    receipt = approve(chain, wallet, GUARDIANS[2])
    started = wallet.events.RecoveryStarted().process_receipt(receipt, errors=DISCARD)
    eta = started[0]["args"]["eta"]
    assert eta == chain.now() + DAY
    assert wallet.functions.pendingRecovery().call() == [NEW_OWNER.address, eta, 0b101]

    # the delay holds: nobody can finalize before eta
    expect_revert(
        lambda: wallet.functions.finalizeRecovery().transact({"from": chain.outsider}),
        "RecoverableWalletRecoveryNotReady",
    )
    chain.travel_to(eta - 2)
    expect_revert(
        lambda: wallet.functions.finalizeRecovery().transact({"from": chain.outsider}),
        "RecoverableWalletRecoveryNotReady",
    )
    assert signs(wallet, OWNER) and not signs(wallet, NEW_OWNER)
    chain.travel_to(eta)
    receipt = chain.send(wallet.functions.finalizeRecovery(), chain.outsider)
    done = wallet.events.RecoveryFinalized().process_receipt(receipt, errors=DISCARD)
    assert done[0]["args"]["previousOwner"] == OWNER.address
    assert wallet.functions.owner().call() == NEW_OWNER.address
    assert wallet.functions.nonce().call() == 1
    assert wallet.functions.pendingRecovery().call()[1] == 0
    # the old key is worthless now; the new one signs
    assert signs(wallet, NEW_OWNER) and not signs(wallet, OWNER)
    expect_revert(
        lambda: wallet.functions.finalizeRecovery().transact({"from": chain.outsider}),
        "RecoverableWalletNoPendingRecovery",
    )


def test_approvals_are_checked(chain: Chain, factory: Contract) -> None:
    wallet = create(chain, factory)
    f = wallet.functions
    new = NEW_OWNER.address

    def refused(guardian: str, deadline: int, sig: bytes, error: str, to: str = new) -> None:
        fn = f.approveRecovery(to, guardian, deadline, sig)
        expect_revert(lambda: fn.transact({"from": chain.outsider}), error)

    # a stranger is no guardian, even with a well-formed signature of their own
    deadline, sig = approval_sig(chain, wallet, STRANGER, new)
    refused(STRANGER.address, deadline, sig, "RecoverableWalletNotGuardian")
    # a stranger's signature presented as a guardian's
    refused(GUARDIANS[0].address, deadline, sig, "RecoverableWalletInvalidSignature")
    # a guardian's signature for another new owner, another round, another wallet
    deadline, sig = approval_sig(chain, wallet, GUARDIANS[0], STRANGER.address)
    refused(GUARDIANS[0].address, deadline, sig, "RecoverableWalletInvalidSignature")
    deadline, sig = approval_sig(chain, wallet, GUARDIANS[0], new, nonce=1)
    refused(GUARDIANS[0].address, deadline, sig, "RecoverableWalletInvalidSignature")
    other = create(chain, factory, threshold=1)
    deadline, sig = approval_sig(chain, other, GUARDIANS[0], new)
    refused(GUARDIANS[0].address, deadline, sig, "RecoverableWalletInvalidSignature")
    # expired
    deadline, sig = approval_sig(chain, wallet, GUARDIANS[0], new, deadline=chain.now() - 1)
    refused(GUARDIANS[0].address, deadline, sig, "RecoverableWalletExpiredDeadline")
    # the owner itself, or zero, as the new owner
    for to in (OWNER.address, "0x" + "00" * 20):
        deadline, sig = approval_sig(chain, wallet, GUARDIANS[0], to)
        refused(GUARDIANS[0].address, deadline, sig, "RecoverableWalletInvalidOwner", to)
    # a replayed approval counts once
    deadline, sig = approval_sig(chain, wallet, GUARDIANS[0], new)
    chain.send(f.approveRecovery(new, GUARDIANS[0].address, deadline, sig), chain.outsider)
    refused(GUARDIANS[0].address, deadline, sig, "RecoverableWalletAlreadyApproved")
    assert f.approvals(new).call() == 0b001
    # once pending, no approval is taken (not even for another new owner)
    approve(chain, wallet, GUARDIANS[1])
    deadline, sig = approval_sig(chain, wallet, GUARDIANS[2], STRANGER.address)
    refused(
        GUARDIANS[2].address, deadline, sig, "RecoverableWalletRecoveryPending", STRANGER.address
    )


def test_split_approvals_do_not_add_up(chain: Chain, factory: Contract) -> None:
    wallet = create(chain, factory)
    approve(chain, wallet, GUARDIANS[0], NEW_OWNER.address)
    approve(chain, wallet, GUARDIANS[1], STRANGER.address)  # a rogue guardian's candidate
    assert wallet.functions.pendingRecovery().call()[1] == 0


def test_owner_cancels_a_rogue_recovery(chain: Chain, factory: Contract) -> None:
    wallet = create(chain, factory)
    approve(chain, wallet, GUARDIANS[0], STRANGER.address)
    approve(chain, wallet, GUARDIANS[1], STRANGER.address)
    assert wallet.functions.pendingRecovery().call()[0] == STRANGER.address
    f = wallet.functions
    # not the owner's signature (a guardian's, the candidate's)
    for signer in (GUARDIANS[0], STRANGER):
        deadline, sig = cancel_sig(chain, wallet, signer)
        expect_revert(
            lambda d=deadline, s=sig: f.cancelRecovery(d, s).transact({"from": chain.outsider}),
            "RecoverableWalletInvalidSignature",
        )
    deadline, sig = cancel_sig(chain, wallet, OWNER)
    receipt = chain.send(f.cancelRecovery(deadline, sig), chain.outsider)
    cancelled = wallet.events.RecoveryCancelled().process_receipt(receipt, errors=DISCARD)
    assert cancelled[0]["args"]["newOwner"] == STRANGER.address
    assert f.nonce().call() == 1 and f.pendingRecovery().call()[1] == 0
    # the cancellation cannot be replayed, and the rogue round's approvals are void
    expect_revert(
        lambda: f.cancelRecovery(deadline, sig).transact({"from": chain.outsider}),
        "RecoverableWalletInvalidSignature",
    )
    assert f.approvals(STRANGER.address).call() == 0
    chain.travel(DAY + 1)
    expect_revert(
        lambda: f.finalizeRecovery().transact({"from": chain.outsider}),
        "RecoverableWalletNoPendingRecovery",
    )
    assert f.owner().call() == OWNER.address


def test_a_contract_guardian_approves_through_erc1271(chain: Chain, factory: Contract) -> None:
    safe_owner = _key("guardian-safe-owner")
    safe = chain.deploy("ERC1271WalletMock", safe_owner.address)
    wallet = create(chain, factory, guardians=[safe.address, GUARDIANS[0].address], threshold=1)
    deadline, sig = approval_sig(chain, wallet, STRANGER, NEW_OWNER.address)
    expect_revert(
        lambda: wallet.functions.approveRecovery(
            NEW_OWNER.address, safe.address, deadline, sig
        ).transact({"from": chain.outsider}),
        "RecoverableWalletInvalidSignature",
    )
    deadline, sig = approval_sig(chain, wallet, safe_owner, NEW_OWNER.address)
    fn = wallet.functions.approveRecovery(NEW_OWNER.address, safe.address, deadline, sig)
    chain.send(fn, chain.outsider)
    assert wallet.functions.pendingRecovery().call()[0] == NEW_OWNER.address


# ---------------------------------------------------------------- with the ConsentRegistry


def test_consent_registry_follows_the_wallet_owner(
    chain: Chain, factory: Contract, clinician: LocalAccount
) -> None:
    wallet = create(chain, factory, threshold=1, delay=HOUR)
    dom = domain_of(chain.consent)

    def grant(key: LocalAccount) -> Any:
        now = chain.now()
        msg = {
            "patient": wallet.address,
            "grantee": clinician.address,
            "scopeKind": ALL,
            "scope": ZERO32,
            "expiresAt": now + DAY,
            "nonce": chain.consent.functions.nonces(wallet.address).call(),
            "deadline": now + HOUR,
        }
        fn = chain.consent.functions.grantWithSig(
            grant_tuple(msg), sign(key.key, "Grant", msg, dom)
        )
        return lambda: fn.transact({"from": chain.outsider})

    chain.w3.eth.wait_for_transaction_receipt(grant(OWNER)())
    expect_revert(grant(NEW_OWNER), "ConsentRegistryInvalidSignature")
    approve(chain, wallet, GUARDIANS[1])
    chain.travel(HOUR)
    chain.send(wallet.functions.finalizeRecovery(), chain.outsider)
    expect_revert(grant(OWNER), "ConsentRegistryInvalidSignature")  # the lost key
    chain.w3.eth.wait_for_transaction_receipt(grant(NEW_OWNER)())
    assert chain.consent.functions.nonces(wallet.address).call() == 2
