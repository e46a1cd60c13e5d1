// SPDX-License-Identifier: GPL-3.0-or-later
pragma solidity ^0.8.24;

/**
 * @title ICredentialRegistry
 * @dev Anonymous clinician credentials (v2). A clinician hands its hospital only an identity
 * commitment `idc = Poseidon1(secret)`. The issuing member hospital sets role and licence
 * expiry; the contract builds the leaf itself:
 *
 *     attrs = hospitalId | role << 32 | expiry << 36      (hospitalId = memberId(issuer))
 *     leaf  = PoseidonT3([idc, attrs])
 *
 * so no member can issue in another member's name. Leaves live in a zk-kit LeanIMT (binary,
 * dynamic depth, at most 2^20 leaves: the circuit's depth). A revocation sets the leaf to 0.
 *
 * Root history: the last {ROOT_HISTORY} roots produced since the last revocation are valid
 * (each issue call or revocation produces one root); a revocation invalidates every earlier
 * root at once. Root 0 (the empty tree, or a tree whose leaves are all revoked) is never
 * valid.
 *
 * Revocation rights: the Consortium contract (a call proposal voted by a majority); the
 * member that currently holds the issuing hospital's member id (rights follow a signing-key
 * rotation); any member once that id is no longer held by a member (hospital removed).
 */
interface ICredentialRegistry {
    /// @dev The identity commitment is zero or not below the BN254 scalar field.
    error CredentialRegistryInvalidCommitment(uint256 identityCommitment);
    /// @dev The role is not below 16.
    error CredentialRegistryInvalidRole(uint8 role);
    /// @dev The licence expiry is not in the future.
    error CredentialRegistryInvalidExpiry(uint40 expiry);
    /// @dev The leaf is in the tree already (same identity, hospital, role and expiry).
    error CredentialRegistryDuplicate(uint256 leaf);
    /// @dev The leaf is not in the tree (never issued, or revoked).
    error CredentialRegistryUnknown(uint256 leaf);
    /// @dev The caller may not revoke this credential.
    error CredentialRegistryNotAuthorized(uint256 leaf, address caller);
    /// @dev An empty batch, or arrays of different lengths.
    error CredentialRegistryInvalidBatch();
    /// @dev The tree would exceed 2^20 leaves (the circuit's maximum depth).
    error CredentialRegistryTreeFull();

    /// @dev Leaf `leaf` = Poseidon(identityCommitment, attrs) was issued by member id
    /// `hospitalId` at `index`; `root` is the tree root after the call (the same for every
    /// leaf of a batch).
    event CredentialIssued(
        uint256 indexed leaf,
        uint256 indexed identityCommitment,
        uint32 indexed hospitalId,
        uint8 role,
        uint40 expiry,
        uint256 index,
        uint256 root
    );

    /// @dev `revokedBy` set leaf `leaf` (at `index`, issued by `hospitalId`) to 0; `root` is
    /// the new root (every earlier root is invalid from now on).
    event CredentialRevoked(
        uint256 indexed leaf, uint32 indexed hospitalId, address revokedBy, uint256 index, uint256 root
    );

    /// @notice Issues one credential under the caller's member id.
    function issueCredential(uint256 identityCommitment, uint8 role, uint40 expiry) external;

    /// @notice Issues several credentials under the caller's member id (one new root).
    function issueCredentials(uint256[] calldata identityCommitments, uint8[] calldata roles, uint40[] calldata expiries)
        external;

    /// @notice Revokes the credential (identityCommitment, hospitalId, role, expiry);
    /// `siblings` is its LeanIMT Merkle proof in the current tree (levels with a sibling only).
    function revokeCredential(
        uint256 identityCommitment,
        uint32 hospitalId,
        uint8 role,
        uint40 expiry,
        uint256[] calldata siblings
    ) external;

    /// @notice The current root (0 for an empty tree).
    function root() external view returns (uint256);

    /// @notice True iff `root_` is nonzero and one of the last ROOT_HISTORY roots since the
    /// last revocation.
    function isValidRoot(uint256 root_) external view returns (bool);

    /// @notice Number of leaves appended so far (revoked ones included).
    function size() external view returns (uint256);

    /// @notice Current LeanIMT depth (ceil(log2(size))).
    function depth() external view returns (uint256);

    /// @notice Index of a live leaf (reverts {CredentialRegistryUnknown} otherwise).
    function indexOf(uint256 leaf) external view returns (uint256);

    /// @notice Whether `leaf` is a live (issued, unrevoked) leaf.
    function has(uint256 leaf) external view returns (bool);

    /// @notice The leaf the contract builds for (identityCommitment, hospitalId, role, expiry).
    function credentialLeaf(uint256 identityCommitment, uint32 hospitalId, uint8 role, uint40 expiry)
        external
        view
        returns (uint256);
}
