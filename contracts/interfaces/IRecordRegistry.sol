// SPDX-License-Identifier: GPL-3.0-or-later
pragma solidity ^0.8.24;

/**
 * @title IRecordRegistry
 * @dev Anchors batches of medical records as Merkle roots. A leaf is
 * `keccak256(bytes.concat(keccak256(abi.encode(recordId, patient, contentHash, previousId))))`;
 * pairs are hashed commutatively (OpenZeppelin `MerkleProof`). Nothing personal is stored:
 * patients are addresses and records opaque ids.
 *
 * Record ids are namespaced by hospital: the first 4 bytes of an id are the Consortium member
 * id (big-endian `uint32`) of the hospital that creates, anchors and may erase it; the other 28
 * bytes are random. Only that member anchors or erases ids of its namespace, so the anchoring
 * hospital is known from the id itself, at no storage cost, and survives a signing-key
 * rotation (the member id moves with the membership).
 */
interface IRecordRegistry {
    /// @dev An anchored batch (two storage slots). Batch ids start at 1. `hospital` is the
    /// address that anchored it, `memberId` that hospital's Consortium member id.
    struct Batch {
        bytes32 root;
        address hospital;
        uint40 timestamp;
        uint24 count;
        uint32 memberId;
    }

    /// @dev Empty batch, zero root, `recordIds` and `patients` of different lengths, or more
    /// than 2^24 - 1 records.
    error RecordRegistryInvalidBatch();
    /// @dev `eraseRecords` got no ids, a zero id or a zero reason hash.
    error RecordRegistryInvalidErasure();
    /// @dev `recordId` is not in `account`'s namespace: its first 4 bytes are not the member id
    /// of `account` (another hospital's record, or no member's), so `account` may neither anchor
    /// nor erase it.
    error RecordRegistryForeignRecord(bytes32 recordId, address account);

    /// @dev A member hospital anchored batch `batchId` of `count` records under `root`.
    event BatchAnchored(uint256 indexed batchId, bytes32 indexed root, address indexed hospital, uint256 count);
    /// @dev Record `recordId` of `patient` was anchored by `hospital` in batch `batchId`.
    event RecordAnchored(address indexed patient, bytes32 indexed recordId, address indexed hospital, uint256 batchId);
    /// @dev Tombstone: `hospital` destroyed the data key of record `recordId` (crypto-shredding,
    /// GDPR art. 17) for the reason `reasonHash` commits to (the node's salted commitment; the
    /// text and salt stay off-chain). The anchored hash stays.
    event RecordErased(bytes32 indexed recordId, address indexed hospital, bytes32 reasonHash);

    /// @notice Anchors a batch of records of the caller's namespace; returns its id.
    function anchorBatch(bytes32 root, bytes32[] calldata recordIds, address[] calldata patients)
        external
        returns (uint256 batchId);

    /// @notice Batch `id` (all zero for an unknown id); `memberId` is the anchoring hospital's
    /// Consortium member id.
    function batch(uint256 id)
        external
        view
        returns (bytes32 root, address hospital, uint64 timestamp, uint32 count, uint32 memberId);

    /// @notice Number of batches anchored (the last id).
    function batchCount() external view returns (uint256);

    /// @notice The Merkle leaf of a record version.
    function leafHash(bytes32 recordId, address patient, bytes32 contentHash, bytes32 previousId)
        external
        pure
        returns (bytes32);

    /// @notice Records the erasure (a tombstone) of every id not yet erased, all of the caller's
    /// namespace (only the hospital that anchors a record may erase it); ids already erased are
    /// skipped, so a retried batch is harmless.
    function eraseRecords(bytes32[] calldata recordIds, bytes32 reasonHash) external;

    /// @notice Whether `recordId` carries an erasure tombstone.
    function isErased(bytes32 recordId) external view returns (bool);

    /// @notice Whether the record version is in batch `batchId`, anchored by the hospital whose
    /// namespace its id is in (false for an unknown batch).
    function verifyRecord(
        uint256 batchId,
        bytes32 recordId,
        address patient,
        bytes32 contentHash,
        bytes32 previousId,
        bytes32[] calldata proof
    ) external view returns (bool);
}
