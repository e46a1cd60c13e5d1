// SPDX-License-Identifier: GPL-3.0-or-later
pragma solidity ^0.8.24;

import {IConsortium} from "../interfaces/IConsortium.sol";

/**
 * @title ConsortiumGated
 * @dev Base for contracts whose writes are reserved to member hospitals of an {IConsortium}.
 * Membership is read live from the consortium, so a removed hospital loses access at once.
 */
abstract contract ConsortiumGated {
    /// @dev The caller is not a current member of the consortium.
    error ConsortiumGatedNotMember(address account);
    /// @dev The consortium address given to the constructor is zero.
    error ConsortiumGatedInvalidConsortium();

    IConsortium private immutable _consortium;

    /// @dev Reverts with {ConsortiumGatedNotMember} unless the caller is a current member.
    modifier onlyMember() {
        _checkMember(msg.sender);
        _;
    }

    constructor(IConsortium consortium_) {
        if (address(consortium_) == address(0)) revert ConsortiumGatedInvalidConsortium();
        _consortium = consortium_;
    }

    /**
     * @notice The consortium whose members may write.
     * @dev Requirements: none. Emits nothing.
     */
    function consortium() public view returns (IConsortium) {
        return _consortium;
    }

    /// @dev Hook: reverts unless `account` may write. Override to refine the gate.
    function _checkMember(address account) internal view virtual {
        if (!_consortium.isMember(account)) revert ConsortiumGatedNotMember(account);
    }
}
