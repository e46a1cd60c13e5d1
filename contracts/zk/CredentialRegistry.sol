// SPDX-License-Identifier: GPL-3.0-or-later
pragma solidity ^0.8.24;

import {InternalBinaryIMT, BinaryIMTData} from "@zk-kit/imt.sol/internal/InternalBinaryIMT.sol";
import {IConsortium} from "../interfaces/IConsortium.sol";
import {ICredentialRegistry} from "../interfaces/ICredentialRegistry.sol";
import {ConsortiumGated} from "../base/ConsortiumGated.sol";

/**
 * @title CredentialRegistry
 * @notice Member hospitals register anonymous clinician credentials in a Poseidon Merkle tree.
 * @dev PoseidonT3 (poseidon-solidity) is an external library: deploy it once and link it
 * into this contract's bytecode. Tree: InternalBinaryIMT, depth 20, default zeroes.
 */
contract CredentialRegistry is ICredentialRegistry, ConsortiumGated {
    using InternalBinaryIMT for BinaryIMTData;

    /// @notice Depth of the credential tree (2^20 leaves).
    uint256 public constant DEPTH = 20;
    /// @notice Number of recent roots (current one included) accepted by {isValidRoot}.
    uint256 public constant ROOT_HISTORY = 32;

    uint256 private constant SNARK_SCALAR_FIELD =
        21888242871839275222246405745257275088548364400416034343698204186575808495617;

    /// @dev Issuer, leaf index and revocation flag of a commitment, in one slot.
    struct Entry {
        address issuer;
        uint64 index;
        bool revoked;
    }

    /// @dev When a root was produced: revocation epoch and root sequence number (from 1).
    struct RootInfo {
        uint128 epoch;
        uint128 seq;
    }

    BinaryIMTData private _tree;
    mapping(uint256 commitment => Entry) private _entries;
    mapping(uint256 root => RootInfo) private _roots;
    uint128 private _epoch;
    uint128 private _seq;

    /**
     * @dev Requirements: `consortium_` is not the zero address ({ConsortiumGatedInvalidConsortium}).
     * The empty tree's root is the first valid root.
     */
    constructor(IConsortium consortium_) ConsortiumGated(consortium_) {
        _tree._initWithDefaultZeroes(DEPTH);
        _recordRoot(_tree.root);
    }

    /**
     * @inheritdoc ICredentialRegistry
     * @dev Requirements: the caller is a member ({ConsortiumGatedNotMember}); `commitment` is
     * nonzero and < r ({CredentialRegistryInvalidCommitment}) and new
     * ({CredentialRegistryDuplicate}); the tree is not full (`TreeIsFull`).
     * Emits {CredentialAdded}.
     */
    function addCredential(uint256 commitment) external onlyMember {
        uint256 index = _insert(commitment);
        uint256 newRoot = _tree.root;
        _recordRoot(newRoot);
        emit CredentialAdded(msg.sender, commitment, index, newRoot);
    }

    /**
     * @inheritdoc ICredentialRegistry
     * @dev Requirements: as {addCredential} for each commitment; not empty
     * ({CredentialRegistryEmptyBatch}). All or nothing. Only the final root enters the
     * history. Emits one {CredentialAdded} per commitment, each with the final root.
     */
    function addCredentials(uint256[] calldata commitments) external onlyMember {
        uint256 n = commitments.length;
        if (n == 0) revert CredentialRegistryEmptyBatch();
        uint256 first = _tree.numberOfLeaves;
        for (uint256 i = 0; i < n; ++i) {
            _insert(commitments[i]);
        }
        uint256 newRoot = _tree.root;
        _recordRoot(newRoot);
        for (uint256 i = 0; i < n; ++i) {
            emit CredentialAdded(msg.sender, commitments[i], first + i, newRoot);
        }
    }

    /**
     * @inheritdoc ICredentialRegistry
     * @dev Requirements: the caller is a member ({ConsortiumGatedNotMember}) and the issuer
     * ({CredentialRegistryNotIssuer}); the commitment is known ({CredentialRegistryUnknown})
     * and not revoked ({CredentialRegistryAlreadyRevoked}); the path is its path in the
     * current tree (`LeafDoesNotExist`, `WrongMerkleProofPath`). Starts a new root epoch:
     * every earlier root becomes invalid. Emits {CredentialRevoked}.
     */
    function revokeCredential(uint256 commitment, uint256[] calldata siblings, uint8[] calldata pathIndices)
        external
        onlyMember
    {
        Entry storage entry = _entries[commitment];
        if (entry.issuer == address(0)) revert CredentialRegistryUnknown(commitment);
        if (entry.issuer != msg.sender) revert CredentialRegistryNotIssuer(commitment, msg.sender);
        if (entry.revoked) revert CredentialRegistryAlreadyRevoked(commitment);
        entry.revoked = true;
        _tree._remove(commitment, siblings, pathIndices);
        uint256 newRoot = _tree.root;
        unchecked {
            ++_epoch;
        }
        _recordRoot(newRoot);
        emit CredentialRevoked(msg.sender, commitment, entry.index, newRoot);
    }

    /// @inheritdoc ICredentialRegistry
    function root() external view returns (uint256) {
        return _tree.root;
    }

    /// @inheritdoc ICredentialRegistry
    function isValidRoot(uint256 root_) external view returns (bool) {
        RootInfo memory info = _roots[root_];
        return info.seq != 0 && info.epoch == _epoch && _seq - info.seq < ROOT_HISTORY;
    }

    /// @inheritdoc ICredentialRegistry
    function numberOfLeaves() external view returns (uint256) {
        return _tree.numberOfLeaves;
    }

    /// @inheritdoc ICredentialRegistry
    function credential(uint256 commitment) external view returns (address issuer, uint256 index, bool revoked) {
        Entry memory entry = _entries[commitment];
        return (entry.issuer, entry.index, entry.revoked);
    }

    /// @dev Appends `commitment` for the caller; returns its leaf index.
    function _insert(uint256 commitment) private returns (uint256 index) {
        if (commitment == 0 || commitment >= SNARK_SCALAR_FIELD) {
            revert CredentialRegistryInvalidCommitment(commitment);
        }
        if (_entries[commitment].issuer != address(0)) revert CredentialRegistryDuplicate(commitment);
        index = _tree.numberOfLeaves;
        _tree._insert(commitment);
        _entries[commitment] = Entry({issuer: msg.sender, index: uint64(index), revoked: false});
    }

    /// @dev Makes `newRoot` the latest root of the current epoch.
    function _recordRoot(uint256 newRoot) private {
        uint128 seq = _seq + 1;
        _seq = seq;
        _roots[newRoot] = RootInfo({epoch: _epoch, seq: seq});
    }
}
