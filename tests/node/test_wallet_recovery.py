"""Key loss and recovery, end to end through the node: a patient's RecoverableWallet holds
their records and consents; the key is lost; guardians approve a new key through the node;
after the delay the new key signs in and revokes, and the old key is worthless. Plus the
attacks: a rogue recovery the owner cancels, non-guardian and replayed approvals, a
finalize before the delay, and relays for addresses that are not our wallets (refused
without sending anything)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account
from eth_account.messages import encode_defunct
from eth_account.signers.local import LocalAccount

from node.client import ApiError, EmrClient, Scope
from node.settings import Settings, WalletsSettings
from tests.node.conftest import RunningNode, make_settings, start_node
from tests.node.production import ProductionServices

DELAY = 3  # seconds: the test node's wallets.min_recovery_delay is 1


@dataclass(frozen=True)
class WalletKey:
    """Signs as ``wallet`` with ``owner``'s key: what a browser wallet does for a contract
    account (the client's login and consent helpers read ``.address`` and ``.key``)."""

    address: str
    owner: LocalAccount

    @property
    def key(self) -> bytes:
        return bytes(self.owner.key)

    def sign_message(self, message: Any) -> Any:
        return self.owner.sign_message(message)


def _settings(base: Settings) -> Settings:
    return base.model_copy(update={"wallets": WalletsSettings(min_recovery_delay=1)})


@pytest.fixture(params=["embedded", pytest.param("production", marks=pytest.mark.integration)])
def wallet_node(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RunningNode]:
    data_dir = tmp_path / "node"
    if request.param == "production":
        services: ProductionServices = request.getfixturevalue("production_services")
        settings = _settings(services.settings(data_dir))
    else:
        settings = _settings(make_settings(data_dir))
    rn = start_node(data_dir, settings)
    yield rn
    rn.stop()


@pytest.fixture
def hospital(wallet_node: RunningNode) -> Iterator[EmrClient]:
    with wallet_node.client(wallet_node.admin_token) as admin:
        token = admin.create_token("ehr", "hospital")
    with wallet_node.client(token) as c:
        yield c


@pytest.fixture
def public(wallet_node: RunningNode) -> Iterator[EmrClient]:
    with wallet_node.client() as c:
        yield c


def _refused(call: Any, status: int) -> ApiError:
    with pytest.raises(ApiError) as info:
        call()
    assert info.value.status == status, (info.value.status, info.value.detail)
    return info.value


def _sends(rn: RunningNode) -> tuple[int, int]:
    """(head block, the hospital's sent transactions): both unchanged = nothing was sent."""
    w3 = rn.node.chain.web3  # type: ignore[attr-defined]
    return int(w3.eth.block_number), int(w3.eth.get_transaction_count(rn.node.hospital))


def _approval(
    public: EmrClient,
    wallet: str,
    guardian: LocalAccount,
    new_owner: str,
    *,
    nonce: int | None = None,
    deadline: int | None = None,
) -> dict[str, Any]:
    td = public.wallets.typed_data(wallet)
    message = {
        "newOwner": new_owner,
        "nonce": td["nonce"] if nonce is None else nonce,
        # A day: a shared test chain's clock may run ahead of the wall clock.
        "deadline": int(time.time()) + 86_400 if deadline is None else deadline,
    }
    payload = {
        "types": {
            "EIP712Domain": td["types"]["EIP712Domain"],
            "ApproveRecovery": td["types"]["ApproveRecovery"],
        },
        "primaryType": "ApproveRecovery",
        "domain": td["domain"],
        "message": message,
    }
    signed = Account.sign_typed_data(guardian.key, full_message=payload)
    return {
        "new_owner": new_owner,
        "guardian": guardian.address,
        "deadline": message["deadline"],
        "signature": "0x" + signed.signature.hex(),
    }


def _post(public: EmrClient, path: str, body: dict[str, Any] | None = None) -> Any:
    return public._json("POST", path, json=body)


def _wait_until_ready(public: EmrClient, wallet: str) -> None:
    """Until the node judges the pending recovery ready by the chain's clock (which, on a
    shared test chain, may run ahead of the wall clock)."""
    give_up = time.monotonic() + 60
    while not public.wallets.show(wallet)["pending"]["ready"]:
        assert time.monotonic() < give_up, "the recovery never became ready"
        time.sleep(0.5)


def test_key_loss_and_recovery_end_to_end(
    wallet_node: RunningNode, hospital: EmrClient, public: EmrClient
) -> None:
    old_key, new_key, clinician = Account.create(), Account.create(), Account.create()
    guardians = [Account.create() for _ in range(3)]
    created = hospital.wallets.create(old_key.address, [g.address for g in guardians], 2, DELAY)
    wallet = created["address"]
    assert created["tx_hash"].startswith("0x")
    shown = public.wallets.show(wallet)
    assert shown == {
        "address": wallet,
        "owner": old_key.address,
        "guardians": [g.address for g in guardians],
        "threshold": 2,
        "delay": DELAY,
        "nonce": 0,
        "pending": None,
    }

    # the patient's records live under the wallet's address; the owner key consents for it
    rid = hospital.upload(wallet, b"HbA1c 6.1 %", category="lab")["record_id"]
    old = WalletKey(wallet, old_key)
    session = public.login(old)  # SIWE through ERC-1271
    assert public.read(rid, session).headers["x-access-basis"] == "patient"
    public.grant(old, clinician.address, Scope.category("lab"))
    clinician_s = public.login(clinician)
    assert public.read(rid, clinician_s).content == b"HbA1c 6.1 %"

    # the key is lost: two of three guardians approve a new owner through the node
    first = _post(
        public,
        f"/wallets/{wallet}/recovery/approvals",
        _approval(public, wallet, guardians[0], new_key.address),
    )
    assert first["pending"] == {
        "new_owner": new_key.address,
        "approvals": [guardians[0].address],
        "eta": None,
        "ready": False,
    }
    second = _post(
        public,
        f"/wallets/{wallet}/recovery/approvals",
        _approval(public, wallet, guardians[2], new_key.address),
    )
    pending = second["pending"]
    assert pending["approvals"] == [guardians[0].address, guardians[2].address]
    assert pending["eta"] is not None and pending["ready"] is False
    assert public.wallets.show(wallet)["pending"] == pending

    # finalize before eta: refused, nothing sent
    before = _sends(wallet_node)
    _refused(lambda: public.wallets.finalize(wallet), 409)
    assert _sends(wallet_node) == before
    _wait_until_ready(public, wallet)
    assert public.wallets.show(wallet)["pending"]["ready"] is True
    done = public.wallets.finalize(wallet)
    assert done["owner"] == new_key.address and done["tx_hash"].startswith("0x")
    shown = public.wallets.show(wallet)
    assert (shown["owner"], shown["nonce"], shown["pending"]) == (new_key.address, 1, None)

    # the new key signs in as the wallet and revokes; the clinician is refused from then on
    new = WalletKey(wallet, new_key)
    assert public.read(rid, public.login(new)).content == b"HbA1c 6.1 %"
    public.revoke(new, clinician.address, Scope.category("lab"))
    assert _refused(lambda: public.read(rid, clinician_s), 403).code == "consent_denied"

    # the old key can no longer sign in nor consent for the wallet
    _refused(lambda: public.login(old), 401)
    wallet_node.node.access_flusher.flush_now()  # the refused read's log entry goes first
    before = _sends(wallet_node)
    _refused(lambda: public.grant(old, clinician.address, Scope.category("lab")), 400)
    assert _sends(wallet_node) == before
    # and a guardian's approval from the finished round cannot be replayed
    replay = _approval(public, wallet, guardians[1], new_key.address, nonce=0)
    _refused(lambda: _post(public, f"/wallets/{wallet}/recovery/approvals", replay), 400)


def test_owner_cancels_a_rogue_recovery(
    wallet_node: RunningNode, hospital: EmrClient, public: EmrClient
) -> None:
    owner, thief = Account.create(), Account.create()
    guardians = [Account.create() for _ in range(3)]
    wallet = hospital.wallets.create(owner.address, [g.address for g in guardians], 2, DELAY)[
        "address"
    ]
    # two colluding guardians start a recovery to a key of their own
    for g in guardians[:2]:
        body = _approval(public, wallet, g, thief.address)
        _post(public, f"/wallets/{wallet}/recovery/approvals", body)
    assert public.wallets.show(wallet)["pending"]["new_owner"] == thief.address

    # only the owner's signature cancels: a guardian's or the thief's is refused unsent
    before = _sends(wallet_node)
    for signer in (guardians[0], thief):
        _refused(lambda s=signer: public.wallets.cancel(wallet, s), 401)
    assert _sends(wallet_node) == before
    assert public.wallets.cancel(wallet, owner)["tx_hash"].startswith("0x")
    shown = public.wallets.show(wallet)
    assert (shown["pending"], shown["nonce"], shown["owner"]) == (None, 1, owner.address)

    time.sleep(DELAY + 1.1)  # past when the cancelled recovery would have been ready
    _refused(lambda: public.wallets.finalize(wallet), 409)
    assert public.wallets.show(wallet)["owner"] == owner.address
    # the owner still signs in as the wallet
    assert public.login(WalletKey(wallet, owner))


def test_approvals_are_checked_before_anything_is_sent(
    wallet_node: RunningNode, hospital: EmrClient, public: EmrClient
) -> None:
    owner, new_owner, stranger = Account.create(), Account.create(), Account.create()
    guardians = [Account.create() for _ in range(2)]
    wallet = hospital.wallets.create(owner.address, [g.address for g in guardians], 2, DELAY)[
        "address"
    ]
    path = f"/wallets/{wallet}/recovery/approvals"
    before = _sends(wallet_node)
    # not a guardian
    _refused(
        lambda: _post(public, path, _approval(public, wallet, stranger, new_owner.address)), 401
    )
    # a stranger's signature presented as a guardian's
    forged = _approval(public, wallet, stranger, new_owner.address)
    forged["guardian"] = guardians[0].address
    assert "not" in _refused(lambda: _post(public, path, forged), 401).detail
    # a signature of another round, or with an expired deadline
    stale = _approval(public, wallet, guardians[0], new_owner.address, nonce=5)
    _refused(lambda: _post(public, path, stale), 401)
    expired = _approval(public, wallet, guardians[0], new_owner.address, deadline=1)
    _refused(lambda: _post(public, path, expired), 400)
    # the owner itself as the new owner
    _refused(
        lambda: _post(public, path, _approval(public, wallet, guardians[0], owner.address)), 400
    )
    # malformed input: clear 4xx
    _refused(lambda: _post(public, path, {"new_owner": "0x12"}), 422)
    _refused(lambda: _post(public, "/wallets/not-an-address/recovery/finalize"), 400)
    assert _sends(wallet_node) == before

    # a valid approval counts once: its replay is refused unsent
    body = _approval(public, wallet, guardians[0], new_owner.address)
    _post(public, path, body)
    before = _sends(wallet_node)
    _refused(lambda: _post(public, path, body), 409)
    _refused(lambda: public.wallets.finalize(wallet), 409)  # nothing pending
    assert _sends(wallet_node) == before


def test_relays_for_other_addresses_are_refused_without_sending(
    wallet_node: RunningNode, hospital: EmrClient, public: EmrClient
) -> None:
    eoa, guardian = Account.create(), Account.create()
    ours = hospital.wallets.create(eoa.address, [guardian.address], 1, DELAY)["address"]
    td = public.wallets.typed_data(ours)
    assert td["domain"]["verifyingContract"] == ours
    assert td["primary_types"] == ["ApproveRecovery", "CancelRecovery"]
    factory = wallet_node.node.wallets.factory  # type: ignore[union-attr]
    before = _sends(wallet_node)
    for address in (eoa.address, factory, wallet_node.node.chain.deployment.consent_registry):
        _refused(lambda a=address: public.wallets.show(a), 404)
        _refused(lambda a=address: public.wallets.typed_data(a), 404)
        body = _approval(public, ours, guardian, Account.create().address)
        _refused(
            lambda a=address, b=body: _post(public, f"/wallets/{a}/recovery/approvals", b), 404
        )
        _refused(lambda a=address: public.wallets.finalize(a), 404)
        cancel = {"deadline": int(time.time()) + 86_400, "signature": "0x" + "11" * 65}
        _refused(lambda a=address, c=cancel: _post(public, f"/wallets/{a}/recovery/cancel", c), 404)
    assert _sends(wallet_node) == before


def test_wallet_creation_rules(
    wallet_node: RunningNode, hospital: EmrClient, public: EmrClient
) -> None:
    owner, g1, g2 = Account.create(), Account.create(), Account.create()
    before = _sends(wallet_node)
    # who may: a hospital token only
    _refused(lambda: public.wallets.create(owner.address, [g1.address], 1, DELAY), 401)
    # a delay below the node's minimum, a threshold above the guardians, owner as guardian
    _refused(lambda: hospital.wallets.create(owner.address, [g1.address], 1, 0), 400)
    _refused(lambda: hospital.wallets.create(owner.address, [g1.address], 2, DELAY), 400)
    _refused(lambda: hospital.wallets.create(owner.address, [owner.address], 1, DELAY), 400)
    _refused(lambda: hospital.wallets.create(owner.address, [g1.address, g1.address], 1, 9), 400)
    _refused(lambda: hospital.wallets.create(owner.address, [], 1, DELAY), 422)
    assert _sends(wallet_node) == before
    address = hospital.wallets.create(owner.address, [g1.address, g2.address], 1, DELAY)["address"]
    # the same settings again: 409 naming the wallet, nothing sent
    before = _sends(wallet_node)
    err = _refused(
        lambda: hospital.wallets.create(owner.address, [g1.address, g2.address], 1, DELAY), 409
    )
    assert address in err.detail
    assert _sends(wallet_node) == before


def test_eoa_sign_in_is_unchanged(public: EmrClient) -> None:
    person = Account.create()
    assert public.login(person)
    # a signature by another key for this address is refused
    challenge = public._json("POST", "/auth/challenge", json={"address": person.address})
    other = Account.create().sign_message(encode_defunct(text=challenge["message"]))
    body = {"message": challenge["message"], "signature": "0x" + other.signature.hex()}
    _refused(lambda: public._json("POST", "/auth/login", json=body), 401)
