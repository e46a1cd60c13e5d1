// SPDX-License-Identifier: GPL-3.0-or-later
pragma solidity ^0.8.24;

import {IConsortium} from "../interfaces/IConsortium.sol";
import {ICredentialRegistry} from "../interfaces/ICredentialRegistry.sol";
import {IGroth16Verifier6} from "../interfaces/IGroth16Verifier6.sol";
import {IZkAccessGate} from "../interfaces/IZkAccessGate.sol";
import {ConsortiumGated} from "../base/ConsortiumGated.sol";

/**
 * @title ZkAccessGate
 * @notice Anonymous, policy-checked record access relayed by member hospitals.
 * @dev See {IZkAccessGate}. Checks run cheapest first (policy, time, nullifier, root, proof);
 * every rejection reverts, so a rejected request changes nothing.
 */
contract ZkAccessGate is IZkAccessGate, ConsortiumGated {
    uint256 private constant ROLE_MASK = (1 << 16) - 1;

    ICredentialRegistry private immutable _registry;
    IGroth16Verifier6 private immutable _verifier;
    uint256 private immutable _maxProofAge;
    uint256 private immutable _maxClockSkew;

    mapping(bytes32 category => uint256) private _policies;
    mapping(uint256 nullifierHash => bool) private _nullifiers;

    /**
     * @dev Requirements: no zero address, `maxProofAge_` > 0 ({ZkAccessGateInvalidConfig},
     * {ConsortiumGatedInvalidConsortium}).
     */
    constructor(
        IConsortium consortium_,
        ICredentialRegistry credentialRegistry_,
        IGroth16Verifier6 verifier_,
        uint256 maxProofAge_,
        uint256 maxClockSkew_
    ) ConsortiumGated(consortium_) {
        if (address(credentialRegistry_) == address(0) || address(verifier_) == address(0) || maxProofAge_ == 0) {
            revert ZkAccessGateInvalidConfig();
        }
        _registry = credentialRegistry_;
        _verifier = verifier_;
        _maxProofAge = maxProofAge_;
        _maxClockSkew = maxClockSkew_;
    }

    /**
     * @inheritdoc IZkAccessGate
     * @dev Requirements: the caller is a member ({ConsortiumGatedNotMember}); `allowedRoles`
     * < 2^16 ({ZkAccessGateInvalidPolicy}). Emits {PolicySet}.
     */
    function setCategoryPolicy(bytes32 category, uint256 allowedRoles) external onlyMember {
        if (allowedRoles > ROLE_MASK) revert ZkAccessGateInvalidPolicy(allowedRoles);
        _policies[category] = allowedRoles;
        emit PolicySet(category, allowedRoles, msg.sender);
    }

    /**
     * @inheritdoc IZkAccessGate
     * @dev Requirements: the caller is a member ({ConsortiumGatedNotMember}); the category has
     * a policy ({ZkAccessGateNoPolicy}); `currentTime` within [now - maxProofAge, now +
     * maxClockSkew] ({ZkAccessGateStaleProof}, {ZkAccessGateFutureProof}); the nullifier is
     * new ({ZkAccessGateNullifierUsed}); the root is valid ({ZkAccessGateUnknownRoot}); the
     * proof verifies ({ZkAccessGateInvalidProof}). Emits {ZkAccessGranted}.
     */
    function access(AccessRequest calldata request, uint256[8] calldata proof) external onlyMember {
        uint256[6] memory input = _check(request, 0);
        if (!_verifier.verifyProof(proof, input)) revert ZkAccessGateInvalidProof();
        _grant(request);
    }

    /**
     * @inheritdoc IZkAccessGate
     * @dev Requirements: as {access} for every request; `requests` and `proofs` are nonempty
     * and of equal length ({ZkAccessGateInvalidBatch}); no nullifier twice. A single invalid
     * proof rejects the whole batch ({ZkAccessGateInvalidProof}). Emits one
     * {ZkAccessGranted} per request.
     */
    function accessBatch(AccessRequest[] calldata requests, uint256[8][] calldata proofs) external onlyMember {
        uint256 k = requests.length;
        if (k == 0 || k != proofs.length) revert ZkAccessGateInvalidBatch();
        uint256[6][] memory inputs = new uint256[6][](k);
        uint256 lastRoot = 0;
        for (uint256 i = 0; i < k; ++i) {
            inputs[i] = _check(requests[i], lastRoot);
            lastRoot = requests[i].root;
            // marks it now: a duplicate later in the batch is caught by _check
            _nullifiers[requests[i].nullifierHash] = true;
        }
        if (!_verifier.verifyBatch(proofs, inputs)) revert ZkAccessGateInvalidProof();
        for (uint256 i = 0; i < k; ++i) {
            AccessRequest calldata r = requests[i];
            emit ZkAccessGranted(r.recordId, r.nullifierHash, r.category, r.signal, r.root, msg.sender);
        }
    }

    /// @inheritdoc IZkAccessGate
    function publicInputs(AccessRequest calldata request) external view returns (uint256[6] memory) {
        return _inputs(request, _policies[request.category]);
    }

    /// @inheritdoc IZkAccessGate
    function categoryPolicy(bytes32 category) external view returns (uint256) {
        return _policies[category];
    }

    /// @inheritdoc IZkAccessGate
    function nullifierUsed(uint256 nullifierHash) external view returns (bool) {
        return _nullifiers[nullifierHash];
    }

    /// @inheritdoc IZkAccessGate
    function credentialRegistry() external view returns (address) {
        return address(_registry);
    }

    /// @inheritdoc IZkAccessGate
    function verifier() external view returns (address) {
        return address(_verifier);
    }

    /// @inheritdoc IZkAccessGate
    function maxProofAge() external view returns (uint256) {
        return _maxProofAge;
    }

    /// @inheritdoc IZkAccessGate
    function maxClockSkew() external view returns (uint256) {
        return _maxClockSkew;
    }

    /// @dev All checks but the proof; returns the public inputs. `knownRoot` (nonzero) was
    /// already found valid in this call, so the registry is not asked again.
    function _check(AccessRequest calldata request, uint256 knownRoot) private view returns (uint256[6] memory) {
        uint256 allowedRoles = _policies[request.category];
        if (allowedRoles == 0) revert ZkAccessGateNoPolicy(request.category);
        uint256 t = request.currentTime;
        if (t < block.timestamp && block.timestamp - t > _maxProofAge) {
            revert ZkAccessGateStaleProof(t, block.timestamp);
        }
        if (t > block.timestamp && t - block.timestamp > _maxClockSkew) {
            revert ZkAccessGateFutureProof(t, block.timestamp);
        }
        if (_nullifiers[request.nullifierHash]) revert ZkAccessGateNullifierUsed(request.nullifierHash);
        if (request.root != knownRoot || knownRoot == 0) {
            if (!_registry.isValidRoot(request.root)) revert ZkAccessGateUnknownRoot(request.root);
        }
        return _inputs(request, allowedRoles);
    }

    /// @dev Stores the nullifier and emits the audit event of a verified single access.
    function _grant(AccessRequest calldata request) private {
        _nullifiers[request.nullifierHash] = true;
        emit ZkAccessGranted(
            request.recordId, request.nullifierHash, request.category, request.signal, request.root, msg.sender
        );
    }

    function _inputs(AccessRequest calldata request, uint256 allowedRoles) private pure returns (uint256[6] memory) {
        bytes32 signal = request.signal;
        return [
            request.root,
            allowedRoles,
            request.currentTime,
            uint256(keccak256(abi.encodePacked(request.recordId, signal))) >> 8,
            request.nullifierHash,
            uint256(keccak256(abi.encodePacked(signal))) >> 8
        ];
    }
}
