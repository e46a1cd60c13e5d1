// SPDX-License-Identifier: GPL-3.0-or-later
pragma solidity ^0.8.24;

import {IConsortium} from "./interfaces/IConsortium.sol";
import {IAccessLog} from "./interfaces/IAccessLog.sol";
import {ConsortiumGated} from "./base/ConsortiumGated.sol";

/**
 * @title AccessLog
 * @notice Member hospitals log every read attempt on a record (granted or denied) as events.
 * @dev Stateless: the log lives in the events only.
 */
contract AccessLog is IAccessLog, ConsortiumGated {
    /**
     * @dev Requirements: `consortium_` is not the zero address ({ConsortiumGatedInvalidConsortium}).
     */
    constructor(IConsortium consortium_) ConsortiumGated(consortium_) {}

    /**
     * @inheritdoc IAccessLog
     * @dev Requirements:
     * - the caller is a member hospital ({ConsortiumGatedNotMember}).
     *
     * Emits one {AccessRecorded} per entry, with the caller as `hospital` (none for an empty
     * batch). Entries are logged as given: the node is accountable for what it reports.
     */
    function recordAccesses(Access[] calldata entries) external onlyMember {
        uint256 n = entries.length;
        for (uint256 i = 0; i < n; ++i) {
            Access calldata e = entries[i];
            emit AccessRecorded(e.patient, e.recordId, e.actor, msg.sender, e.granted, e.basis);
        }
    }

    /**
     * @inheritdoc IAccessLog
     * @dev Requirements:
     * - the caller is a member hospital ({ConsortiumGatedNotMember}).
     *
     * Emits {KeyAuditAnchored} with the caller as `hospital`. Stateless like the access log:
     * auditors read the anchors back from the events.
     */
    function anchorKeyAudit(bytes32 head, uint256 seq) external onlyMember {
        emit KeyAuditAnchored(msg.sender, seq, head);
    }
}
