// SPDX-License-Identifier: GPL-3.0-or-later
pragma solidity ^0.8.24;

import {Clones} from "@openzeppelin/contracts/proxy/Clones.sol";
import {IRecoverableWallet} from "../interfaces/IRecoverableWallet.sol";
import {IRecoverableWalletFactory} from "../interfaces/IRecoverableWalletFactory.sol";
import {RecoverableWallet} from "./RecoverableWallet.sol";

/**
 * @title RecoverableWalletFactory
 * @notice Creates patients' RecoverableWallets (EIP-1167 clones, CREATE2); anyone may call it.
 * @dev The implementation is deployed by the constructor and locked (never initialized).
 */
contract RecoverableWalletFactory is IRecoverableWalletFactory {
    /// @inheritdoc IRecoverableWalletFactory
    address public immutable implementation;

    constructor() {
        implementation = address(new RecoverableWallet());
    }

    /// @inheritdoc IRecoverableWalletFactory
    function createWallet(
        address owner,
        address[] calldata guardians,
        uint256 threshold,
        uint256 delay,
        bytes32 salt
    ) external returns (address wallet) {
        wallet = Clones.cloneDeterministic(implementation, _salt(owner, guardians, threshold, delay, salt));
        emit WalletCreated(wallet, owner, msg.sender);
        IRecoverableWallet(wallet).initialize(owner, guardians, threshold, delay);
    }

    /// @inheritdoc IRecoverableWalletFactory
    function predictWallet(
        address owner,
        address[] calldata guardians,
        uint256 threshold,
        uint256 delay,
        bytes32 salt
    ) external view returns (address) {
        return Clones.predictDeterministicAddress(implementation, _salt(owner, guardians, threshold, delay, salt));
    }

    function _salt(address owner, address[] calldata guardians, uint256 threshold, uint256 delay, bytes32 salt)
        private
        pure
        returns (bytes32)
    {
        return keccak256(abi.encode(owner, guardians, threshold, delay, salt));
    }
}
