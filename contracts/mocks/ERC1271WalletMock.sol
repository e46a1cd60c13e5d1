// SPDX-License-Identifier: GPL-3.0-or-later
pragma solidity ^0.8.24;

import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";
import {IERC1271} from "@openzeppelin/contracts/interfaces/IERC1271.sol";
import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";

/**
 * @title ERC1271WalletMock
 * @notice TESTS ONLY. A contract wallet that accepts a hash signed by its owner (ERC-1271).
 */
contract ERC1271WalletMock is Ownable, IERC1271 {
    /**
     * @dev Requirements: `initialOwner` is not zero ({OwnableInvalidOwner}).
     * Emits {OwnershipTransferred}.
     */
    constructor(address initialOwner) Ownable(initialOwner) {}

    /**
     * @notice Returns the ERC-1271 magic value when `signature` is the owner's ECDSA
     * signature of `hash`, `0xffffffff` otherwise.
     * @dev Requirements: none (never reverts). Emits nothing.
     */
    function isValidSignature(bytes32 hash, bytes calldata signature) external view returns (bytes4) {
        (address recovered, ECDSA.RecoverError err,) = ECDSA.tryRecoverCalldata(hash, signature);
        if (err == ECDSA.RecoverError.NoError && recovered == owner()) {
            return IERC1271.isValidSignature.selector;
        }
        return 0xffffffff;
    }
}
