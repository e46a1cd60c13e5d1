// SPDX-License-Identifier: GPL-3.0-or-later
pragma solidity ^0.8.24;

/**
 * @title IRecordRegistry
 * @dev Anchors batches of medical records as Merkle roots. A leaf is
 * `keccak256(bytes.concat(keccak256(abi.encode(recordId, patient, contentHash, previousId))))`;
 * pairs are hashed commutatively (OpenZeppelin `MerkleProof`). Nothing personal is stored:
 * patients are addresses and records opaque ids.
 */
interface IRecordRegistry {
    /// @dev An anchored batch. Batch ids start at 1.
    struct Batch {
        bytes32 root;
        address hospital;
        uint64 timestamp;
        uint32 count;
    }

    /// @dev Empty batch, zero root, `recordIds` and `patients` of different lengths, or more
    /// than 2^32 - 1 records.
    error RecordRegistryInvalidBatch();
    /// @dev `eraseRecords` got no ids, a zero id or a zero reason hash.
    error RecordRegistryInvalidErasure();

    /// @dev A member hospital anchored batch `batchId` of `count` records under `root`.
    event BatchAnchored(uint256 indexed batchId, bytes32 indexed root, address indexed hospital, uint256 count);
    /// @dev Record `recordId` of `patient` was anchored by `hospital` in batch `batchId`.
    event RecordAnchored(address indexed patient, bytes32 indexed recordId, address indexed hospital, uint256 batchId);
    /// @dev Tombstone: `hospital` destroyed the data key of record `recordId` (crypto-shredding,
    /// GDPR art. 17) for the reason whose keccak256 is `reasonHash`. The anchored hash stays.
    event RecordErased(bytes32 indexed recordId, address indexed hospital, bytes32 reasonHash);

    /// @notice Anchors a batch of records; returns its id.
    function anchorBatch(bytes32 root, bytes32[] calldata recordIds, address[] calldata patients)
        external
        returns (uint256 batchId);

    /// @notice Batch `id` (all zero for an unknown id).
    function batch(uint256 id) external view returns (bytes32 root, address hospital, uint64 timestamp, uint32 count);

    /// @notice Number of batches anchored (the last id).
    function batchCount() external view returns (uint256);

    /// @notice The Merkle leaf of a record version.
    function leafHash(bytes32 recordId, address patient, bytes32 contentHash, bytes32 previousId)
        external
        pure
        returns (bytes32);

    /// @notice Records the erasure (a tombstone) of every id not yet erased; ids already
    /// erased are skipped, so a retried batch is harmless.
    function eraseRecords(bytes32[] calldata recordIds, bytes32 reasonHash) external;

    /// @notice Whether `recordId` carries an erasure tombstone.
    function isErased(bytes32 recordId) external view returns (bool);

    /// @notice Whether the record version is in batch `batchId` (false for an unknown batch).
    function verifyRecord(
        uint256 batchId,
        bytes32 recordId,
        address patient,
        bytes32 contentHash,
        bytes32 previousId,
        bytes32[] calldata proof
    ) external view returns (bool);
}
