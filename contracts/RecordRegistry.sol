// SPDX-License-Identifier: GPL-3.0-or-later
pragma solidity ^0.8.24;

import {MerkleProof} from "@openzeppelin/contracts/utils/cryptography/MerkleProof.sol";
import {IConsortium} from "./interfaces/IConsortium.sol";
import {IRecordRegistry} from "./interfaces/IRecordRegistry.sol";
import {ConsortiumGated} from "./base/ConsortiumGated.sol";

/**
 * @title RecordRegistry
 * @notice Member hospitals anchor Merkle roots of record batches; anyone can verify that a
 * record version (id, patient, content hash, predecessor) belongs to an anchored batch. A
 * record id starts with its hospital's member id (see {IRecordRegistry}): only that hospital
 * anchors it and only that hospital may later tombstone it.
 */
contract RecordRegistry is IRecordRegistry, ConsortiumGated {
    mapping(uint256 => Batch) private _batches;
    uint256 private _batchCount;
    /// @dev Who erased a record (zero: not erased). Only the record's own hospital can erase
    /// it (its namespace), so the first tombstone is the only one.
    mapping(bytes32 => address) private _erasedBy;

    /**
     * @dev Requirements: `consortium_` is not the zero address ({ConsortiumGatedInvalidConsortium}).
     */
    constructor(IConsortium consortium_) ConsortiumGated(consortium_) {}

    /**
     * @inheritdoc IRecordRegistry
     * @dev The batch keeps the caller's member id beside its address, packed in the same slot
     * (no extra storage write). Which hospital anchored a record is not stored per record (that
     * would cost ~22k gas a record): its id says it.
     *
     * Requirements:
     * - the caller is a member hospital ({ConsortiumGatedNotMember});
     * - `root` is not zero, `recordIds` is not empty and as long as `patients`, at most
     *   2^24 - 1 records ({RecordRegistryInvalidBatch});
     * - every id is in the caller's namespace ({RecordRegistryForeignRecord}).
     *
     * Emits one {BatchAnchored} and one {RecordAnchored} per record.
     */
    function anchorBatch(bytes32 root, bytes32[] calldata recordIds, address[] calldata patients)
        external
        onlyMember
        returns (uint256 batchId)
    {
        uint256 count = recordIds.length;
        if (root == bytes32(0) || count == 0 || count != patients.length || count > type(uint24).max) {
            revert RecordRegistryInvalidBatch();
        }
        uint32 member = consortium().memberId(msg.sender);
        batchId = ++_batchCount;
        _batches[batchId] = Batch({
            root: root,
            hospital: msg.sender,
            timestamp: uint40(block.timestamp),
            count: uint24(count),
            memberId: member
        });
        emit BatchAnchored(batchId, root, msg.sender, count);
        for (uint256 i = 0; i < count; ++i) {
            bytes32 id = recordIds[i];
            if (uint32(bytes4(id)) != member) _checkNamespace(id, member);
            emit RecordAnchored(patients[i], id, msg.sender, batchId);
        }
    }

    /**
     * @inheritdoc IRecordRegistry
     * @dev The tombstone does not touch the batch: {verifyRecord} still proves that the record
     * existed unaltered. Ownership comes from the id's namespace, checked against the caller's
     * member id, so a hospital that rotated its signing key erases with its new address the
     * records it anchored with the old one; no Merkle proof is needed (none would reveal a
     * content hash on-chain), and a record may be tombstoned before its batch is anchored.
     *
     * Requirements:
     * - the caller is a member hospital ({ConsortiumGatedNotMember});
     * - `recordIds` is not empty, no id is zero and `reasonHash` is not zero
     *   ({RecordRegistryInvalidErasure});
     * - every id is in the caller's namespace ({RecordRegistryForeignRecord}); nothing is
     *   erased otherwise.
     *
     * Emits one {RecordErased} per id not erased before (none for an id already erased).
     */
    function eraseRecords(bytes32[] calldata recordIds, bytes32 reasonHash) external onlyMember {
        uint256 count = recordIds.length;
        if (count == 0 || reasonHash == bytes32(0)) revert RecordRegistryInvalidErasure();
        uint32 member = consortium().memberId(msg.sender);
        for (uint256 i = 0; i < count; ++i) {
            bytes32 id = recordIds[i];
            if (id == bytes32(0)) revert RecordRegistryInvalidErasure();
            if (uint32(bytes4(id)) != member) _checkNamespace(id, member);
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
    function batch(uint256 id)
        external
        view
        returns (bytes32 root, address hospital, uint64 timestamp, uint32 count, uint32 memberId)
    {
        Batch storage b = _batches[id];
        return (b.root, b.hospital, b.timestamp, b.count, b.memberId);
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
     * @dev A root commits to whatever leaves its hospital put in it: a leaf bearing another
     * hospital's record id proves nothing about that record, so it does not verify.
     *
     * Requirements: none (false for an unknown batch, a wrong proof or a record id outside
     * the namespace of the batch's hospital). Emits nothing.
     */
    function verifyRecord(
        uint256 batchId,
        bytes32 recordId,
        address patient,
        bytes32 contentHash,
        bytes32 previousId,
        bytes32[] calldata proof
    ) external view returns (bool) {
        Batch storage b = _batches[batchId];
        bytes32 root = b.root;
        if (root == bytes32(0) || !_inNamespace(recordId, b.memberId, b.hospital)) return false;
        return MerkleProof.verifyCalldata(proof, root, leafHash(recordId, patient, contentHash, previousId));
    }

    /// @dev Reverts with {RecordRegistryForeignRecord} unless `recordId` is in the namespace of
    /// the caller, whose member id is `member`.
    function _checkNamespace(bytes32 recordId, uint32 member) private view {
        if (!_inNamespace(recordId, member, msg.sender)) revert RecordRegistryForeignRecord(recordId, msg.sender);
    }

    /**
     * @dev Whether `recordId`'s first 4 bytes are `member` (the member id of `account`) or a
     * member id whose current (last) address is `account`: a hospital removed and admitted
     * again gets a new id and keeps its old records. Callers on hot paths test the first case
     * inline; the second costs a call to the Consortium.
     */
    function _inNamespace(bytes32 recordId, uint32 member, address account) private view returns (bool) {
        uint32 owner = uint32(bytes4(recordId));
        return owner == member || (owner != 0 && consortium().memberAddress(owner) == account);
    }
}
