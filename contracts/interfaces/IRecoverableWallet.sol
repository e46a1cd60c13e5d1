// SPDX-License-Identifier: GPL-3.0-or-later
pragma solidity ^0.8.24;

import {IERC1271} from "@openzeppelin/contracts/interfaces/IERC1271.sol";

/**
 * @title IRecoverableWallet
 * @dev A patient's identity wallet: an address that stays the patient's (records, consents,
 * sign-in) while the key behind it changes. The owner key signs for the wallet (ERC-1271).
 * When the key is lost, `threshold` of the guardians chosen at creation sign an EIP-712
 * `ApproveRecovery` naming a new owner; after `recoveryDelay` seconds anyone may finalize it.
 * Until then the current owner may cancel it with a signed `CancelRecovery`.
 *
 * Recovery rounds: every approval, cancellation and finalization names the wallet's current
 * `nonce`; cancelling or finalizing increments it, so approvals of an earlier round can
 * never be replayed. While a recovery is pending no other approval is accepted.
 */
interface IRecoverableWallet is IERC1271 {
    /// @dev `initialize` was already called (clones are initialized by the factory, once).
    error RecoverableWalletAlreadyInitialized();
    /// @dev Zero owner or new owner, or a new owner equal to the current owner.
    error RecoverableWalletInvalidOwner(address owner);
    /// @dev A zero, repeated or owner guardian, or more than `MAX_GUARDIANS`.
    error RecoverableWalletInvalidGuardian(address guardian);
    /// @dev `threshold` is 0 or above the number of guardians.
    error RecoverableWalletInvalidThreshold(uint256 threshold);
    /// @dev `delay` does not fit 32 bits (about 136 years).
    error RecoverableWalletInvalidDelay(uint256 delay);
    /// @dev The signed message's `deadline` has passed.
    error RecoverableWalletExpiredDeadline(uint256 deadline);
    /// @dev The address is not one of the wallet's guardians.
    error RecoverableWalletNotGuardian(address account);
    /// @dev The signature is not the guardian's (approval) or the owner's (cancellation).
    error RecoverableWalletInvalidSignature();
    /// @dev The guardian already approved this new owner in this round.
    error RecoverableWalletAlreadyApproved(address guardian);
    /// @dev A recovery is already pending (cancel or finalize it first).
    error RecoverableWalletRecoveryPending(address newOwner, uint64 eta);
    /// @dev No recovery is pending.
    error RecoverableWalletNoPendingRecovery();
    /// @dev The pending recovery's delay has not passed yet.
    error RecoverableWalletRecoveryNotReady(uint64 eta);

    /// @dev The wallet was set up (by its factory).
    event WalletInitialized(address indexed owner, address[] guardians, uint256 threshold, uint256 recoveryDelay);
    /// @dev `guardian` approved `newOwner` in round `nonce`; `approvals` is the count so far.
    event RecoveryApproved(address indexed guardian, address indexed newOwner, uint256 indexed nonce, uint256 approvals);
    /// @dev Approvals reached the threshold: `newOwner` may take over at `eta`.
    event RecoveryStarted(address indexed newOwner, uint256 indexed nonce, uint64 eta);
    /// @dev The owner ended round `nonce` (a pending recovery for `newOwner`, or zero, is void).
    event RecoveryCancelled(address indexed newOwner, uint256 indexed nonce);
    /// @dev The key changed: `previousOwner` can no longer sign for the wallet.
    event RecoveryFinalized(address indexed previousOwner, address indexed newOwner, uint256 indexed nonce);

    /**
     * @notice Sets owner, guardians, threshold and delay of a fresh clone.
     * @dev Requirements: not initialized yet ({RecoverableWalletAlreadyInitialized}); a nonzero
     * owner ({RecoverableWalletInvalidOwner}); 1 to `MAX_GUARDIANS` distinct nonzero guardians,
     * none the owner ({RecoverableWalletInvalidGuardian}); `1 <= threshold <= guardians.length`
     * ({RecoverableWalletInvalidThreshold}); `delay < 2**32` ({RecoverableWalletInvalidDelay}).
     * Emits {WalletInitialized}.
     */
    function initialize(address owner_, address[] calldata guardians_, uint256 threshold_, uint256 delay_) external;

    /**
     * @notice Records guardian `guardian`'s signed approval of `newOwner` for the current round.
     * Anyone may submit it (a relayer pays the gas).
     * @dev Requirements:
     * - `block.timestamp <= deadline` ({RecoverableWalletExpiredDeadline});
     * - no recovery pending ({RecoverableWalletRecoveryPending});
     * - `newOwner` nonzero and not the owner ({RecoverableWalletInvalidOwner});
     * - `guardian` is a guardian ({RecoverableWalletNotGuardian}) that has not approved
     *   `newOwner` in this round ({RecoverableWalletAlreadyApproved});
     * - `signature` is `guardian`'s (EOA or ERC-1271) over the EIP-712 digest of
     *   `ApproveRecovery(newOwner, nonce, deadline)` ({RecoverableWalletInvalidSignature}).
     *
     * Emits {RecoveryApproved}, and {RecoveryStarted} when the approvals reach the threshold.
     */
    function approveRecovery(address newOwner, address guardian, uint256 deadline, bytes calldata signature)
        external;

    /**
     * @notice Ends the current round: voids a pending recovery and every approval so far.
     * Anyone may submit the owner's signature.
     * @dev Requirements: `block.timestamp <= deadline` ({RecoverableWalletExpiredDeadline});
     * `signature` is the owner's ECDSA signature over the EIP-712 digest of
     * `CancelRecovery(nonce, deadline)` ({RecoverableWalletInvalidSignature}).
     * Emits {RecoveryCancelled}.
     */
    function cancelRecovery(uint256 deadline, bytes calldata signature) external;

    /**
     * @notice Makes the pending recovery's new owner the owner. Anyone may call it.
     * @dev Requirements: a recovery is pending ({RecoverableWalletNoPendingRecovery}) and
     * `block.timestamp >= eta` ({RecoverableWalletRecoveryNotReady}).
     * Emits {RecoveryFinalized}.
     */
    function finalizeRecovery() external;

    /// @notice The key that signs for the wallet.
    function owner() external view returns (address);

    /// @notice The guardians, in the order given at creation (bit i of an approval mask).
    function guardians() external view returns (address[] memory);

    /// @notice Approvals a new owner needs.
    function threshold() external view returns (uint256);

    /// @notice Seconds between a recovery reaching the threshold and its finalization.
    function recoveryDelay() external view returns (uint256);

    /// @notice The current recovery round; signed approvals and cancellations name it.
    function nonce() external view returns (uint256);

    /// @notice The pending recovery (zero address and 0 when none) and its approval mask.
    function pendingRecovery() external view returns (address newOwner, uint64 eta, uint256 approvalMask);

    /// @notice Bit i set: guardian i approved `newOwner` in the current round.
    function approvals(address newOwner) external view returns (uint256 mask);
}
