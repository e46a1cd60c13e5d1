"""Consortium: founding set, majority admission and removal, expiry, last-member rule."""

from __future__ import annotations

import pytest
from contract_helpers import FOUNDER_NAMES, Chain, expect_revert
from web3.logs import DISCARD

from node.chain.deploy import deploy_contracts
from node.chain.exceptions import ContractReverted

ADMIT, REMOVE = 0, 1
WEEK = 7 * 24 * 3600


def _propose(chain: Chain, kind: int, subject: str, name: str, sender: str) -> tuple[int, dict]:
    receipt = chain.send(chain.consortium.functions.propose(kind, subject, name), sender)
    created = chain.consortium.events.ProposalCreated().process_receipt(receipt, errors=DISCARD)
    assert len(created) == 1
    return int(created[0]["args"]["id"]), receipt


def _admit(chain: Chain, subject: str, name: str, voters: list[str]) -> None:
    pid, _ = _propose(chain, ADMIT, subject, name, voters[0])
    for voter in voters[1:]:
        chain.send(chain.consortium.functions.vote(pid), voter)
    assert chain.consortium.functions.isMember(subject).call()


def test_founders(chain: Chain) -> None:
    c = chain.consortium.functions
    assert c.memberCount().call() == 3
    assert c.members().call() == [chain.a, chain.b, chain.c]
    for address, name in zip([chain.a, chain.b, chain.c], FOUNDER_NAMES, strict=True):
        assert c.isMember(address).call()
        assert c.memberName(address).call() == name
        got_name, active, since = c.member(address).call()
        assert (got_name, active) == (name, True) and since > 0
    assert not c.isMember(chain.outsider).call()
    assert c.memberName(chain.outsider).call() == ""
    assert c.proposalCount().call() == 0
    admitted = chain.consortium.events.MemberAdmitted.get_logs(from_block=0)
    assert [(e["args"]["member"], e["args"]["name"]) for e in admitted] == list(
        zip([chain.a, chain.b, chain.c], FOUNDER_NAMES, strict=True)
    )


@pytest.mark.parametrize(
    "founders",
    [
        [("A", "x"), ("A", "y")],  # duplicate (A replaced below)
        [("0x0000000000000000000000000000000000000000", "zero")],
        [("A", "")],  # empty name
    ],
)
def test_constructor_rejects_bad_founders(chain: Chain, founders: list[tuple[str, str]]) -> None:
    founders = [(chain.a if a == "A" else a, n) for a, n in founders]
    with pytest.raises(ContractReverted) as info:
        deploy_contracts(chain.w3, founders)
    assert info.value.name == "ConsortiumInvalidFounders"


def test_constructor_rejects_length_mismatch(chain: Chain) -> None:
    expect_revert(
        lambda: chain.deploy("Consortium", [chain.a, chain.b], ["only one"]),
        "ConsortiumInvalidFounders",
    )
    expect_revert(lambda: chain.deploy("Consortium", [], []), "ConsortiumInvalidFounders")


def test_non_member_cannot_propose_vote_or_execute(chain: Chain) -> None:
    c = chain.consortium.functions
    args = expect_revert(
        lambda: c.propose(ADMIT, chain.outsider, "Me").transact({"from": chain.outsider}),
        "ConsortiumNotMember",
    )
    assert args == (chain.outsider,)
    pid, _ = _propose(chain, ADMIT, chain.accounts[4], "Delta", chain.a)
    expect_revert(lambda: c.vote(pid).transact({"from": chain.outsider}), "ConsortiumNotMember")
    expect_revert(lambda: c.execute(pid).transact({"from": chain.outsider}), "ConsortiumNotMember")


