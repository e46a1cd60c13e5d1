"""Category policies of zero-knowledge reads change only by a Consortium vote: one hospital
token proposes, and the policy moves only once a strict majority of members voted. No
member can set a policy directly, and the old PUT route is gone."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount
from typer.testing import CliRunner
from web3.logs import DISCARD

from node.chain.artifacts import load_artifact
from node.chain.exceptions import ContractReverted
from node.cli.main import app
from node.client import ApiError, EmrClient
from node.consent.typed_data import category_hash
from tests.node.conftest import RunningNode
from zk.credentials import roles_mask


def _status(call) -> tuple[int, str]:  # type: ignore[no-untyped-def]
    with pytest.raises(ApiError) as err:
        call()
    return err.value.status, err.value.detail


def _w3(rn: RunningNode) -> Any:
    return rn.node.chain.web3  # type: ignore[attr-defined]


def _consortium(rn: RunningNode) -> Any:
    chain = rn.node.chain
    return _w3(rn).eth.contract(
        address=chain.deployment.consortium, abi=load_artifact("Consortium").abi
    )


def _fund(rn: RunningNode, to: str) -> None:
    """Send 1 ETH from the node's account (through the client's lock and nonce)."""
    chain, w3 = rn.node.chain, _w3(rn)
    with chain._lock:  # type: ignore[attr-defined]
        account = chain._account  # type: ignore[attr-defined]
        tx = {
            "to": to,
            "value": 10**18,
            "gas": 21_000,
            "gasPrice": w3.eth.gas_price,
            "nonce": w3.eth.get_transaction_count(account.address, "pending"),
            "chainId": chain.chain_id,
        }
        w3.eth.wait_for_transaction_receipt(
            w3.eth.send_raw_transaction(account.sign_transaction(tx).raw_transaction)
        )
        chain._nonce = None  # type: ignore[attr-defined]


def _send_as(rn: RunningNode, member: LocalAccount, fn: Any) -> dict[str, Any]:
    w3 = _w3(rn)
    tx = fn.build_transaction(
        {
            "from": member.address,
            "nonce": w3.eth.get_transaction_count(member.address),
            "gas": 1_000_000,
            "gasPrice": w3.eth.gas_price,
        }
    )
    receipt = w3.eth.wait_for_transaction_receipt(
        w3.eth.send_raw_transaction(member.sign_transaction(tx).raw_transaction)
    )
    return dict(receipt)


def _admit(rn: RunningNode, members: list[LocalAccount], count: int) -> list[LocalAccount]:
    """Admit ``count`` more members (each admission voted by every current member)."""
    consortium = _consortium(rn)
    chain = rn.node.chain
    for i in range(count):
        new = Account.create()
        _fund(rn, new.address)
        _tx, receipt = chain.transact(consortium.functions.propose(0, new.address, f"H{i + 2}"))  # type: ignore[attr-defined]
        if not chain.is_member(new.address):
            proposal_id = int(
                consortium.events.ProposalCreated().process_receipt(receipt, errors=DISCARD)[0][
                    "args"
                ]["id"]
            )
            for voter in members:
                if chain.is_member(new.address):
                    break
                _send_as(rn, voter, consortium.functions.vote(proposal_id))
        assert chain.is_member(new.address)
        members.append(new)
    return members


@pytest.fixture
def rn(embedded_node: RunningNode) -> RunningNode:
    return embedded_node


@pytest.fixture
def hospital(rn: RunningNode) -> Iterator[EmrClient]:
    with rn.client(rn.admin_token) as admin:
        token = admin.create_token("ehr", "hospital")
    with rn.client(token) as c:
        yield c


def _policy(rn: RunningNode, category: str) -> int:
    assert rn.node.zk is not None
    return rn.node.zk.gate.category_policy(category_hash(category))


def test_one_member_is_a_majority_and_applies_at_once(rn: RunningNode, hospital: EmrClient) -> None:
    r = hospital._call("POST", "/zk/policies/lab/proposals", json={"roles": ["physician", "nurse"]})
    assert r.status_code == 201
    made = r.json()
    assert made["proposal"]["state"] == "executed" and made["proposal"]["kind"] == "call"
    assert made["allowed_roles"] == roles_mask(["physician", "nurse"]) == made["proposed_mask"]
    assert made["roles"] == ["physician", "nurse"]
    assert made["proposal"]["policy"]["roles"] == ["physician", "nurse"]
    assert _policy(rn, "lab") == roles_mask(["physician", "nurse"])
    shown = hospital.zk.policy("lab")
    assert shown["allowed_roles"] == made["allowed_roles"] and shown["proposals"] == []
    # Closing a category is a policy too (no role may read it with a proof).
    assert hospital.zk.propose_policy("lab", [])["allowed_roles"] == 0


@pytest.mark.parametrize("others", [1, 2])
def test_one_hospital_cannot_change_a_policy_alone(
    rn: RunningNode, hospital: EmrClient, others: int
) -> None:
    members = _admit(rn, [], others)  # a 2- or 3-member consortium
    chain = rn.node.chain
    assert len(chain.members()) == 1 + others

    r = hospital._call("POST", "/zk/policies/lab/proposals", json={"roles": ["nurse"]})
    assert r.status_code == 202
    made = r.json()
    pid = made["proposal"]["id"]
    assert made["proposal"]["state"] == "open" and made["proposal"]["votes"] == 1
    assert made["proposal"]["votes_needed"] == (1 + others) // 2 + 1
    assert made["allowed_roles"] == 0 and _policy(rn, "lab") == 0

    # The same hospital again (another token, or the same): still one vote.
    with rn.client(rn.admin_token) as admin:
        second = admin.create_token("ehr-2", "hospital")
    for client in (hospital, rn.client(second)):
        status, detail = _status(lambda c=client: c.governance.vote(pid))
        assert status == 409 and "already voted" in detail
    # Another proposal from the same hospital does not add up either.
    assert (
        hospital._call("POST", "/zk/policies/lab/proposals", json={"roles": ["nurse"]}).status_code
        == 202
    )
    assert _policy(rn, "lab") == 0

    # A member's account calling the gate directly is refused: only the Consortium may.
    assert rn.node.zk is not None
    gate = _w3(rn).eth.contract(
        address=rn.node.zk.gate.gate_address, abi=load_artifact("ZkAccessGate").abi
    )
    with pytest.raises(ContractReverted) as err:
        chain.transact(gate.functions.setCategoryPolicy(category_hash("lab"), 0xFFFF))  # type: ignore[attr-defined]
    assert err.value.name == "ZkAccessGateNotConsortium"
    # The old single-hospital route is gone.
    put = httpx.put(
        f"{rn.url}/zk/policies/lab",
        json={"roles": ["nurse"]},
        headers={"Authorization": f"Bearer {hospital.token}"},
    )
    assert put.status_code in (404, 405)
    assert _policy(rn, "lab") == 0

    shown = hospital.zk.policy("lab")
    assert shown["allowed_roles"] == 0
    assert [p["id"] for p in shown["proposals"]] == [pid, pid + 1]
    assert shown["proposals"][0]["policy"]["roles"] == ["nurse"]
    assert hospital.zk.policy("radiology")["proposals"] == []

    # A majority: the other members vote (each its own account).
    needed = (1 + others) // 2 + 1
    for voter in members[: needed - 1]:
        _send_as(rn, voter, _consortium(rn).functions.vote(pid))
    assert _policy(rn, "lab") == roles_mask(["nurse"])
    with rn.client() as public:
        after = public.governance.proposal(pid)
        assert after["state"] == "executed" and after["votes"] == needed
        assert after["target"] == rn.node.zk.gate.gate_address
        shown = public.zk.policy("lab")
        assert shown["roles"] == ["nurse"] and [p["id"] for p in shown["proposals"]] == [pid + 1]
    status, detail = _status(lambda: hospital.governance.vote(pid))
    assert status == 409 and "executed" in detail


def test_a_vote_through_the_api_makes_the_majority(rn: RunningNode, hospital: EmrClient) -> None:
    """Another member proposes; this node's hospital token votes and tips it over."""
    (other,) = _admit(rn, [], 1)
    assert rn.node.zk is not None
    gate = rn.node.zk.gate.gate_address
    from node.flows.govern_policy import set_category_policy_call

    data = set_category_policy_call(category_hash("imaging"), roles_mask(["radiologist"]))
    receipt = _send_as(rn, other, _consortium(rn).functions.proposeCall(gate, data, "imaging"))
    pid = int(
        _consortium(rn)
        .events.ProposalCreated()
        .process_receipt(receipt, errors=DISCARD)[0]["args"]["id"]
    )
    assert hospital.zk.policy("imaging")["proposals"][0]["id"] == pid
    voted = hospital.governance.vote(pid)
    assert voted["state"] == "executed" and voted["votes"] == 2
    assert _policy(rn, "imaging") == roles_mask(["radiologist"])


