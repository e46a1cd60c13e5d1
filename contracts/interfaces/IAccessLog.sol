// SPDX-License-Identifier: GPL-3.0-or-later
pragma solidity ^0.8.24;

/**
 * @title IAccessLog
 * @dev On-chain audit trail of record reads, granted and denied. Member hospitals batch their
 * reads into one call; each entry becomes one {AccessRecorded} event filterable by patient,
 * record and actor.
 */
interface IAccessLog {
    /// @dev One read attempt. `basis` is why it was allowed, as decided by the node: the
    /// {IConsentRegistry} access basis (0 None ... 4 BreakGlass) or a node-defined value above
    /// (e.g. 5 for the patient reading their own record). Not checked on-chain.
    struct Access {
        address patient;
        bytes32 recordId;
        address actor;
        bool granted;
        uint8 basis;
    }

    /// @dev `actor` read (or was refused) `recordId` of `patient` at member `hospital`.
    event AccessRecorded(
        address indexed patient, bytes32 indexed recordId, address indexed actor, address hospital, bool granted, uint8 basis
    );

    /// @dev Member `hospital` vouches that entry `seq` of its key audit log (every KEK
    /// generation, rotation, wrap/unwrap batch, signature and destruction, hash-chained off
    /// chain) has hash `head`: editing or deleting an entry up to `seq` is then detectable.
    event KeyAuditAnchored(address indexed hospital, uint256 indexed seq, bytes32 head);

    /// @notice Logs a batch of read attempts.
    function recordAccesses(Access[] calldata entries) external;

    /// @notice Anchors the head of the caller's key audit log.
    function anchorKeyAudit(bytes32 head, uint256 seq) external;
}
