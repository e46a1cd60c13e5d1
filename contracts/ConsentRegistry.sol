// SPDX-License-Identifier: GPL-3.0-or-later
pragma solidity ^0.8.24;

import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {SignatureChecker} from "@openzeppelin/contracts/utils/cryptography/SignatureChecker.sol";
import {Nonces} from "@openzeppelin/contracts/utils/Nonces.sol";
import {IConsortium} from "./interfaces/IConsortium.sol";
import {IConsentRegistry} from "./interfaces/IConsentRegistry.sol";
import {ConsortiumGated} from "./base/ConsortiumGated.sol";

/**
 * @title ConsentRegistry
 * @notice Patients grant and revoke read access with EIP-712 signatures (EOA or ERC-1271
 * wallet) that any account may relay; member hospitals may open time-boxed break-glass access.
 * Patients may also consent to a class of readers (hospital, roles) who read anonymously
 * through the ZkAccessGate.
 * @dev One sequential nonce per patient ({Nonces}) is shared by grants and revokes of both
 * kinds.
 */
contract ConsentRegistry is IConsentRegistry, ConsortiumGated, EIP712, Nonces {
    uint8 private constant SCOPE_RECORD = 0;
    uint8 private constant SCOPE_CATEGORY = 1;
    uint8 private constant SCOPE_ALL = 2;

    uint8 private constant BASIS_NONE = 0;
    uint8 private constant BASIS_RECORD = 1;
    uint8 private constant BASIS_CATEGORY = 2;
    uint8 private constant BASIS_ALL = 3;
    uint8 private constant BASIS_BREAK_GLASS = 4;

    /// @notice Longest break-glass window.
    uint64 public constant MAX_BREAK_GLASS_DURATION = 24 hours;

    /// @inheritdoc IConsentRegistry
    bytes32 public constant GRANT_TYPEHASH = keccak256(
        "Grant(address patient,address grantee,uint8 scopeKind,bytes32 scope,uint64 expiresAt,uint256 nonce,uint256 deadline)"
    );

    /// @inheritdoc IConsentRegistry
    bytes32 public constant REVOKE_TYPEHASH = keccak256(
        "Revoke(address patient,address grantee,uint8 scopeKind,bytes32 scope,uint256 nonce,uint256 deadline)"
    );

    /// @inheritdoc IConsentRegistry
    bytes32 public constant GRANT_CLASS_TYPEHASH = keccak256(
        "GrantClass(address patient,uint32 hospital,uint16 roles,uint8 scopeKind,bytes32 scope,uint64 expiresAt,uint256 nonce,uint256 deadline)"
    );

    /// @inheritdoc IConsentRegistry
    bytes32 public constant REVOKE_CLASS_TYPEHASH = keccak256(
        "RevokeClass(address patient,uint32 hospital,uint16 roles,uint8 scopeKind,bytes32 scope,uint256 nonce,uint256 deadline)"
    );

    // patient => keccak256(hospital, roles, scopeKind, scope) => expiresAt
    mapping(address => mapping(bytes32 => uint64)) private _classConsents;
    // patient => grantee => scopeKind => scope => expiresAt
    mapping(address => mapping(address => mapping(uint8 => mapping(bytes32 => uint64)))) private _consents;
    // patient => clinician => recordId (0 = all) => expiresAt
    mapping(address => mapping(address => mapping(bytes32 => uint64))) private _breakGlass;

    /**
     * @dev Requirements: `consortium_` is not the zero address ({ConsortiumGatedInvalidConsortium}).
     */
    constructor(IConsortium consortium_) ConsortiumGated(consortium_) EIP712("EMR Consent", "1") {}

    /**
     * @inheritdoc IConsentRegistry
     * @dev Anyone may relay. Overwrites an existing consent for the same (patient, grantee,
     * scope), so a grant can also shorten or extend one.
     *
     * Requirements:
     * - `block.timestamp <= g.deadline` ({ConsentRegistryExpiredDeadline});
     * - the scope has the shape of its kind ({ConsentRegistryInvalidScope});
     * - `g.expiresAt > block.timestamp` ({ConsentRegistryInvalidExpiry});
     * - `g.nonce` is the patient's current nonce ({InvalidAccountNonce});
     * - `signature` is valid for `g.patient` over the EIP-712 digest of `g`
     *   ({ConsentRegistryInvalidSignature}).
     *
     * Emits {ConsentGranted}.
     */
    function grantWithSig(Grant calldata g, bytes calldata signature) external {
        if (block.timestamp > g.deadline) revert ConsentRegistryExpiredDeadline(g.deadline);
        _checkScope(g.scopeKind, g.scope);
        if (g.expiresAt <= block.timestamp) revert ConsentRegistryInvalidExpiry();
        _useCheckedNonce(g.patient, g.nonce);
        bytes32 structHash = keccak256(
            abi.encode(GRANT_TYPEHASH, g.patient, g.grantee, g.scopeKind, g.scope, g.expiresAt, g.nonce, g.deadline)
        );
        _checkSignature(g.patient, structHash, signature);

        _consents[g.patient][g.grantee][g.scopeKind][g.scope] = g.expiresAt;
        emit ConsentGranted(g.patient, g.scope, g.grantee, g.scopeKind, g.expiresAt);
    }

    /**
     * @inheritdoc IConsentRegistry
     * @dev Anyone may relay. Takes effect in the same block. Revoking a consent that does not
     * exist still uses the nonce and emits the event.
     *
     * Requirements:
     * - `block.timestamp <= r.deadline` ({ConsentRegistryExpiredDeadline});
     * - the scope has the shape of its kind ({ConsentRegistryInvalidScope});
     * - `r.nonce` is the patient's current nonce ({InvalidAccountNonce});
     * - `signature` is valid for `r.patient` over the EIP-712 digest of `r`
     *   ({ConsentRegistryInvalidSignature}).
     *
     * Emits {ConsentRevoked}.
     */
    function revokeWithSig(Revoke calldata r, bytes calldata signature) external {
        if (block.timestamp > r.deadline) revert ConsentRegistryExpiredDeadline(r.deadline);
        _checkScope(r.scopeKind, r.scope);
        _useCheckedNonce(r.patient, r.nonce);
        bytes32 structHash =
            keccak256(abi.encode(REVOKE_TYPEHASH, r.patient, r.grantee, r.scopeKind, r.scope, r.nonce, r.deadline));
        _checkSignature(r.patient, structHash, signature);

        delete _consents[r.patient][r.grantee][r.scopeKind][r.scope];
        emit ConsentRevoked(r.patient, r.scope, r.grantee, r.scopeKind);
    }

    /**
     * @inheritdoc IConsentRegistry
     * @dev Anyone may relay. Overwrites an existing consent for the same (patient, class,
     * scope). The class is exactly (hospital, roles): a consent for roles {physician, nurse}
     * is a different class than one for {physician}.
     *
     * Requirements:
     * - `block.timestamp <= g.deadline` ({ConsentRegistryExpiredDeadline});
     * - `g.roles != 0` ({ConsentRegistryInvalidClass});
     * - the scope has the shape of its kind ({ConsentRegistryInvalidScope});
     * - `g.expiresAt > block.timestamp` ({ConsentRegistryInvalidExpiry});
     * - `g.nonce` is the patient's current nonce ({InvalidAccountNonce});
     * - `signature` is valid for `g.patient` over the EIP-712 digest of `g`
     *   ({ConsentRegistryInvalidSignature}).
     *
     * Emits {ClassConsentGranted}.
     */
    function grantClassWithSig(GrantClass calldata g, bytes calldata signature) external {
        if (block.timestamp > g.deadline) revert ConsentRegistryExpiredDeadline(g.deadline);
        if (g.roles == 0) revert ConsentRegistryInvalidClass();
        _checkScope(g.scopeKind, g.scope);
        if (g.expiresAt <= block.timestamp) revert ConsentRegistryInvalidExpiry();
        _useCheckedNonce(g.patient, g.nonce);
        bytes32 structHash = keccak256(
            abi.encode(
                GRANT_CLASS_TYPEHASH,
                g.patient,
                g.hospital,
                g.roles,
                g.scopeKind,
                g.scope,
                g.expiresAt,
                g.nonce,
                g.deadline
            )
        );
        _checkSignature(g.patient, structHash, signature);

        _classConsents[g.patient][_classKey(g.hospital, g.roles, g.scopeKind, g.scope)] = g.expiresAt;
        emit ClassConsentGranted(g.patient, g.scope, g.hospital, g.roles, g.scopeKind, g.expiresAt);
    }

    /**
     * @inheritdoc IConsentRegistry
     * @dev Anyone may relay. Takes effect in the same block: an anonymous read relayed after it
     * (in the same block or later) fails. Revoking a consent that does not exist still uses
     * the nonce and emits the event.
     *
     * Requirements:
     * - `block.timestamp <= r.deadline` ({ConsentRegistryExpiredDeadline});
     * - `r.roles != 0` ({ConsentRegistryInvalidClass});
     * - the scope has the shape of its kind ({ConsentRegistryInvalidScope});
     * - `r.nonce` is the patient's current nonce ({InvalidAccountNonce});
     * - `signature` is valid for `r.patient` over the EIP-712 digest of `r`
     *   ({ConsentRegistryInvalidSignature}).
     *
     * Emits {ClassConsentRevoked}.
     */
    function revokeClassWithSig(RevokeClass calldata r, bytes calldata signature) external {
        if (block.timestamp > r.deadline) revert ConsentRegistryExpiredDeadline(r.deadline);
        if (r.roles == 0) revert ConsentRegistryInvalidClass();
        _checkScope(r.scopeKind, r.scope);
        _useCheckedNonce(r.patient, r.nonce);
        bytes32 structHash = keccak256(
            abi.encode(
                REVOKE_CLASS_TYPEHASH, r.patient, r.hospital, r.roles, r.scopeKind, r.scope, r.nonce, r.deadline
            )
        );
        _checkSignature(r.patient, structHash, signature);

        delete _classConsents[r.patient][_classKey(r.hospital, r.roles, r.scopeKind, r.scope)];
        emit ClassConsentRevoked(r.patient, r.scope, r.hospital, r.roles, r.scopeKind);
    }

    /**
     * @inheritdoc IConsentRegistry
     * @dev Requirements: none. Emits nothing.
     */
    function classConsentExpiry(address patient, uint32 hospital, uint16 roles, uint8 scopeKind, bytes32 scope)
        external
        view
        returns (uint64)
    {
        return _classConsents[patient][_classKey(hospital, roles, scopeKind, scope)];
    }

    /**
     * @inheritdoc IConsentRegistry
     * @dev Replaces any break-glass window for the same (patient, clinician, recordId). The
     * reason text stays off-chain; only its keccak256 is recorded.
     *
     * Requirements:
     * - the caller is a member hospital ({ConsortiumGatedNotMember});
     * - `patient` and `clinician` are not zero, `0 < duration <= 24 hours` and
     *   `reasonHash != 0` ({ConsentRegistryInvalidBreakGlass}).
     *
     * Emits {BreakGlassOpened}.
     */
    function openBreakGlass(address patient, address clinician, bytes32 recordId, uint64 duration, bytes32 reasonHash)
        external
        onlyMember
    {
        if (
            patient == address(0) || clinician == address(0) || duration == 0
                || duration > MAX_BREAK_GLASS_DURATION || reasonHash == bytes32(0)
        ) revert ConsentRegistryInvalidBreakGlass();
        uint64 expiresAt = uint64(block.timestamp) + duration;
        _breakGlass[patient][clinician][recordId] = expiresAt;
        emit BreakGlassOpened(patient, recordId, clinician, msg.sender, expiresAt, reasonHash);
    }

    /**
     * @inheritdoc IConsentRegistry
     * @dev Checks, in order, a record consent (if `recordId != 0`), a category consent (if
     * `category != 0`), an all-records consent, then break-glass for `recordId` or for all
     * records; returns the first that is unexpired.
     *
     * Requirements: none. Emits nothing.
     */
    function accessBasis(address patient, address grantee, bytes32 recordId, bytes32 category)
        external
        view
        returns (uint8)
    {
        mapping(uint8 => mapping(bytes32 => uint64)) storage consents = _consents[patient][grantee];
        if (recordId != bytes32(0) && _live(consents[SCOPE_RECORD][recordId])) return BASIS_RECORD;
        if (category != bytes32(0) && _live(consents[SCOPE_CATEGORY][category])) return BASIS_CATEGORY;
        if (_live(consents[SCOPE_ALL][bytes32(0)])) return BASIS_ALL;
        mapping(bytes32 => uint64) storage glass = _breakGlass[patient][grantee];
        if ((recordId != bytes32(0) && _live(glass[recordId])) || _live(glass[bytes32(0)])) return BASIS_BREAK_GLASS;
        return BASIS_NONE;
    }

    /**
     * @inheritdoc IConsentRegistry
     * @dev Requirements: none. Emits nothing.
     */
    function consentExpiry(address patient, address grantee, uint8 scopeKind, bytes32 scope)
        external
        view
        returns (uint64)
    {
        return _consents[patient][grantee][scopeKind][scope];
    }

    /**
     * @inheritdoc IConsentRegistry
     * @dev Requirements: none. Emits nothing.
     */
    function breakGlassExpiry(address patient, address clinician, bytes32 recordId) external view returns (uint64) {
        return _breakGlass[patient][clinician][recordId];
    }

    // ---------------------------------------------------------------- internal

    function _checkScope(uint8 scopeKind, bytes32 scope) private pure {
        if (scopeKind > SCOPE_ALL || (scopeKind == SCOPE_ALL) != (scope == bytes32(0))) {
            revert ConsentRegistryInvalidScope();
        }
    }

    function _checkSignature(address patient, bytes32 structHash, bytes calldata signature) private view {
        if (!SignatureChecker.isValidSignatureNowCalldata(patient, _hashTypedDataV4(structHash), signature)) {
            revert ConsentRegistryInvalidSignature();
        }
    }

    function _classKey(uint32 hospital, uint16 roles, uint8 scopeKind, bytes32 scope) private pure returns (bytes32 key) {
        assembly ("memory-safe") {
            // keccak256(abi.encodePacked(hospital, roles, scopeKind, scope)) without the copy
            let packed := or(shl(16, and(hospital, 0xffffffff)), and(roles, 0xffff))
            mstore(0, or(shl(8, packed), and(scopeKind, 0xff)))
            mstore(0x20, scope)
            key := keccak256(0x19, 0x27)
        }
    }

    function _live(uint64 expiresAt) private view returns (bool) {
        return block.timestamp < expiresAt;
    }
}