def test_who_may_call_and_bad_input(rn: RunningNode, hospital: EmrClient) -> None:
    url = f"{rn.url}/zk/policies/lab/proposals"
    assert httpx.post(url, json={"roles": ["nurse"]}).status_code == 401
    with rn.client(rn.admin_token) as admin:
        auditor = admin.create_token("audit", "auditor")
    headers = {"Authorization": f"Bearer {auditor}"}
    assert httpx.post(url, json={"roles": ["nurse"]}, headers=headers).status_code == 403
    assert httpx.post(f"{rn.url}/governance/proposals/1/vote").status_code == 401
    assert httpx.post(f"{rn.url}/governance/proposals/1/vote", headers=headers).status_code == 403
    head = rn.node.chain.head_block()
    status, detail = _status(lambda: hospital.zk.propose_policy("lab", ["surgeon-general"]))
    assert status == 400 and "role" in detail
    for body in ({"roles": "nurse"}, {"roles": ["nurse"], "mask": 65535}, {}):
        assert (
            httpx.post(
                url, json=body, headers={"Authorization": f"Bearer {hospital.token}"}
            ).status_code
            == 422
        )
    assert rn.node.chain.head_block() == head  # nothing was proposed
    assert _status(lambda: hospital.governance.proposal(999))[0] == 404
    assert _status(lambda: hospital.governance.vote(999))[0] == 404
    assert httpx.get(f"{rn.url}/governance/proposals/abc").status_code == 422
    assert httpx.get(f"{rn.url}/governance/proposals/0").status_code == 422


