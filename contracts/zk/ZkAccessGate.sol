// SPDX-License-Identifier: GPL-3.0-or-later
pragma solidity ^0.8.24;

import {IConsortium} from "../interfaces/IConsortium.sol";
import {IConsentRegistry} from "../interfaces/IConsentRegistry.sol";
import {ICredentialRegistry} from "../interfaces/ICredentialRegistry.sol";
import {IGroth16Verifier4} from "../interfaces/IGroth16Verifier4.sol";
import {IZkAccessGate} from "../interfaces/IZkAccessGate.sol";
import {ConsortiumGated} from "../base/ConsortiumGated.sol";

/**
 * @title ZkAccessGate
 * @notice Anonymous record access under the patient's reader-class consent and the
 * consortium's category policy, relayed by member hospitals.
 * @dev See {IZkAccessGate}. Checks run cheapest first (policy and class, time window, live
 * consent, replay, root, proof); every rejection reverts, so a rejected request changes
 * nothing. The verifier (generated, Semaphore's verifier/registry/gate split) and the
 * registries are separate contracts.
 */
contract ZkAccessGate is IZkAccessGate, ConsortiumGated {
    uint8 private constant SCOPE_RECORD = 0;
    uint8 private constant SCOPE_CATEGORY = 1;

    ICredentialRegistry private immutable _registry;
    IConsentRegistry private immutable _consent;
    IGroth16Verifier4 private immutable _verifier;
    uint256 private immutable _maxProofAge;
    uint256 private immutable _maxClockSkew;
    uint256 private immutable _epochLength;

    mapping(bytes32 category => uint16) private _policies;
    mapping(bytes32 requestId => bool) private _requests;

    /**
     * @param epochLength_ Length of a nullifier epoch in seconds (e.g. 86400).
     * @dev Requirements: no zero address ({ConsortiumGatedInvalidConsortium},
     * {ZkAccessGateInvalidConfig}); `maxProofAge_` and `epochLength_` > 0 and
     * `maxClockSkew_` < 2^32 (so an accepted `currentTime` fits the context's 40 bits)
     * ({ZkAccessGateInvalidConfig}).
     */
    constructor(
        IConsortium consortium_,
        ICredentialRegistry credentialRegistry_,
        IConsentRegistry consentRegistry_,
        IGroth16Verifier4 verifier_,
        uint256 maxProofAge_,
        uint256 maxClockSkew_,
        uint256 epochLength_
    ) ConsortiumGated(consortium_) {
        if (
            address(credentialRegistry_) == address(0) || address(consentRegistry_) == address(0)
                || address(verifier_) == address(0) || maxProofAge_ == 0 || epochLength_ == 0
                || maxClockSkew_ >= 1 << 32
        ) {
            revert ZkAccessGateInvalidConfig();
        }
        _registry = credentialRegistry_;
        _consent = consentRegistry_;
        _verifier = verifier_;
        _maxProofAge = maxProofAge_;
        _maxClockSkew = maxClockSkew_;
        _epochLength = epochLength_;
    }

    /**
     * @inheritdoc IZkAccessGate
     * @dev Requirements: the caller is the Consortium contract, i.e. a call proposal passed by
     * a strict majority of the members ({ZkAccessGateNotConsortium}). Emits {PolicySet}.
     */
    function setCategoryPolicy(bytes32 category, uint16 allowedRoles) external {
        if (msg.sender != address(consortium())) revert ZkAccessGateNotConsortium(msg.sender);
        _policies[category] = allowedRoles;
        emit PolicySet(category, allowedRoles);
    }

    /**
     * @inheritdoc IZkAccessGate
     * @dev Requirements, in this order:
     * - the caller is a member ({ConsortiumGatedNotMember});
     * - `classRoles & categoryPolicy(category) != 0` ({ZkAccessGateRolesNotAllowed});
     * - `currentTime` within [now - maxProofAge, now + maxClockSkew] ({ZkAccessGateStaleProof},
     *   {ZkAccessGateFutureProof});
     * - the patient's class consent (classHospital, classRoles, scopeKind, scope) is live, with
     *   scope = recordId / category / 0 for scope kind 0 / 1 / 2 ({ZkAccessGateNoConsent});
     * - (recordId, signal) was not served before ({ZkAccessGateReplayed});
     * - the root is valid ({ZkAccessGateUnknownRoot});
     * - the proof verifies for {publicInputs} ({ZkAccessGateInvalidProof}).
     *
     * Emits {ZkAccessGranted}.
     */
    function access(AccessRequest calldata request, uint256[8] calldata proof) external onlyMember {
        bytes32 requestId = _requestId(request);
        uint256 mask = _checkPolicy(request, _policies[request.category]);
        uint256 epoch = _checkTime(request);
        _checkConsent(request, 0);
        if (_requests[requestId]) revert ZkAccessGateReplayed(requestId);
        _checkRoot(request.root, 0);
        _requests[requestId] = true;
        // verifyProof(proof, inputs), encoded by hand: selector, 8 proof words, 4 inputs
        address v = address(_verifier);
        bytes4 selector = IGroth16Verifier4.verifyProof.selector;
        bool ok;
        assembly ("memory-safe") {
            let m := mload(0x40)
            mstore(m, selector)
            calldatacopy(add(m, 4), proof, 0x100)
        }
        _writeInputs(_freePointer() + 0x104, request, mask, epoch);
        assembly ("memory-safe") {
            let m := mload(0x40)
            ok := staticcall(gas(), v, m, 0x184, 0, 0x20)
            // (Yul evaluates arguments right to left: read the answer after the call)
            ok := and(ok, and(gt(returndatasize(), 0x1f), eq(mload(0), 1)))
        }
        if (!ok) revert ZkAccessGateInvalidProof();
        _emitGranted(request, epoch);
    }

    /**
     * @inheritdoc IZkAccessGate
     * @dev k proofs in one k + 3 pairing check. Within a batch the registry is asked once per
     * run of equal roots, the policy read once per run of equal categories and the consent
     * registry once per run of equal (patient, class, scope) (the same answers: nothing
     * changes state in between).
     *
     * Requirements: the caller is a member ({ConsortiumGatedNotMember}); `requests` and
     * `proofs` are nonempty and of equal length ({ZkAccessGateInvalidBatch}); as {access} for
     * every request, and no request twice ({ZkAccessGateReplayed}). A single invalid proof
     * rejects the whole batch ({ZkAccessGateInvalidProof}).
     *
     * Emits one {ZkAccessGranted} per request.
     */
    function accessBatch(AccessRequest[] calldata requests, uint256[8][] calldata proofs) external onlyMember {
        uint256 k = requests.length;
        if (k == 0 || k != proofs.length) revert ZkAccessGateInvalidBatch();
        // verifyBatch(proofs, inputs), encoded by hand straight into one buffer:
        // selector | 0x40 | 0x60 + 256k | k | proofs (256k) | k | inputs (128k)
        uint256 buf = _freePointer();
        uint256 inputsAt = buf + 0x84 + (k << 8);
        bytes4 selector = IGroth16Verifier4.verifyBatch.selector;
        assembly ("memory-safe") {
            mstore(buf, selector)
            mstore(add(buf, 4), 0x40)
            mstore(add(buf, 0x24), add(0x60, shl(8, k)))
            mstore(add(buf, 0x44), k)
            calldatacopy(add(buf, 0x64), proofs.offset, shl(8, k))
            mstore(sub(inputsAt, 0x20), k)
            // keep the buffer: the checks below use scratch memory past it
            mstore(0x40, add(inputsAt, shl(7, k)))
        }
        Cache memory cache;
        for (uint256 i = 0; i < k; ++i) {
            _checkBatchItem(requests[i], inputsAt + (i << 7), cache);
        }
        address v = address(_verifier);
        bool ok;
        assembly ("memory-safe") {
            ok := staticcall(gas(), v, buf, sub(add(inputsAt, shl(7, k)), buf), 0, 0x20)
            ok := and(ok, and(gt(returndatasize(), 0x1f), eq(mload(0), 1)))
        }
        if (!ok) revert ZkAccessGateInvalidProof();
        uint256 len = _epochLength;
        for (uint256 i = 0; i < k; ++i) {
            AccessRequest calldata r = requests[i];
            _emitGranted(r, r.currentTime / len);
        }
    }

    /// @inheritdoc IZkAccessGate
    function publicInputs(AccessRequest calldata request) external view returns (uint256[4] memory) {
        uint256 mask = uint256(request.classRoles & _policies[request.category]);
        uint256[4] memory input;
        uint256 at;
        assembly ("memory-safe") {
            at := input
        }
        _writeInputs(at, request, mask, request.currentTime / _epochLength);
        return input;
    }

    /// @inheritdoc IZkAccessGate
    function categoryPolicy(bytes32 category) external view returns (uint16) {
        return _policies[category];
    }

    /// @inheritdoc IZkAccessGate
    function requestUsed(bytes32 recordId, bytes32 signal) external view returns (bool) {
        return _requests[keccak256(abi.encodePacked(recordId, signal))];
    }

    /// @inheritdoc IZkAccessGate
    function epochLength() external view returns (uint256) {
        return _epochLength;
    }

    /// @inheritdoc IZkAccessGate
    function maxProofAge() external view returns (uint256) {
        return _maxProofAge;
    }

    /// @inheritdoc IZkAccessGate
    function maxClockSkew() external view returns (uint256) {
        return _maxClockSkew;
    }

    /// @inheritdoc IZkAccessGate
    function credentialRegistry() external view returns (address) {
        return address(_registry);
    }

    /// @inheritdoc IZkAccessGate
    function consentRegistry() external view returns (address) {
        return address(_consent);
    }

    /// @inheritdoc IZkAccessGate
    function verifier() external view returns (address) {
        return address(_verifier);
    }

    // ---------------------------------------------------------------- internal

    /// @dev Answers already obtained in a batch (see {accessBatch}).
    struct Cache {
        uint256 root;
        bytes32 category;
        uint256 policy;
        uint256 consent;
    }

    /// @dev Every check of {access} for one request of a batch (answers cached in `cache`);
    /// marks the request used and writes its public inputs at `at`.
    function _checkBatchItem(AccessRequest calldata r, uint256 at, Cache memory cache) private {
        bytes32 requestId = _requestId(r);
        bytes32 category = r.category;
        if (category != cache.category || cache.policy == 0) {
            cache.policy = _policies[category];
            cache.category = category;
        }
        uint256 mask = _checkPolicy(r, cache.policy);
        uint256 epoch = _checkTime(r);
        cache.consent = _checkConsent(r, cache.consent);
        if (_requests[requestId]) revert ZkAccessGateReplayed(requestId);
        cache.root = _checkRoot(r.root, cache.root);
        // marks it now: a duplicate later in the batch is caught above
        _requests[requestId] = true;
        _writeInputs(at, r, mask, epoch);
    }

    /// @dev mask = classRoles & policy; nonzero ({ZkAccessGateRolesNotAllowed}).
    function _checkPolicy(AccessRequest calldata request, uint256 policy) private pure returns (uint256 mask) {
        uint16 roles = request.classRoles;
        mask = roles & policy;
        if (mask == 0) revert ZkAccessGateRolesNotAllowed(request.category, roles);
    }

    /// @dev currentTime within [now - maxProofAge, now + maxClockSkew]; returns its epoch.
    function _checkTime(AccessRequest calldata request) private view returns (uint256) {
        uint256 t = request.currentTime;
        if (t < block.timestamp && block.timestamp - t > _maxProofAge) {
            revert ZkAccessGateStaleProof(t, block.timestamp);
        }
        if (t > block.timestamp && t - block.timestamp > _maxClockSkew) {
            revert ZkAccessGateFutureProof(t, block.timestamp);
        }
        return t / _epochLength;
    }

    /**
     * @dev The patient's class consent (classHospital, classRoles, scopeKind, scope) is live
     * ({ZkAccessGateNoConsent}). Returns a digest of the five values; `known` is the digest of
     * a consent already found live in this call (0: none), which is not asked again.
     */
    function _checkConsent(AccessRequest calldata request, uint256 known) private view returns (uint256 key) {
        uint8 kind = request.scopeKind;
        bytes32 scope = kind == SCOPE_RECORD ? request.recordId : kind == SCOPE_CATEGORY ? request.category : bytes32(0);
        address patient = request.patient;
        uint32 hospital = request.classHospital;
        uint16 roles = request.classRoles;
        assembly ("memory-safe") {
            let m := mload(0x40)
            mstore(m, patient)
            mstore(add(m, 0x20), or(shl(24, hospital), or(shl(8, roles), kind)))
            mstore(add(m, 0x40), scope)
            key := keccak256(m, 0x60)
        }
        if (key == known) return key;
        uint64 expiry = _consent.classConsentExpiry(patient, hospital, roles, kind, scope);
        if (expiry <= block.timestamp) revert ZkAccessGateNoConsent(patient);
    }

    /// @dev `root` is valid ({ZkAccessGateUnknownRoot}); `known` (nonzero) was already found
    /// valid in this call, so the registry is not asked again. Returns `root`.
    function _checkRoot(uint256 root, uint256 known) private view returns (uint256) {
        if (root != known || known == 0) {
            if (!_registry.isValidRoot(root)) revert ZkAccessGateUnknownRoot(root);
        }
        return root;
    }

    function _freePointer() private pure returns (uint256 m) {
        assembly ("memory-safe") {
            m := mload(0x40)
        }
    }

    function _requestId(AccessRequest calldata request) private pure returns (bytes32 id) {
        assembly ("memory-safe") {
            // keccak256(abi.encodePacked(recordId, signal)); recordId is word 0, signal word 8
            mstore(0, calldataload(request))
            mstore(0x20, calldataload(add(request, 0x100)))
            id := keccak256(0, 0x40)
        }
    }

    /**
     * @dev Writes [root, context, scope, epochNullifier] (see {IZkAccessGate}) at memory `at`;
     * hashes in the scratch space and in the free memory past `at + 0x80` (not kept).
     * context = currentTime | mask << 40 | classHospital << 56 | (keccak256(signal) >> 104) << 88;
     * scope = keccak256(abi.encodePacked(chainid, address(this), recordId, patient, category,
     * uint64(epoch))) >> 8.
     */
    function _writeInputs(uint256 at, AccessRequest calldata request, uint256 mask, uint256 epoch) private view {
        uint256 time = request.currentTime;
        uint256 hospital = request.classHospital;
        assembly ("memory-safe") {
            mstore(0, calldataload(add(request, 0x100)))
            let signalTag := shr(104, keccak256(0, 0x20))
            let context := or(or(time, shl(40, mask)), or(shl(56, hospital), shl(88, signalTag)))
            let m := add(at, 0x80)
            if lt(m, mload(0x40)) { m := mload(0x40) }
            mstore(m, chainid())
            mstore(add(m, 0x20), shl(96, address()))
            mstore(add(m, 0x34), calldataload(request))
            mstore(add(m, 0x54), shl(96, calldataload(add(request, 0x20))))
            mstore(add(m, 0x68), calldataload(add(request, 0x40)))
            mstore(add(m, 0x88), shl(192, epoch))
            let scope := shr(8, keccak256(m, 0x90))
            mstore(at, calldataload(add(request, 0xc0)))
            mstore(add(at, 0x20), context)
            mstore(add(at, 0x40), scope)
            mstore(add(at, 0x60), calldataload(add(request, 0x120)))
        }
    }

    function _emitGranted(AccessRequest calldata r, uint256 epoch) private {
        emit ZkAccessGranted(r.recordId, r.patient, r.epochNullifier, uint64(epoch), r.category, r.signal, msg.sender);
    }
}
