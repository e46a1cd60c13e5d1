// SPDX-License-Identifier: GPL-3.0-or-later
pragma solidity ^0.8.24;

/**
 * @title IConsentRegistry
 * @dev Patient consents signed off-chain (EIP-712, EOA or ERC-1271 wallets) and relayed by any
 * account, plus break-glass access opened by member hospitals.
 *
 * Scope kinds: 0 Record (scope = record id), 1 Category (scope = keccak256 of the category name),
 * 2 All (scope = 0). Access bases: 0 None, 1 RecordConsent, 2 CategoryConsent, 3 AllConsent,
 * 4 BreakGlass. A consent or break-glass is valid while `block.timestamp < expiresAt`.
 *
 * Reader-class consents (for anonymous reads through the ZkAccessGate) name a class of
 * readers instead of an address: (hospital member id, 0 = any member hospital; roles, a
 * nonzero 16-bit mask over zk.credentials.ROLES). They share the EIP-712 domain and the
 * patient's nonce sequence with the address consents.
 */
interface IConsentRegistry {
    /// @dev EIP-712 `Grant(address patient,address grantee,uint8 scopeKind,bytes32 scope,uint64 expiresAt,uint256 nonce,uint256 deadline)`.
    struct Grant {
        address patient;
        address grantee;
        uint8 scopeKind;
        bytes32 scope;
        uint64 expiresAt;
        uint256 nonce;
        uint256 deadline;
    }

    /// @dev EIP-712 `Revoke(address patient,address grantee,uint8 scopeKind,bytes32 scope,uint256 nonce,uint256 deadline)`.
    struct Revoke {
        address patient;
        address grantee;
        uint8 scopeKind;
        bytes32 scope;
        uint256 nonce;
        uint256 deadline;
    }

    /// @dev EIP-712 `GrantClass(address patient,uint32 hospital,uint16 roles,uint8 scopeKind,bytes32 scope,uint64 expiresAt,uint256 nonce,uint256 deadline)`.
    struct GrantClass {
        address patient;
        uint32 hospital;
        uint16 roles;
        uint8 scopeKind;
        bytes32 scope;
        uint64 expiresAt;
        uint256 nonce;
        uint256 deadline;
    }

    /// @dev EIP-712 `RevokeClass(address patient,uint32 hospital,uint16 roles,uint8 scopeKind,bytes32 scope,uint256 nonce,uint256 deadline)`.
    struct RevokeClass {
        address patient;
        uint32 hospital;
        uint16 roles;
        uint8 scopeKind;
        bytes32 scope;
        uint256 nonce;
        uint256 deadline;
    }

    /// @dev The signed message's `deadline` has passed.
    error ConsentRegistryExpiredDeadline(uint256 deadline);
    /// @dev The signature is not the patient's (EOA) or the patient's wallet rejects it (ERC-1271).
    error ConsentRegistryInvalidSignature();
    /// @dev Unknown scope kind, zero scope for Record/Category, non-zero scope for All.
    error ConsentRegistryInvalidScope();
    /// @dev The consent's `expiresAt` is not in the future.
    error ConsentRegistryInvalidExpiry();
    /// @dev Zero patient or clinician, zero reason hash, or duration not in (0, 24 h].
    error ConsentRegistryInvalidBreakGlass();
    /// @dev A reader class with no role (`roles == 0`).
    error ConsentRegistryInvalidClass();

    /// @dev `patient` allowed `grantee` to read `scope` until `expiresAt`.
    event ConsentGranted(
        address indexed patient, bytes32 indexed scope, address indexed grantee, uint8 scopeKind, uint64 expiresAt
    );
    /// @dev `patient` withdrew `grantee`'s consent for `scope`.
    event ConsentRevoked(address indexed patient, bytes32 indexed scope, address indexed grantee, uint8 scopeKind);
    /// @dev `patient` allowed the readers of class (`hospital`, `roles`) to read `scope`
    /// anonymously until `expiresAt`.
    event ClassConsentGranted(
        address indexed patient,
        bytes32 indexed scope,
        uint32 indexed hospital,
        uint16 roles,
        uint8 scopeKind,
        uint64 expiresAt
    );
    /// @dev `patient` withdrew the class consent (`hospital`, `roles`) for `scope`.
    event ClassConsentRevoked(
        address indexed patient, bytes32 indexed scope, uint32 indexed hospital, uint16 roles, uint8 scopeKind
    );
    /// @dev Member `hospital` opened emergency access for `clinician` to `recordId` (0 = all records).
    event BreakGlassOpened(
        address indexed patient,
        bytes32 indexed recordId,
        address indexed clinician,
        address hospital,
        uint64 expiresAt,
        bytes32 reasonHash
    );

    /// @notice Records a consent signed by `g.patient`.
    function grantWithSig(Grant calldata g, bytes calldata signature) external;

    /// @notice Withdraws a consent; signed by `r.patient`.
    function revokeWithSig(Revoke calldata r, bytes calldata signature) external;

    /// @notice Records a reader-class consent signed by `g.patient`.
    function grantClassWithSig(GrantClass calldata g, bytes calldata signature) external;

    /// @notice Withdraws a reader-class consent; signed by `r.patient`.
    function revokeClassWithSig(RevokeClass calldata r, bytes calldata signature) external;

    /// @notice Stored expiry of a reader-class consent (0 if none or revoked; may be in the
    /// past). Live iff `block.timestamp < expiry`.
    function classConsentExpiry(address patient, uint32 hospital, uint16 roles, uint8 scopeKind, bytes32 scope)
        external
        view
        returns (uint64);

    /// @notice Opens emergency access for `duration` seconds.
    function openBreakGlass(address patient, address clinician, bytes32 recordId, uint64 duration, bytes32 reasonHash)
        external;

    /// @notice Why `grantee` may read `recordId` (in `category`) of `patient` now; 0 if it may not.
    function accessBasis(address patient, address grantee, bytes32 recordId, bytes32 category)
        external
        view
        returns (uint8);

    /// @notice Stored expiry of a consent (0 if none or revoked; may be in the past).
    function consentExpiry(address patient, address grantee, uint8 scopeKind, bytes32 scope)
        external
        view
        returns (uint64);

    /// @notice Stored expiry of a break-glass (0 if never opened; may be in the past).
    function breakGlassExpiry(address patient, address clinician, bytes32 recordId) external view returns (uint64);

    /// @notice EIP-712 type hash of {Grant}.
    // solhint-disable-next-line func-name-mixedcase
    function GRANT_TYPEHASH() external view returns (bytes32);

    /// @notice EIP-712 type hash of {Revoke}.
    // solhint-disable-next-line func-name-mixedcase
    function REVOKE_TYPEHASH() external view returns (bytes32);

    /// @notice EIP-712 type hash of {GrantClass}.
    // solhint-disable-next-line func-name-mixedcase
    function GRANT_CLASS_TYPEHASH() external view returns (bytes32);

    /// @notice EIP-712 type hash of {RevokeClass}.
    // solhint-disable-next-line func-name-mixedcase
    function REVOKE_CLASS_TYPEHASH() external view returns (bytes32);
}
