// SPDX-License-Identifier: GPL-3.0-or-later
pragma solidity ^0.8.24;

import {IERC1271} from "@openzeppelin/contracts/interfaces/IERC1271.sol";
import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {SignatureChecker} from "@openzeppelin/contracts/utils/cryptography/SignatureChecker.sol";
import {IRecoverableWallet} from "../interfaces/IRecoverableWallet.sol";

/**
 * @title RecoverableWallet
 * @notice A patient's identity wallet with guardian recovery (see {IRecoverableWallet}).
 * @dev Deployed once as an implementation and used through EIP-1167 clones made by
 * {RecoverableWalletFactory}: every wallet has the same 45-byte runtime code, which is how
 * a node recognises one before relaying for it. EIP-712 domain: name "RecoverableWallet",
 * version "1", the chain id and the clone's own address (OZ {EIP712} rebuilds the separator
 * for `address(this)` in a clone).
 *
 * Storage is packed for a cheap creation: (owner, delay, threshold) in one slot, (pending
 * new owner, eta, round) in another, then the guardians and the approval masks.
 */
contract RecoverableWallet is IRecoverableWallet, EIP712 {
    /// @notice Most guardians a wallet may have (an approval mask is a bitmap over them).
    uint256 public constant MAX_GUARDIANS = 8;

    /// @notice EIP-712 type of a guardian's approval.
    bytes32 public constant APPROVE_RECOVERY_TYPEHASH =
        keccak256("ApproveRecovery(address newOwner,uint256 nonce,uint256 deadline)");

    /// @notice EIP-712 type of the owner's cancellation.
    bytes32 public constant CANCEL_RECOVERY_TYPEHASH = keccak256("CancelRecovery(uint256 nonce,uint256 deadline)");

    struct Config {
        address owner;
        uint32 delay;
        uint8 threshold;
    }

    struct Recovery {
        address newOwner;
        uint64 eta; // 0: none pending
        uint32 nonce;
    }

    Config private _config;
    Recovery private _recovery;
    address[] private _guardians;
    // round => new owner => bit i set: guardian i approved
    mapping(uint256 => mapping(address => uint256)) private _approvals;

    /// @dev Locks the implementation: only clones are initialized.
    constructor() EIP712("RecoverableWallet", "1") {
        _config.threshold = type(uint8).max;
    }

    /// @inheritdoc IRecoverableWallet
    function initialize(address owner_, address[] calldata guardians_, uint256 threshold_, uint256 delay_)
        external
    {
        if (_config.threshold != 0) revert RecoverableWalletAlreadyInitialized();
        if (owner_ == address(0)) revert RecoverableWalletInvalidOwner(owner_);
        uint256 n = guardians_.length;
        if (n == 0 || n > MAX_GUARDIANS) revert RecoverableWalletInvalidGuardian(address(0));
        if (threshold_ == 0 || threshold_ > n) revert RecoverableWalletInvalidThreshold(threshold_);
        if (delay_ > type(uint32).max) revert RecoverableWalletInvalidDelay(delay_);
        for (uint256 i = 0; i < n; ++i) {
            address g = guardians_[i];
            if (g == address(0) || g == owner_) revert RecoverableWalletInvalidGuardian(g);
            for (uint256 j = 0; j < i; ++j) {
                if (guardians_[j] == g) revert RecoverableWalletInvalidGuardian(g);
            }
        }
        _config = Config(owner_, uint32(delay_), uint8(threshold_));
        _guardians = guardians_;
        emit WalletInitialized(owner_, guardians_, threshold_, delay_);
    }

    /// @inheritdoc IRecoverableWallet
    function approveRecovery(address newOwner, address guardian, uint256 deadline, bytes calldata signature)
        external
    {
        if (block.timestamp > deadline) revert RecoverableWalletExpiredDeadline(deadline);
        Recovery memory r = _recovery;
        if (r.eta != 0) revert RecoverableWalletRecoveryPending(r.newOwner, r.eta);
        Config memory c = _config;
        if (newOwner == address(0) || newOwner == c.owner) revert RecoverableWalletInvalidOwner(newOwner);
        uint256 bit = 1 << _guardianIndex(guardian);
        uint256 mask = _approvals[r.nonce][newOwner];
        if (mask & bit != 0) revert RecoverableWalletAlreadyApproved(guardian);
        bytes32 digest =
            _hashTypedDataV4(keccak256(abi.encode(APPROVE_RECOVERY_TYPEHASH, newOwner, uint256(r.nonce), deadline)));
        if (!SignatureChecker.isValidSignatureNowCalldata(guardian, digest, signature)) {
            revert RecoverableWalletInvalidSignature();
        }
        mask |= bit;
        _approvals[r.nonce][newOwner] = mask;
        uint256 count = _popcount(mask);
        emit RecoveryApproved(guardian, newOwner, r.nonce, count);
        if (count >= c.threshold) {
            uint64 eta = uint64(block.timestamp) + c.delay;
            _recovery = Recovery(newOwner, eta, r.nonce);
            emit RecoveryStarted(newOwner, r.nonce, eta);
        }
    }

    /// @inheritdoc IRecoverableWallet
    function cancelRecovery(uint256 deadline, bytes calldata signature) external {
        if (block.timestamp > deadline) revert RecoverableWalletExpiredDeadline(deadline);
        Recovery memory r = _recovery;
        bytes32 digest = _hashTypedDataV4(keccak256(abi.encode(CANCEL_RECOVERY_TYPEHASH, uint256(r.nonce), deadline)));
        if (!_signedByOwner(digest, signature)) revert RecoverableWalletInvalidSignature();
        _recovery = Recovery(address(0), 0, r.nonce + 1);
        emit RecoveryCancelled(r.newOwner, r.nonce);
    }

    /// @inheritdoc IRecoverableWallet
    function finalizeRecovery() external {
        Recovery memory r = _recovery;
        if (r.eta == 0) revert RecoverableWalletNoPendingRecovery();
        if (block.timestamp < r.eta) revert RecoverableWalletRecoveryNotReady(r.eta);
        address previous = _config.owner;
        _config.owner = r.newOwner;
        _recovery = Recovery(address(0), 0, r.nonce + 1);
        emit RecoveryFinalized(previous, r.newOwner, r.nonce);
    }

    /**
     * @notice ERC-1271: the magic value 0x1626ba7e iff `signature` is the owner's ECDSA
     * signature of `hash`, 0xffffffff otherwise.
     * @dev Requirements: none (never reverts). Emits nothing.
     */
    function isValidSignature(bytes32 hash, bytes calldata signature) external view returns (bytes4) {
        return _signedByOwner(hash, signature) ? IERC1271.isValidSignature.selector : bytes4(0xffffffff);
    }

    /// @inheritdoc IRecoverableWallet
    function owner() external view returns (address) {
        return _config.owner;
    }

    /// @inheritdoc IRecoverableWallet
    function guardians() external view returns (address[] memory) {
        return _guardians;
    }

    /// @inheritdoc IRecoverableWallet
    function threshold() external view returns (uint256) {
        return _config.threshold;
    }

    /// @inheritdoc IRecoverableWallet
    function recoveryDelay() external view returns (uint256) {
        return _config.delay;
    }

    /// @inheritdoc IRecoverableWallet
    function nonce() external view returns (uint256) {
        return _recovery.nonce;
    }

    /// @inheritdoc IRecoverableWallet
    function pendingRecovery() external view returns (address newOwner, uint64 eta, uint256 approvalMask) {
        Recovery memory r = _recovery;
        return (r.newOwner, r.eta, r.eta == 0 ? 0 : _approvals[r.nonce][r.newOwner]);
    }

    /// @inheritdoc IRecoverableWallet
    function approvals(address newOwner) external view returns (uint256 mask) {
        return _approvals[_recovery.nonce][newOwner];
    }

    function _signedByOwner(bytes32 hash, bytes calldata signature) private view returns (bool) {
        (address recovered, ECDSA.RecoverError err,) = ECDSA.tryRecoverCalldata(hash, signature);
        return err == ECDSA.RecoverError.NoError && recovered == _config.owner;
    }

    function _guardianIndex(address account) private view returns (uint256) {
        uint256 n = _guardians.length;
        for (uint256 i = 0; i < n; ++i) {
            if (_guardians[i] == account) return i;
        }
        revert RecoverableWalletNotGuardian(account);
    }

    function _popcount(uint256 mask) private pure returns (uint256 count) {
        for (; mask != 0; mask &= mask - 1) {
            ++count;
        }
    }
}