def test_admission_needs_strict_majority(chain: Chain) -> None:
    c = chain.consortium.functions
    d = chain.accounts[4]
    pid, receipt = _propose(chain, ADMIT, d, "Delta Hospital", chain.a)
    assert pid == 1
    ev = chain.consortium.events
    created = ev.ProposalCreated().process_receipt(receipt, errors=DISCARD)[0]["args"]
    assert (created["kind"], created["subject"], created["proposer"]) == (ADMIT, d, chain.a)
    # the proposer's vote counts: 1 of 3 is not a strict majority
    voted = ev.ProposalVoted().process_receipt(receipt, errors=DISCARD)
    assert [e["args"]["voter"] for e in voted] == [chain.a]
    assert not c.isMember(d).call()
    kind, subject, proposer, created_at, expires_at, votes, executed = c.proposal(pid).call()
    assert (kind, subject, proposer, votes, executed) == (ADMIT, d, chain.a, 1, False)
    assert expires_at == created_at + WEEK
    assert c.hasVoted(pid, chain.a).call() and not c.hasVoted(pid, chain.b).call()

    receipt = chain.send(c.vote(pid), chain.b)  # 2 of 3: 4 > 3
    assert c.isMember(d).call()
    assert c.memberCount().call() == 4
    assert c.memberName(d).call() == "Delta Hospital"
    assert ev.ProposalExecuted().process_receipt(receipt, errors=DISCARD)[0]["args"]["id"] == pid
    admitted = ev.MemberAdmitted().process_receipt(receipt, errors=DISCARD)[0]["args"]
    assert (admitted["member"], admitted["name"]) == (d, "Delta Hospital")
    assert c.proposal(pid).call()[6] is True

    expect_revert(lambda: c.vote(pid).transact({"from": chain.c}), "ConsortiumProposalExecuted")
    # the new member can act at once
    _propose(chain, ADMIT, chain.accounts[5], "Epsilon", d)


def test_double_vote_and_unknown_proposal(chain: Chain) -> None:
    c = chain.consortium.functions
    pid, _ = _propose(chain, ADMIT, chain.accounts[4], "Delta", chain.a)
    args = expect_revert(lambda: c.vote(pid).transact({"from": chain.a}), "ConsortiumAlreadyVoted")
    assert args == (pid, chain.a)
    for bad in (0, 99):
        expect_revert(
            lambda b=bad: c.vote(b).transact({"from": chain.b}), "ConsortiumUnknownProposal"
        )
    expect_revert(lambda: c.proposal(99).call(), "ConsortiumUnknownProposal")


def test_invalid_proposals(chain: Chain) -> None:
    c = chain.consortium.functions
    zero = "0x0000000000000000000000000000000000000000"
    cases = [
        (3, chain.accounts[4], "Delta"),  # unknown kind
        (2, zero, ""),  # rotate to the zero address
        (ADMIT, zero, "Zero"),
        (ADMIT, chain.b, "Beta again"),  # already a member
        (ADMIT, chain.accounts[4], ""),  # no name
        (REMOVE, chain.outsider, ""),  # not a member
    ]
    for kind, subject, name in cases:
        expect_revert(
            lambda k=kind, s=subject, n=name: c.propose(k, s, n).transact({"from": chain.a}),
            "ConsortiumInvalidProposal",
        )


def test_proposal_expires_after_seven_days(chain: Chain) -> None:
    c = chain.consortium.functions
    d, e = chain.accounts[4], chain.accounts[5]
    first, _ = _propose(chain, ADMIT, d, "Delta", chain.a)
    second, _ = _propose(chain, ADMIT, e, "Epsilon", chain.a)
    first_at, second_at = c.proposal(first).call()[3], c.proposal(second).call()[3]
    assert second_at > first_at

    chain.travel_to(first_at + WEEK - 1)
    receipt = chain.send(c.vote(first), chain.b)  # mined at createdAt + 7 days: still open
    assert chain.w3.eth.get_block(receipt["blockNumber"])["timestamp"] == first_at + WEEK
    assert c.isMember(d).call()

    chain.travel_to(second_at + WEEK + 1)
    args = expect_revert(
        lambda: c.vote(second).transact({"from": chain.b}), "ConsortiumProposalExpired"
    )
    assert args == (second,)
    expect_revert(
        lambda: c.execute(second).transact({"from": chain.b}), "ConsortiumProposalExpired"
    )
    assert not c.isMember(e).call()


