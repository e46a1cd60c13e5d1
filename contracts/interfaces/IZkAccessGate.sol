// SPDX-License-Identifier: GPL-3.0-or-later
pragma solidity ^0.8.24;

/**
 * @title IZkAccessGate
 * @dev Anonymous record access: a clinician proves in zero knowledge (circuit
 * `clinician_access`) that they hold an unrevoked credential in the {ICredentialRegistry}
 * tree, with a role the record category's policy allows and a licence valid at
 * `currentTime`; a member hospital relays the proof. The gate stores the nullifier (one
 * access per record and signal) and emits {ZkAccessGranted}, never the clinician's identity.
 *
 * Public inputs, built on-chain in this order: [root, allowedRoles(category), currentTime,
 * externalNullifier, nullifierHash, signalHash] with
 * externalNullifier = uint256(keccak256(abi.encodePacked(recordId, signal))) >> 8 and
 * signalHash = uint256(keccak256(abi.encodePacked(signal))) >> 8.
 */
interface IZkAccessGate {
    /// @dev One access. `signal` is the requester's ephemeral X25519 public key (the record
    /// key is wrapped to it); `currentTime` the time the proof is made for (unix seconds).
    struct AccessRequest {
        bytes32 recordId;
        bytes32 category;
        uint256 root;
        uint256 currentTime;
        bytes32 signal;
        uint256 nullifierHash;
    }

    /// @dev A zero address or a zero max proof age given to the constructor.
    error ZkAccessGateInvalidConfig();
    /// @dev `allowedRoles` has bits above the 16 roles.
    error ZkAccessGateInvalidPolicy(uint256 allowedRoles);
    /// @dev No policy for the category (allowedRoles == 0).
    error ZkAccessGateNoPolicy(bytes32 category);
    /// @dev `root` is not a valid credential root (unknown, too old, or before a revocation).
    error ZkAccessGateUnknownRoot(uint256 root);
    /// @dev `currentTime` is older than `maxProofAge`.
    error ZkAccessGateStaleProof(uint256 currentTime, uint256 blockTime);
    /// @dev `currentTime` is further in the future than `maxClockSkew`.
    error ZkAccessGateFutureProof(uint256 currentTime, uint256 blockTime);
    /// @dev The nullifier was used before, or twice in this batch.
    error ZkAccessGateNullifierUsed(uint256 nullifierHash);
    /// @dev The proof (or, for a batch, one of the proofs) does not verify.
    error ZkAccessGateInvalidProof();
    /// @dev A batch is empty or its arrays differ in length.
    error ZkAccessGateInvalidBatch();

    /// @dev `category`'s policy is now `allowedRoles` (bit i: role i allowed; 0: no access),
    /// set by member hospital `hospital`.
    event PolicySet(bytes32 indexed category, uint256 allowedRoles, address indexed hospital);

    /// @dev An anonymous clinician was granted `recordId`; `relayer` is the member hospital
    /// that sent the proof.
    event ZkAccessGranted(
        bytes32 indexed recordId,
        uint256 indexed nullifierHash,
        bytes32 indexed category,
        bytes32 signal,
        uint256 root,
        address relayer
    );

    /// @notice Sets the roles allowed to access records of `category` (0 removes the policy).
    function setCategoryPolicy(bytes32 category, uint256 allowedRoles) external;

    /// @notice Checks one access proof; on success stores its nullifier and emits {ZkAccessGranted}.
    function access(AccessRequest calldata request, uint256[8] calldata proof) external;

    /// @notice Checks several access proofs at once (one batched verification): all or nothing.
    function accessBatch(AccessRequest[] calldata requests, uint256[8][] calldata proofs) external;

    /// @notice The public inputs a proof for `request` must carry (under the current policy).
    function publicInputs(AccessRequest calldata request) external view returns (uint256[6] memory);

    /// @notice The allowed-roles mask of `category` (0: none).
    function categoryPolicy(bytes32 category) external view returns (uint256);

    /// @notice True iff `nullifierHash` was used.
    function nullifierUsed(uint256 nullifierHash) external view returns (bool);

    /// @notice The credential registry whose roots are accepted.
    function credentialRegistry() external view returns (address);

    /// @notice The Groth16 verifier of the `clinician_access` circuit.
    function verifier() external view returns (address);

    /// @notice Oldest accepted `currentTime`, in seconds before the block time.
    function maxProofAge() external view returns (uint256);

    /// @notice Latest accepted `currentTime`, in seconds after the block time.
    function maxClockSkew() external view returns (uint256);
}