def test_cli_propose_show_and_vote(rn: RunningNode, hospital: EmrClient) -> None:
    (other,) = _admit(rn, [], 1)
    runner = CliRunner()
    result = runner.invoke(
        app,
        [
            "zk",
            "policy",
            "propose",
            "lab",
            "--roles",
            "physician",
            "--url",
            rn.url,
            "--token",
            hospital.token or "",
        ],
    )
    assert result.exit_code == 0, result.output
    assert '"state": "open"' in result.output
    pid = rn.node.chain.proposal(
        rn.node.chain.call_proposals(rn.node.zk.gate.gate_address)[-1].proposal_id
    )  # type: ignore[union-attr]
    assert pid is not None
    shown = runner.invoke(app, ["governance", "show", str(pid.proposal_id), "--url", rn.url])
    assert shown.exit_code == 0 and '"votes": 1' in shown.output
    again = runner.invoke(
        app,
        [
            "governance",
            "vote",
            str(pid.proposal_id),
            "--url",
            rn.url,
            "--token",
            hospital.token or "",
        ],
    )
    assert again.exit_code != 0 and "already voted" in again.output
    _send_as(rn, other, _consortium(rn).functions.vote(pid.proposal_id))
    shown = runner.invoke(app, ["zk", "policy", "show", "lab", "--url", rn.url])
    assert shown.exit_code == 0 and '"physician"' in shown.output


def test_openapi_documents_every_status(rn: RunningNode) -> None:
    paths = httpx.get(f"{rn.url}/openapi.json").json()["paths"]
    expected = {
        ("/zk/policies/{category}/proposals", "post"): {"201", "202", "400", "401", "403", "404"},
        ("/zk/policies/{category}", "get"): {"200", "400", "404", "503"},
        ("/governance/proposals/{proposal_id}", "get"): {"200", "404", "422", "503"},
        ("/governance/proposals/{proposal_id}/vote", "post"): {
            "200",
            "400",
            "401",
            "403",
            "404",
            "409",
            "422",
            "503",
        },
        ("/consents/class-grants", "post"): {"200", "202", "400", "409", "422", "503"},
        ("/consents/class-revokes", "post"): {"200", "202", "400", "409", "422", "503"},
    }
    for (path, method), statuses in expected.items():
        assert statuses <= set(paths[path][method]["responses"]), (path, method)
    assert "put" not in paths["/zk/policies/{category}"]