def test_removal_by_majority(chain: Chain) -> None:
    c = chain.consortium.functions
    pid, _ = _propose(chain, REMOVE, chain.c, "", chain.a)
    assert c.isMember(chain.c).call()
    receipt = chain.send(c.vote(pid), chain.b)
    removed = chain.consortium.events.MemberRemoved().process_receipt(receipt, errors=DISCARD)
    assert removed[0]["args"]["member"] == chain.c
    assert not c.isMember(chain.c).call()
    assert c.memberCount().call() == 2
    assert sorted(c.members().call()) == sorted([chain.a, chain.b])
    assert c.member(chain.c).call()[:2] == ["Gamma Medical Center", False]
    expect_revert(
        lambda: c.propose(ADMIT, chain.outsider, "X").transact({"from": chain.c}),
        "ConsortiumNotMember",
    )
    # a removed member loses write access to the registries at once
    expect_revert(
        lambda: chain.records.functions.anchorBatch(
            b"\x01" * 32, [b"\x02" * 32], [chain.a]
        ).transact({"from": chain.c}),
        "ConsortiumGatedNotMember",
    )
    # and may be re-admitted later
    _admit(chain, chain.c, "Gamma Reopened", [chain.a, chain.b])
    assert c.memberName(chain.c).call() == "Gamma Reopened"


def test_vote_of_removed_member_no_longer_counts(chain: Chain) -> None:
    c = chain.consortium.functions
    d, e = chain.accounts[4], chain.accounts[5]
    _admit(chain, d, "Delta", [chain.a, chain.b])  # 4 members
    pid, _ = _propose(chain, ADMIT, e, "Epsilon", d)  # D's vote
    assert c.proposal(pid).call()[5] == 1
    rid, _ = _propose(chain, REMOVE, d, "", chain.a)
    chain.send(c.vote(rid), chain.b)
    chain.send(c.vote(rid), chain.c)  # 3 of 4
    assert not c.isMember(d).call() and c.memberCount().call() == 3
    assert c.proposal(pid).call()[5] == 0
    assert not c.hasVoted(pid, d).call()
    chain.send(c.vote(pid), chain.a)  # 1 valid vote of 3: D's old vote would have made 2
    assert not c.isMember(e).call()
    chain.send(c.vote(pid), chain.b)
    assert c.isMember(e).call()


def test_readmitted_member_votes_again(chain: Chain) -> None:
    c = chain.consortium.functions
    d = chain.accounts[4]
    _admit(chain, d, "Delta", [chain.a, chain.b])  # 4 members
    pid, _ = _propose(chain, ADMIT, chain.accounts[5], "Epsilon", d)
    rid, _ = _propose(chain, REMOVE, d, "", chain.a)
    chain.send(c.vote(rid), chain.b)
    chain.send(c.vote(rid), chain.c)
    _admit(chain, d, "Delta again", [chain.a, chain.b])  # new term: old vote void
    assert not c.hasVoted(pid, d).call()
    chain.send(c.vote(pid), d)
    assert c.hasVoted(pid, d).call()
    assert c.proposal(pid).call()[5] == 1


def test_execute_after_membership_shrinks(chain: Chain) -> None:
    c = chain.consortium.functions
    d, e = chain.accounts[4], chain.accounts[5]
    _admit(chain, d, "Delta", [chain.a, chain.b])  # 4 members
    pid, _ = _propose(chain, ADMIT, e, "Epsilon", chain.a)
    chain.send(c.vote(pid), chain.b)  # 2 of 4: no majority
    assert not c.isMember(e).call()
    args = expect_revert(lambda: c.execute(pid).transact({"from": chain.a}), "ConsortiumNoMajority")
    assert args == (pid,)
    rid, _ = _propose(chain, REMOVE, d, "", chain.c)
    chain.send(c.vote(rid), chain.a)
    chain.send(c.vote(rid), chain.b)  # D removed: 3 members, A and B = 2 of 3
    assert c.proposal(pid).call()[5] == 2
    receipt = chain.send(c.execute(pid), chain.c)
    executed = chain.consortium.events.ProposalExecuted().process_receipt(receipt, errors=DISCARD)
    assert executed[0]["args"]["id"] == pid
    assert c.isMember(e).call()


