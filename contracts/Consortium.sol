// SPDX-License-Identifier: GPL-3.0-or-later
pragma solidity ^0.8.24;

import {IConsortium} from "./interfaces/IConsortium.sol";

/**
 * @title Consortium
 * @notice The member hospitals of the EMR network. The founding set is fixed at deployment;
 * afterwards members are admitted and removed by a strict majority of the current members.
 * @dev A vote counts while its voter is a member in the same membership term as when it voted:
 * a member removed after voting no longer counts, even if re-admitted later. Proposals expire
 * after {PROPOSAL_TTL}. The last member cannot be removed. A Rotate proposal moves its
 * proposer's membership (its name) to a new address when it passes; votes the old
 * address cast on other proposals lapse with it. A Call proposal makes this contract call
 * another one (consortium-wide settings). Member ids: see {IConsortium}.
 */
contract Consortium is IConsortium {
    /// @notice Lifetime of a proposal.
    uint64 public constant PROPOSAL_TTL = 7 days;

    struct Proposal {
        address subject;
        uint64 createdAt;
        ProposalKind kind;
        bool executed;
        address proposer;
        // Admit: the new member's name; Call: the description
        string name;
        // Call: the calldata sent to `subject`
        bytes callData;
        address[] voters;
        // voter => membership term (>= 1) in which it voted; 0 = never voted
        mapping(address => uint256) votedInTerm;
    }

    mapping(address => Member) private _members;
    // member => number of admissions so far (the current term when active)
    mapping(address => uint256) private _terms;
    // member => index + 1 in _memberList (0 = not listed)
    mapping(address => uint256) private _positions;
    address[] private _memberList;

    mapping(uint256 => Proposal) private _proposals;
    uint256 private _proposalCount;

    // member id => current (or last) address; ids start at 1
    mapping(uint32 => address) private _idAddresses;
    uint32 private _lastId;

    modifier onlyMember() {
        if (!_members[msg.sender].active) revert ConsortiumNotMember(msg.sender);
        _;
    }

    /**
     * @notice Creates the consortium with its founding members.
     * @dev Requirements:
     * - `founders` is not empty and has the same length as `names`;
     * - no founder is the zero address or listed twice; no name is empty.
     *
     * Emits one {MemberAdmitted} per founder.
     */
    constructor(address[] memory founders, string[] memory names) {
        if (founders.length == 0 || founders.length != names.length) revert ConsortiumInvalidFounders();
        for (uint256 i = 0; i < founders.length; ++i) {
            address founder = founders[i];
            if (founder == address(0) || _members[founder].active || bytes(names[i]).length == 0) {
                revert ConsortiumInvalidFounders();
            }
            _admit(founder, names[i], 0);
        }
    }

    /**
     * @inheritdoc IConsortium
     * @dev Requirements:
     * - the caller is a member ({ConsortiumNotMember});
     * - `kind` is 0 (Admit), 1 (Remove) or 2 (Rotate); `subject` is not zero; an admission names
     *   a non-member with a non-empty `name`; a removal names a member; a rotation names a
     *   non-member (the proposer's new address) ({ConsortiumInvalidProposal});
     * - a removal does not target the last member ({ConsortiumLastMember}).
     *
     * Emits {ProposalCreated} and {ProposalVoted} (the proposer's vote); if that vote is already a
     * strict majority, also {ProposalExecuted} and {MemberAdmitted} or {MemberRemoved} (a
     * rotation: {MemberRemoved}, {MemberAdmitted} and {MemberRotated}).
     */
    function propose(uint8 kind, address subject, string calldata name) external onlyMember returns (uint256 id) {
        // a call proposal needs calldata: {proposeCall}
        if (kind > uint8(ProposalKind.Rotate) || subject == address(0)) revert ConsortiumInvalidProposal();
        ProposalKind pkind = ProposalKind(kind);
        _checkApplicable(pkind, subject, name, msg.sender);

        id = ++_proposalCount;
        Proposal storage p = _proposals[id];
        p.subject = subject;
        p.createdAt = uint64(block.timestamp);
        p.kind = pkind;
        p.proposer = msg.sender;
        if (pkind == ProposalKind.Admit) p.name = name;
        emit ProposalCreated(id, kind, subject, msg.sender);

        _castVote(id, p);
        if (_hasMajority(p)) _execute(id, p);
    }

    /**
     * @inheritdoc IConsortium
     * @dev The call carries no value. The proposal is marked executed before the call, so the
     * target cannot re-enter to execute it twice; a revert undoes that mark with everything else.
     *
     * Requirements:
     * - the caller is a member ({ConsortiumNotMember});
     * - `target` is a contract ({ConsortiumInvalidCallTarget});
     * - if the proposer's vote is already a majority, the call succeeds (its revert data
     *   bubbles up).
     *
     * Emits {ProposalCreated} (kind 3, subject `target`), {CallProposed} and {ProposalVoted};
     * on a majority also {ProposalExecuted} (and whatever the target emits).
     */
    function proposeCall(address target, bytes calldata data, string calldata description)
        external
        onlyMember
        returns (uint256 id)
    {
        if (target.code.length == 0) revert ConsortiumInvalidCallTarget(target);
        id = ++_proposalCount;
        Proposal storage p = _proposals[id];
        p.subject = target;
        p.createdAt = uint64(block.timestamp);
        p.kind = ProposalKind.Call;
        p.proposer = msg.sender;
        p.name = description;
        p.callData = data;
        emit ProposalCreated(id, uint8(ProposalKind.Call), target, msg.sender);
        emit CallProposed(id, target, data, description);

        _castVote(id, p);
        if (_hasMajority(p)) _execute(id, p);
    }

    /**
     * @inheritdoc IConsortium
     * @dev Requirements:
     * - the caller is a member ({ConsortiumNotMember});
     * - proposal `id` exists ({ConsortiumUnknownProposal}), is not executed
     *   ({ConsortiumProposalExecuted}) and not expired ({ConsortiumProposalExpired});
     * - the caller has not voted for it in its current membership ({ConsortiumAlreadyVoted});
     * - if the vote completes a majority, the change is still applicable
     *   ({ConsortiumInvalidProposal}, {ConsortiumLastMember}).
     *
     * Emits {ProposalVoted}; on a majority also {ProposalExecuted} and {MemberAdmitted} or
     * {MemberRemoved}.
     */
    function vote(uint256 id) external onlyMember {
        Proposal storage p = _openProposal(id);
        _castVote(id, p);
        if (_hasMajority(p)) _execute(id, p);
    }

    /**
     * @inheritdoc IConsortium
     * @dev For a proposal whose majority appeared without a new vote (members removed since).
     *
     * Requirements:
     * - the caller is a member ({ConsortiumNotMember});
     * - proposal `id` exists, is not executed and not expired (as for {vote});
     * - its valid votes are a strict majority of the current members ({ConsortiumNoMajority});
     * - the change is still applicable ({ConsortiumInvalidProposal}, {ConsortiumLastMember}).
     *
     * Emits {ProposalExecuted} and {MemberAdmitted} or {MemberRemoved}.
     */
    function execute(uint256 id) external onlyMember {
        Proposal storage p = _openProposal(id);
        if (!_hasMajority(p)) revert ConsortiumNoMajority(id);
        _execute(id, p);
    }

    /**
     * @inheritdoc IConsortium
     * @dev Requirements: none. Emits nothing.
     */
    function isMember(address account) external view returns (bool) {
        return _members[account].active;
    }

    /**
     * @inheritdoc IConsortium
     * @dev Requirements: none. Emits nothing.
     */
    function memberId(address account) external view returns (uint32) {
        return _members[account].id;
    }

    /**
     * @inheritdoc IConsortium
     * @dev Requirements: none. Emits nothing.
     */
    function memberAddress(uint32 id) external view returns (address) {
        return _idAddresses[id];
    }

    /**
     * @inheritdoc IConsortium
     * @dev Requirements: proposal `id` exists and is a call proposal
     * ({ConsortiumUnknownProposal}, {ConsortiumNotCallProposal}). Emits nothing.
     */
    function proposalCall(uint256 id)
        external
        view
        returns (address target, bytes memory data, string memory description)
    {
        if (id == 0 || id > _proposalCount) revert ConsortiumUnknownProposal(id);
        Proposal storage p = _proposals[id];
        if (p.kind != ProposalKind.Call) revert ConsortiumNotCallProposal(id);
        return (p.subject, p.callData, p.name);
    }

    /**
     * @inheritdoc IConsortium
     * @dev Requirements: none. Emits nothing.
     */
    function memberCount() external view returns (uint256) {
        return _memberList.length;
    }

    /**
     * @inheritdoc IConsortium
     * @dev Requirements: none. Emits nothing.
     */
    function members() external view returns (address[] memory) {
        return _memberList;
    }

    /**
     * @inheritdoc IConsortium
     * @dev Requirements: none. Emits nothing.
     */
    function memberName(address account) external view returns (string memory) {
        return _members[account].name;
    }

    /**
     * @inheritdoc IConsortium
     * @dev Requirements: none. Emits nothing.
     */
    function member(address account) external view returns (string memory name, bool active, uint64 since) {
        Member storage m = _members[account];
        return (m.name, m.active, m.since);
    }

    /**
     * @inheritdoc IConsortium
     * @dev Requirements: none. Emits nothing.
     */
    function proposalCount() external view returns (uint256) {
        return _proposalCount;
    }

    /**
     * @inheritdoc IConsortium
     * @dev Requirements: proposal `id` exists ({ConsortiumUnknownProposal}). Emits nothing.
     */
    function proposal(uint256 id)
        external
        view
        returns (
            uint8 kind,
            address subject,
            address proposer,
            uint64 createdAt,
            uint64 expiresAt,
            uint256 votes,
            bool executed
        )
    {
        if (id == 0 || id > _proposalCount) revert ConsortiumUnknownProposal(id);
        Proposal storage p = _proposals[id];
        return (
            uint8(p.kind),
            p.subject,
            p.proposer,
            p.createdAt,
            p.createdAt + PROPOSAL_TTL,
            _countVotes(p),
            p.executed
        );
    }

    /**
     * @inheritdoc IConsortium
     * @dev Requirements: none (false for an unknown proposal). Emits nothing.
     */
    function hasVoted(uint256 id, address voter) external view returns (bool) {
        return _voteCounts(_proposals[id], voter);
    }

    // ---------------------------------------------------------------- internal

    function _openProposal(uint256 id) private view returns (Proposal storage p) {
        if (id == 0 || id > _proposalCount) revert ConsortiumUnknownProposal(id);
        p = _proposals[id];
        if (p.executed) revert ConsortiumProposalExecuted(id);
        if (block.timestamp > p.createdAt + PROPOSAL_TTL) revert ConsortiumProposalExpired(id);
    }

    function _castVote(uint256 id, Proposal storage p) private {
        if (_voteCounts(p, msg.sender)) revert ConsortiumAlreadyVoted(id, msg.sender);
        if (p.votedInTerm[msg.sender] == 0) p.voters.push(msg.sender);
        p.votedInTerm[msg.sender] = _terms[msg.sender];
        emit ProposalVoted(id, msg.sender);
    }

    function _voteCounts(Proposal storage p, address voter) private view returns (bool) {
        uint256 term = p.votedInTerm[voter];
        return term != 0 && _members[voter].active && term == _terms[voter];
    }

    function _countVotes(Proposal storage p) private view returns (uint256 votes) {
        uint256 n = p.voters.length;
        for (uint256 i = 0; i < n; ++i) {
            if (_voteCounts(p, p.voters[i])) ++votes;
        }
    }

    function _hasMajority(Proposal storage p) private view returns (bool) {
        return _countVotes(p) * 2 > _memberList.length;
    }

    function _checkApplicable(ProposalKind kind, address subject, string memory name, address proposer)
        private
        view
    {
        if (kind == ProposalKind.Call) {
            return;
        } else if (kind == ProposalKind.Admit) {
            if (_members[subject].active || bytes(name).length == 0) revert ConsortiumInvalidProposal();
        } else if (kind == ProposalKind.Rotate) {
            // The proposer must still hold the membership it moves.
            if (_members[subject].active || !_members[proposer].active) revert ConsortiumInvalidProposal();
        } else {
            if (!_members[subject].active) revert ConsortiumInvalidProposal();
            if (_memberList.length == 1) revert ConsortiumLastMember();
        }
    }

    function _execute(uint256 id, Proposal storage p) private {
        _checkApplicable(p.kind, p.subject, p.name, p.proposer);
        p.executed = true;
        emit ProposalExecuted(id);
        if (p.kind == ProposalKind.Admit) {
            _admit(p.subject, p.name, 0);
        } else if (p.kind == ProposalKind.Remove) {
            _remove(p.subject);
        } else if (p.kind == ProposalKind.Rotate) {
            _rotate(p.proposer, p.subject);
        } else {
            (bool ok, bytes memory ret) = p.subject.call(p.callData);
            if (!ok) {
                assembly ("memory-safe") {
                    revert(add(ret, 0x20), mload(ret))
                }
            }
        }
    }

    /// @dev Moves `from`'s membership to `to`, keeping the name, the member id and the count.
    function _rotate(address from, address to) private {
        Member storage old = _members[from];
        string memory name = old.name;
        uint32 id = old.id;
        _remove(from);
        _admit(to, name, id);
        emit MemberRotated(from, to);
    }

    /// @dev `id` 0: a new admission, which takes the next member id.
    function _admit(address account, string memory name, uint32 id) private {
        if (id == 0) id = ++_lastId;
        _idAddresses[id] = account;
        Member storage m = _members[account];
        m.name = name;
        m.active = true;
        m.since = uint64(block.timestamp);
        m.id = id;
        ++_terms[account];
        _memberList.push(account);
        _positions[account] = _memberList.length;
        emit MemberAdmitted(account, name);
    }

    function _remove(address account) private {
        _members[account].active = false;
        uint256 index = _positions[account] - 1;
        uint256 last = _memberList.length - 1;
        if (index != last) {
            address moved = _memberList[last];
            _memberList[index] = moved;
            _positions[moved] = index + 1;
        }
        _memberList.pop();
        delete _positions[account];
        emit MemberRemoved(account);
    }
}
