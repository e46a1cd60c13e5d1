// SPDX-License-Identifier: GPL-3.0-or-later
pragma solidity ^0.8.24;

/**
 * @title IZkAccessGate
 * @dev Anonymous record access (v2). A clinician proves in zero knowledge (circuit
 * `clinician_access`) that it holds an unrevoked credential in the {ICredentialRegistry}
 * tree whose role is in `mask` and whose hospital matches `classHospital` (0: any), with a
 * licence valid at `currentTime`. The patient must hold a live reader-class consent
 * (ConsentRegistry) for the class (`classHospital`, `classRoles`) and the record's scope; the
 * consortium's category policy narrows the class: `mask = classRoles & categoryPolicy`.
 * A member hospital relays the proof; the gate never learns who the reader is.
 *
 * Public inputs, built on-chain in this order: [root, context, scope, epochNullifier]:
 *
 *     context   = currentTime | mask << 40 | classHospital << 56 | signalTag << 88
 *     signalTag = uint256(keccak256(abi.encodePacked(signal))) >> 104
 *     scope     = uint256(keccak256(abi.encodePacked(block.chainid, address(this),
 *                 recordId, patient, category, uint64(currentTime / epochLength)))) >> 8
 *
 * Chain id and gate address are inside `scope`: a proof is bound to one chain and one gate.
 * So are the patient and category the relayer names: a relayer cannot have a proof checked
 * against another patient's consent or another category's policy.
 * `epochNullifier = Poseidon(scope, secret)` is the same for one credential, record and epoch
 * (auditors count distinct readers per record and epoch without learning who). Replays are
 * stopped by `requestId = keccak256(abi.encodePacked(recordId, signal))`.
 */
interface IZkAccessGate {
    /// @dev One anonymous access. `signal` is the requester's one-time X25519 public key (the
    /// record key is wrapped to it); `currentTime` the time the proof is made for (unix
    /// seconds); (`scopeKind`, `classHospital`, `classRoles`) name the patient's class consent
    /// relied on (scope kind 0 record, 1 category, 2 all records).
    struct AccessRequest {
        bytes32 recordId;
        address patient;
        bytes32 category;
        uint8 scopeKind;
        uint32 classHospital;
        uint16 classRoles;
        uint256 root;
        uint64 currentTime;
        bytes32 signal;
        uint256 epochNullifier;
    }

    /// @dev A zero address, a zero max proof age or epoch length, or a clock skew >= 2^32 s.
    error ZkAccessGateInvalidConfig();
    /// @dev Only the Consortium contract (a call proposal voted by a majority) sets policies.
    error ZkAccessGateNotConsortium(address caller);
    /// @dev `classRoles & categoryPolicy(category)` is empty: no role of the class may read.
    error ZkAccessGateRolesNotAllowed(bytes32 category, uint16 classRoles);
    /// @dev The patient holds no live class consent for this class and scope.
    error ZkAccessGateNoConsent(address patient);
    /// @dev `root` is not a valid credential root (unknown, too old, or before a revocation).
    error ZkAccessGateUnknownRoot(uint256 root);
    /// @dev `currentTime` is older than `maxProofAge`.
    error ZkAccessGateStaleProof(uint256 currentTime, uint256 blockTime);
    /// @dev `currentTime` is further in the future than `maxClockSkew`.
    error ZkAccessGateFutureProof(uint256 currentTime, uint256 blockTime);
    /// @dev This (recordId, signal) request was served before, or twice in this batch.
    error ZkAccessGateReplayed(bytes32 requestId);
    /// @dev The proof (or, for a batch, one of the proofs) does not verify.
    error ZkAccessGateInvalidProof();
    /// @dev A batch is empty or its arrays differ in length.
    error ZkAccessGateInvalidBatch();

    /// @dev The consortium set `category`'s policy to `allowedRoles` (bit i: role i may ever
    /// read the category anonymously; 0: nobody).
    event PolicySet(bytes32 indexed category, uint16 allowedRoles);

    /// @dev An anonymous reader was granted `recordId` of `patient`; `relayer` is the member
    /// hospital that sent the proof.
    event ZkAccessGranted(
        bytes32 indexed recordId,
        address indexed patient,
        uint256 indexed epochNullifier,
        uint64 epoch,
        bytes32 category,
        bytes32 signal,
        address relayer
    );

    /// @notice Checks one access proof; on success marks its request used and emits {ZkAccessGranted}.
    function access(AccessRequest calldata request, uint256[8] calldata proof) external;

    /// @notice Checks several access proofs with one batched verification: all or nothing.
    function accessBatch(AccessRequest[] calldata requests, uint256[8][] calldata proofs) external;

    /// @notice Sets the roles that may ever read `category` anonymously (the Consortium only).
    function setCategoryPolicy(bytes32 category, uint16 allowedRoles) external;

    /// @notice The consortium's allowed-roles mask of `category` (0: none).
    function categoryPolicy(bytes32 category) external view returns (uint16);

    /// @notice The public inputs a proof for `request` must carry (under the current policy).
    function publicInputs(AccessRequest calldata request) external view returns (uint256[4] memory);

    /// @notice True iff the request (recordId, signal) was served.
    function requestUsed(bytes32 recordId, bytes32 signal) external view returns (bool);

    /// @notice Length of a nullifier epoch in seconds.
    function epochLength() external view returns (uint256);

    /// @notice Oldest accepted `currentTime`, in seconds before the block time.
    function maxProofAge() external view returns (uint256);

    /// @notice Latest accepted `currentTime`, in seconds after the block time.
    function maxClockSkew() external view returns (uint256);

    /// @notice The credential registry whose roots are accepted.
    function credentialRegistry() external view returns (address);

    /// @notice The consent registry whose class consents are required.
    function consentRegistry() external view returns (address);

    /// @notice The Groth16 verifier of the `clinician_access` circuit.
    function verifier() external view returns (address);
}