def test_last_member_cannot_be_removed(chain: Chain) -> None:
    c = chain.consortium.functions
    # 3 -> 2 members
    pid, _ = _propose(chain, REMOVE, chain.c, "", chain.a)
    chain.send(c.vote(pid), chain.b)
    # A proposes its own removal (1 of 2: pending), then A and B remove B
    self_removal, _ = _propose(chain, REMOVE, chain.a, "", chain.a)
    rid, _ = _propose(chain, REMOVE, chain.b, "", chain.a)
    chain.send(c.vote(rid), chain.b)
    assert c.members().call() == [chain.a]
    # the pending self-removal now has a majority (1 of 1) but would empty the consortium
    expect_revert(
        lambda: c.execute(self_removal).transact({"from": chain.a}), "ConsortiumLastMember"
    )
    expect_revert(
        lambda: c.propose(REMOVE, chain.a, "").transact({"from": chain.a}), "ConsortiumLastMember"
    )
    assert c.isMember(chain.a).call()


def test_single_founder_admits_alone(chain: Chain) -> None:
    dep = deploy_contracts(chain.w3, [(chain.outsider, "Solo")])
    solo = chain.contract("Consortium", dep.consortium)
    c = solo.functions
    expect_revert(
        lambda: c.propose(REMOVE, chain.outsider, "").transact({"from": chain.outsider}),
        "ConsortiumLastMember",
    )
    receipt = chain.send(c.propose(ADMIT, chain.accounts[4], "Second"), chain.outsider)
    admitted = solo.events.MemberAdmitted().process_receipt(receipt, errors=DISCARD)
    assert admitted[0]["args"]["name"] == "Second"
    assert c.memberCount().call() == 2


ROTATE = 2


def test_rotate_needs_a_majority_and_moves_the_membership(chain: Chain) -> None:
    c = chain.consortium.functions
    new = chain.accounts[4]
    pid, receipt = _propose(chain, ROTATE, new, "", chain.a)
    # 1 vote of 3: pending; the old address is still the member
    assert not c.isMember(new).call() and c.isMember(chain.a).call()
    assert not chain.consortium.events.MemberRotated().process_receipt(receipt, errors=DISCARD)
    kind, subject, proposer, *_rest, executed = c.proposal(pid).call()
    assert (kind, subject, proposer, executed) == (ROTATE, new, chain.a, False)
    receipt = chain.send(c.vote(pid), chain.b)
    rotated = chain.consortium.events.MemberRotated().process_receipt(receipt, errors=DISCARD)
    assert [(e["args"]["from"], e["args"]["to"]) for e in rotated] == [(chain.a, new)]
    assert c.isMember(new).call() and not c.isMember(chain.a).call()
    assert c.memberName(new).call() == FOUNDER_NAMES[0]
    assert c.memberCount().call() == 3
    assert sorted(c.members().call()) == sorted([new, chain.b, chain.c])
    # the new address acts as a member; the old one cannot
    _propose(chain, ADMIT, chain.accounts[5], "Epsilon", new)
    expect_revert(
        lambda: c.propose(ADMIT, chain.accounts[6], "Z").transact({"from": chain.a}),
        "ConsortiumNotMember",
    )


def test_rotate_is_refused_to_non_members_and_onto_members(chain: Chain) -> None:
    c = chain.consortium.functions
    expect_revert(
        lambda: c.propose(ROTATE, chain.accounts[4], "").transact({"from": chain.outsider}),
        "ConsortiumNotMember",
    )
    expect_revert(
        lambda: c.propose(ROTATE, chain.b, "").transact({"from": chain.a}),
        "ConsortiumInvalidProposal",
    )
    expect_revert(
        lambda: c.propose(3, chain.accounts[4], "").transact({"from": chain.a}),
        "ConsortiumInvalidProposal",
    )


def test_rotate_lapses_if_the_proposer_is_removed_meanwhile(chain: Chain) -> None:
    c = chain.consortium.functions
    pid, _ = _propose(chain, ROTATE, chain.accounts[4], "", chain.a)
    rid, _ = _propose(chain, REMOVE, chain.a, "", chain.b)
    chain.send(c.vote(rid), chain.c)
    assert not c.isMember(chain.a).call()
    # b + c are a majority of 2, but a no longer holds the membership it wanted to move
    chain.send(c.vote(pid), chain.b)  # a's vote lapsed: 1 of 2, no majority yet
    expect_revert(lambda: c.vote(pid).transact({"from": chain.c}), "ConsortiumInvalidProposal")
    assert not c.isMember(chain.accounts[4]).call()


