// SPDX-License-Identifier: GPL-3.0-or-later
pragma solidity ^0.8.24;

/**
 * @title IConsortium
 * @dev Membership of the hospital consortium. Members are admitted and removed by a strict
 * majority of the current members (`votes * 2 > memberCount`). A proposal expires 7 days after
 * its creation. The last member cannot be removed. A member rotates its signing key by
 * proposing to move its membership (name included) to a new address (kind 2, Rotate), voted
 * like any other change. A call proposal (kind 3, Call) makes the Consortium itself call a
 * contract once a majority votes for it: how consortium-wide settings of other contracts
 * (e.g. ZkAccessGate category policies, CredentialRegistry revocations) change.
 *
 * Member ids: every admission assigns the next `uint32` id (founders 1..n in order); a
 * rotation moves the id to the new address; ids are never reused. `memberId` keeps answering
 * for removed and rotated-away addresses (history); `memberAddress` gives the current (or
 * last) address of an id.
 */
interface IConsortium {
    /// @dev Proposal kinds, passed as `uint8` in the ABI.
    enum ProposalKind {
        Admit,
        Remove,
        Rotate,
        Call
    }

    /// @dev A member hospital. `name` and `since` are kept after removal (`active == false`).
    struct Member {
        string name;
        bool active;
        uint64 since;
        uint32 id;
    }

    /// @dev The caller is not a current member.
    error ConsortiumNotMember(address account);
    /// @dev Constructor arguments: empty, lengths differ, zero address, duplicate or empty name.
    error ConsortiumInvalidFounders();
    /// @dev Unknown kind, zero subject, empty name for an admission, admitting a member,
    /// removing a non-member or rotating to a current member.
    error ConsortiumInvalidProposal();
    /// @dev No proposal with this id.
    error ConsortiumUnknownProposal(uint256 id);
    /// @dev The proposal is older than 7 days.
    error ConsortiumProposalExpired(uint256 id);
    /// @dev The proposal was already executed.
    error ConsortiumProposalExecuted(uint256 id);
    /// @dev The member already voted for this proposal (during its current membership).
    error ConsortiumAlreadyVoted(uint256 id, address voter);
    /// @dev The proposal does not (or no longer) have a strict majority of current members.
    error ConsortiumNoMajority(uint256 id);
    /// @dev Removing the last member is not allowed.
    error ConsortiumLastMember();
    /// @dev A call proposal names the zero address or a target without code.
    error ConsortiumInvalidCallTarget(address target);
    /// @dev The proposal is not a call proposal.
    error ConsortiumNotCallProposal(uint256 id);

    /// @dev A member proposed to admit (`kind` 0) or remove (`kind` 1) `subject`, or to move
    /// its own membership to `subject` (`kind` 2).
    event ProposalCreated(uint256 indexed id, uint8 kind, address indexed subject, address indexed proposer);
    /// @dev `voter` voted for proposal `id` (the proposer's own vote is emitted too).
    event ProposalVoted(uint256 indexed id, address indexed voter);
    /// @dev Proposal `id` reached a majority and was applied.
    event ProposalExecuted(uint256 indexed id);
    /// @dev `member` joined (founders included, emitted by the constructor).
    event MemberAdmitted(address indexed member, string name);
    /// @dev Call proposal `id`: on a majority the Consortium calls `target` with `data`.
    event CallProposed(uint256 indexed id, address indexed target, bytes data, string description);
    /// @dev `member` left the consortium.
    event MemberRemoved(address indexed member);
    /// @dev The membership of `from` moved to `to` (emitted after {MemberRemoved} of `from` and
    /// {MemberAdmitted} of `to` with the same name).
    event MemberRotated(address indexed from, address indexed to);

    /**
     * @notice Proposes to admit or remove a member, or to move the proposer's membership to a
     * new address (signing-key rotation); the proposer's vote is counted. Executes at once if
     * that vote alone is a strict majority.
     * @param kind 0 Admit, 1 Remove, 2 Rotate.
     * @param subject The hospital's address (for Rotate: the proposer's new address).
     * @param name The hospital's name (admission only, ignored otherwise: a rotation keeps it).
     * @return id The proposal id (ids start at 1).
     */
    function propose(uint8 kind, address subject, string calldata name) external returns (uint256 id);

    /**
     * @notice Proposes that the Consortium call `target` with `data` (no value); the proposer's
     * vote is counted. On a strict majority the call is made; if it reverts, the revert bubbles
     * up and the proposal stays open (it can be executed later, until it expires).
     * @return id The proposal id (kind 3, subject = `target`).
     */
    function proposeCall(address target, bytes calldata data, string calldata description)
        external
        returns (uint256 id);

    /// @notice Target, calldata and description of call proposal `id`.
    function proposalCall(uint256 id)
        external
        view
        returns (address target, bytes memory data, string memory description);

    /// @notice The member id of `account` (0 if never a member; kept after removal/rotation).
    function memberId(address account) external view returns (uint32);

    /// @notice The current (or, once removed, last) address of member id `id` (0 if unknown).
    function memberAddress(uint32 id) external view returns (address);

    /// @notice Votes for proposal `id`; executes it when a strict majority is reached.
    function vote(uint256 id) external;

    /// @notice Executes proposal `id` if its valid votes are a strict majority now.
    function execute(uint256 id) external;

    /// @notice Whether `account` is a current member.
    function isMember(address account) external view returns (bool);

    /// @notice Number of current members.
    function memberCount() external view returns (uint256);

    /// @notice Current members (order not significant, changes on removal).
    function members() external view returns (address[] memory);

    /// @notice Name of `account` as admitted (kept after removal, empty if never a member).
    function memberName(address account) external view returns (string memory);

    /// @notice Name, status and admission time of `account`.
    function member(address account) external view returns (string memory name, bool active, uint64 since);

    /// @notice Number of proposals created so far (the last id).
    function proposalCount() external view returns (uint256);

    /**
     * @notice A proposal; `votes` counts only voters that are still members (in the same
     * membership term as when they voted).
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
        );

    /// @notice Whether `voter`'s vote for proposal `id` currently counts.
    function hasVoted(uint256 id, address voter) external view returns (bool);
}
