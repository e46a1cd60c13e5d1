// SPDX-License-Identifier: GPL-3.0-or-later
pragma solidity ^0.8.24;

/**
 * @title CallTargetMock
 * @dev Tests only: a target for Consortium call proposals. Records the last value and caller;
 * reverts with {CallTargetMockFailed} while `failing` is set.
 */
contract CallTargetMock {
    /// @dev The call was refused because the mock is set to fail.
    error CallTargetMockFailed(uint256 value);

    uint256 public value;
    address public caller;
    uint256 public calls;
    bool public failing;

    /// @dev Requirements: none. Emits nothing.
    function setFailing(bool failing_) external {
        failing = failing_;
    }

    /// @dev Requirements: not `failing` ({CallTargetMockFailed}). Emits nothing.
    function setValue(uint256 value_) external {
        if (failing) revert CallTargetMockFailed(value_);
        value = value_;
        caller = msg.sender;
        ++calls;
    }
}