def test_single_member_rotates_alone(chain: Chain) -> None:
    dep = deploy_contracts(chain.w3, [(chain.outsider, "Solo")])
    solo = chain.contract("Consortium", dep.consortium)
    c = solo.functions
    chain.send(c.propose(ROTATE, chain.accounts[4], ""), chain.outsider)
    assert c.members().call() == [chain.accounts[4]]
    assert c.memberName(chain.accounts[4]).call() == "Solo"


# ---------------------------------------------------------------- member ids

CALL = 3


def test_member_ids_follow_admission_rotation_and_removal(chain: Chain) -> None:
    c = chain.consortium.functions
    zero = "0x0000000000000000000000000000000000000000"
    # founders 1..n in order
    assert [c.memberId(x).call() for x in (chain.a, chain.b, chain.c)] == [1, 2, 3]
    assert [c.memberAddress(i).call() for i in (1, 2, 3)] == [chain.a, chain.b, chain.c]
    assert c.memberId(chain.outsider).call() == 0 and c.memberAddress(4).call() == zero
    assert c.memberAddress(0).call() == zero
    # an admission takes the next id
    d = chain.accounts[4]
    _admit(chain, d, "Delta", [chain.a, chain.b])
    assert c.memberId(d).call() == 4 and c.memberAddress(4).call() == d
    # a rotation moves the id; the old address keeps answering it for history
    new_a = chain.accounts[5]
    pid, _ = _propose(chain, ROTATE, new_a, "", chain.a)
    chain.send(c.vote(pid), chain.b)
    chain.send(c.vote(pid), chain.c)
    assert c.memberId(new_a).call() == 1 and c.memberAddress(1).call() == new_a
    assert c.memberId(chain.a).call() == 1 and not c.isMember(chain.a).call()
    # a removal keeps the id and its last address
    rid, _ = _propose(chain, REMOVE, chain.b, "", new_a)
    chain.send(c.vote(rid), chain.c)
    chain.send(c.vote(rid), d)
    assert not c.isMember(chain.b).call()
    assert c.memberId(chain.b).call() == 2 and c.memberAddress(2).call() == chain.b
    # ids are never reused: a re-admission takes a new id, the old one stays with its history
    _admit(chain, chain.b, "Beta again", [new_a, chain.c])
    assert c.memberId(chain.b).call() == 5 and c.memberAddress(5).call() == chain.b
    assert c.memberAddress(2).call() == chain.b
    e = chain.accounts[6]
    _admit(chain, e, "Epsilon", [new_a, chain.c, d])
    assert c.memberId(e).call() == 6


# ---------------------------------------------------------------- call proposals


def _target(chain: Chain):
    return chain.deploy("CallTargetMock")


def _propose_call(chain: Chain, target: str, data: bytes, sender: str) -> tuple[int, dict]:
    receipt = chain.send(
        chain.consortium.functions.proposeCall(target, data, "set the value"), sender
    )
    created = chain.consortium.events.ProposalCreated().process_receipt(receipt, errors=DISCARD)
    assert len(created) == 1
    return int(created[0]["args"]["id"]), receipt


def test_call_proposal_executes_only_with_a_majority(chain: Chain) -> None:
    c = chain.consortium.functions
    target = _target(chain)
    data = bytes.fromhex(target.encode_abi("setValue", args=[42])[2:])
    pid, receipt = _propose_call(chain, target.address, data, chain.a)
    ev = chain.consortium.events
    created = ev.ProposalCreated().process_receipt(receipt, errors=DISCARD)[0]["args"]
    assert (created["kind"], created["subject"], created["proposer"]) == (
        CALL,
        target.address,
        chain.a,
    )
    proposed = ev.CallProposed().process_receipt(receipt, errors=DISCARD)[0]["args"]
    assert (proposed["id"], proposed["target"], proposed["data"], proposed["description"]) == (
        pid,
        target.address,
        data,
        "set the value",
    )
    assert c.proposalCall(pid).call() == [target.address, data, "set the value"]
    # 1 of 3: not executed, the target untouched
    assert target.functions.calls().call() == 0
    assert c.proposal(pid).call()[6] is False
    # a non-majority execute is refused
    expect_revert(lambda: c.execute(pid).transact({"from": chain.b}), "ConsortiumNoMajority")
    receipt = chain.send(c.vote(pid), chain.b)
    assert ev.ProposalExecuted().process_receipt(receipt, errors=DISCARD)[0]["args"]["id"] == pid
    assert target.functions.value().call() == 42
    assert target.functions.caller().call() == chain.deployment.consortium
    assert target.functions.calls().call() == 1
    # executed once: no second run
    expect_revert(lambda: c.vote(pid).transact({"from": chain.c}), "ConsortiumProposalExecuted")
    expect_revert(lambda: c.execute(pid).transact({"from": chain.c}), "ConsortiumProposalExecuted")
    assert target.functions.calls().call() == 1


