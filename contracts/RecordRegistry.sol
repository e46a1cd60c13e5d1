// SPDX-License-Identifier: GPL-3.0-or-later
pragma solidity ^0.8.24;

import {MerkleProof} from "@openzeppelin/contracts/utils/cryptography/MerkleProof.sol";
import {IConsortium} from "./interfaces/IConsortium.sol";
import {IRecordRegistry} from "./interfaces/IRecordRegistry.sol";
import {ConsortiumGated} from "./base/ConsortiumGated.sol";

/**
 * @title RecordRegistry
 * @notice Member hospitals anchor Merkle roots of record batches; anyone can verify that a
 * record version (id, patient, content hash, predecessor) belongs to an anchored batch.
 */
contract RecordRegistry is IRecordRegistry, ConsortiumGated {
    mapping(uint256 => Batch) private _batches;
    uint256 private _batchCount;
    /// @dev Who erased a record (zero: not erased). Per-record anchoring hospitals are not
    /// stored (only emitted), so any member may erase; the node enforces its own policy.
    mapping(bytes32 => address) private _erasedBy;

    /**
     * @dev Requirements: `consortium_` is not the zero address ({ConsortiumGatedInvalidConsortium}).
     */
    constructor(IConsortium consortium_) ConsortiumGated(consortium_) {}

    /**
     * @inheritdoc IRecordRegistry
     * @dev Requirements:
     * - the caller is a member hospital ({ConsortiumGatedNotMember});
     * - `root` is not zero, `recordIds` is not empty and as long as `patients`, at most
     *   2^32 - 1 records ({RecordRegistryInvalidBatch}).
     *
     * Emits one {BatchAnchored} and one {RecordAnchored} per record.
     */
    function anchorBatch(bytes32 root, bytes32[] calldata recordIds, address[] calldata patients)
        external
        onlyMember
        returns (uint256 batchId)
    {
        uint256 count = recordIds.length;
        if (root == bytes32(0) || count == 0 || count != patients.length || count > type(uint32).max) {
            revert RecordRegistryInvalidBatch();
        }
        batchId = ++_batchCount;
        _batches[batchId] =
            Batch({root: root, hospital: msg.sender, timestamp: uint64(block.timestamp), count: uint32(count)});
        emit BatchAnchored(batchId, root, msg.sender, count);
        for (uint256 i = 0; i < count; ++i) {
            emit RecordAnchored(patients[i], recordIds[i], msg.sender, batchId);
        }
    }

    /**
     * @inheritdoc IRecordRegistry
     * @dev The tombstone does not touch the batch: {verifyRecord} still proves that the record
     * existed unaltered. Anchoring hospitals are not stored per record (that would cost
     * ~22k gas a record in {anchorBatch}), so any member may erase; the first eraser is kept.
     *
     * Requirements:
     * - the caller is a member hospital ({ConsortiumGatedNotMember});
     * - `recordIds` is not empty, no id is zero and `reasonHash` is not zero
     *   ({RecordRegistryInvalidErasure}).
     *
     * Emits one {RecordErased} per id not erased before (none for an id already erased).
     */
    function eraseRecords(bytes32[] calldata recordIds, bytes32 reasonHash) external onlyMember {
        uint256 count = recordIds.length;
        if (count == 0 || reasonHash == bytes32(0)) revert RecordRegistryInvalidErasure();
        for (uint256 i = 0; i < count; ++i) {
            bytes32 id = recordIds[i];
            if (id == bytes32(0)) revert RecordRegistryInvalidErasure();
            if (_erasedBy[id] != address(0)) continue;
            _erasedBy[id] = msg.sender;
            emit RecordErased(id, msg.sender, reasonHash);
        }
    }

    /**
     * @inheritdoc IRecordRegistry
     * @dev Requirements: none. Emits nothing.
     */
    function isErased(bytes32 recordId) external view returns (bool) {
        return _erasedBy[recordId] != address(0);
    }

    /**
     * @inheritdoc IRecordRegistry
     * @dev Requirements: none (an unknown id returns zeros). Emits nothing.
     */
    function batch(uint256 id) external view returns (bytes32 root, address hospital, uint64 timestamp, uint32 count) {
        Batch storage b = _batches[id];
        return (b.root, b.hospital, b.timestamp, b.count);
    }

    /**
     * @inheritdoc IRecordRegistry
     * @dev Requirements: none. Emits nothing.
     */
    function batchCount() external view returns (uint256) {
        return _batchCount;
    }

    /**
     * @inheritdoc IRecordRegistry
     * @dev Double keccak of the ABI-encoded tuple (second-preimage safe, as OpenZeppelin's
     * StandardMerkleTree). `previousId` is 0 for a first version.
     *
     * Requirements: none. Emits nothing.
     */
    function leafHash(bytes32 recordId, address patient, bytes32 contentHash, bytes32 previousId)
        public
        pure
        returns (bytes32)
    {
        return keccak256(bytes.concat(keccak256(abi.encode(recordId, patient, contentHash, previousId))));
    }

    /**
     * @inheritdoc IRecordRegistry
     * @dev Requirements: none (false for an unknown batch or a wrong proof). Emits nothing.
     */
    function verifyRecord(
        uint256 batchId,
        bytes32 recordId,
        address patient,
        bytes32 contentHash,
        bytes32 previousId,
        bytes32[] calldata proof
    ) external view returns (bool) {
        bytes32 root = _batches[batchId].root;
        if (root == bytes32(0)) return false;
        return MerkleProof.verifyCalldata(proof, root, leafHash(recordId, patient, contentHash, previousId));
    }
}
