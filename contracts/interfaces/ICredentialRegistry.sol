// SPDX-License-Identifier: GPL-3.0-or-later
pragma solidity ^0.8.24;

/**
 * @title ICredentialRegistry
 * @dev Anonymous clinician credentials: member hospitals append credential commitments
 * (`poseidon(secret, hospitalId, role, licenceExpiry)`) to a depth-20 incremental Poseidon
 * Merkle tree (zk-kit InternalBinaryIMT, default zeroes). A clinician proves membership of
 * the tree in zero knowledge; verifiers accept a proof against any root in the history.
 *
 * Root history: the last {ROOT_HISTORY} roots produced since the last revocation are valid
 * (the current root included; each add call or revocation produces one root). A revocation
 * invalidates every earlier root at once, so a revoked credential cannot be used against an
 * old root.
 */
interface ICredentialRegistry {
    /// @dev The commitment is zero or not below the BN254 scalar field.
    error CredentialRegistryInvalidCommitment(uint256 commitment);
    /// @dev The commitment was already registered (revoked ones cannot be re-added).
    error CredentialRegistryDuplicate(uint256 commitment);
    /// @dev The commitment is not registered.
    error CredentialRegistryUnknown(uint256 commitment);
    /// @dev The commitment was already revoked.
    error CredentialRegistryAlreadyRevoked(uint256 commitment);
    /// @dev Only the hospital that added a credential may revoke it.
    error CredentialRegistryNotIssuer(uint256 commitment, address caller);
    /// @dev An empty batch.
    error CredentialRegistryEmptyBatch();

    /// @dev `hospital` added `commitment` at leaf `index`; `root` is the tree root after the
    /// call (the same for every leaf of a batch).
    event CredentialAdded(address indexed hospital, uint256 indexed commitment, uint256 index, uint256 root);

    /// @dev `hospital` revoked `commitment` (leaf `index` set to zero); `root` is the new root.
    event CredentialRevoked(address indexed hospital, uint256 indexed commitment, uint256 index, uint256 root);

    /// @notice Appends one credential commitment issued by the caller.
    function addCredential(uint256 commitment) external;

    /// @notice Appends several credential commitments issued by the caller (one new root).
    function addCredentials(uint256[] calldata commitments) external;

    /// @notice Revokes `commitment`: its leaf becomes zero. `siblings` / `pathIndices` are
    /// its Merkle path in the current tree (pathIndices[i] == 0: the node is a left child).
    function revokeCredential(uint256 commitment, uint256[] calldata siblings, uint8[] calldata pathIndices)
        external;

    /// @notice The current root.
    function root() external view returns (uint256);

    /// @notice True iff `root_` is one of the last ROOT_HISTORY roots since the last revocation.
    function isValidRoot(uint256 root_) external view returns (bool);

    /// @notice Number of leaves appended so far (revoked ones included).
    function numberOfLeaves() external view returns (uint256);

    /// @notice Issuer, leaf index and revocation status of `commitment` (issuer zero: unknown).
    function credential(uint256 commitment) external view returns (address issuer, uint256 index, bool revoked);
}