def test_reverting_call_leaves_the_proposal_open(chain: Chain) -> None:
    c = chain.consortium.functions
    target = _target(chain)
    chain.send(target.functions.setFailing(True), chain.outsider)
    data = bytes.fromhex(target.encode_abi("setValue", args=[7])[2:])
    pid, _ = _propose_call(chain, target.address, data, chain.a)
    # the majority vote runs the call, which reverts: the revert bubbles up, nothing changes
    args = expect_revert(lambda: c.vote(pid).transact({"from": chain.b}), "CallTargetMockFailed")
    assert args == (7,)
    assert c.proposal(pid).call()[6] is False
    assert not c.hasVoted(pid, chain.b).call()
    assert target.functions.calls().call() == 0
    # once the target accepts, the proposal can still pass
    chain.send(target.functions.setFailing(False), chain.outsider)
    chain.send(c.vote(pid), chain.b)
    assert c.proposal(pid).call()[6] is True
    assert target.functions.value().call() == 7


def test_call_proposal_rules(chain: Chain) -> None:
    c = chain.consortium.functions
    target = _target(chain)
    data = bytes.fromhex(target.encode_abi("setValue", args=[1])[2:])
    # non-members cannot propose a call, nor vote for one
    assert expect_revert(
        lambda: c.proposeCall(target.address, data, "x").transact({"from": chain.outsider}),
        "ConsortiumNotMember",
    ) == (chain.outsider,)
    pid, _ = _propose_call(chain, target.address, data, chain.a)
    expect_revert(lambda: c.vote(pid).transact({"from": chain.outsider}), "ConsortiumNotMember")
    assert target.functions.calls().call() == 0
    # the target must be a contract
    for bad in ("0x0000000000000000000000000000000000000000", chain.outsider):
        assert expect_revert(
            lambda b=bad: c.proposeCall(b, data, "x").transact({"from": chain.a}),
            "ConsortiumInvalidCallTarget",
        ) == (bad,)
    # kind 3 cannot come through propose (it has no calldata)
    expect_revert(
        lambda: c.propose(CALL, target.address, "").transact({"from": chain.a}),
        "ConsortiumInvalidProposal",
    )
    # proposalCall only for call proposals
    aid, _ = _propose(chain, ADMIT, chain.accounts[4], "Delta", chain.a)
    expect_revert(lambda: c.proposalCall(aid).call(), "ConsortiumNotCallProposal")
    expect_revert(lambda: c.proposalCall(99).call(), "ConsortiumUnknownProposal")


def test_call_proposal_expires(chain: Chain) -> None:
    c = chain.consortium.functions
    target = _target(chain)
    data = bytes.fromhex(target.encode_abi("setValue", args=[3])[2:])
    pid, _ = _propose_call(chain, target.address, data, chain.a)
    chain.travel(WEEK + 1)
    expect_revert(lambda: c.vote(pid).transact({"from": chain.b}), "ConsortiumProposalExpired")
    assert target.functions.calls().call() == 0


def test_single_member_call_executes_at_once(chain: Chain) -> None:
    dep = deploy_contracts(chain.w3, [(chain.outsider, "Solo")])
    solo = chain.contract("Consortium", dep.consortium)
    target = _target(chain)
    data = bytes.fromhex(target.encode_abi("setValue", args=[9])[2:])
    chain.send(solo.functions.proposeCall(target.address, data, "solo"), chain.outsider)
    assert target.functions.value().call() == 9
    assert target.functions.caller().call() == dep.consortium
