// SPDX-License-Identifier: GPL-3.0-or-later
pragma solidity ^0.8.24;

/**
 * @title IRecoverableWalletFactory
 * @dev Makes RecoverableWallets as EIP-1167 clones of one implementation, at CREATE2
 * addresses derived from every initial setting, so a wallet's address commits to its owner,
 * guardians, threshold and delay: nobody can take the address with other settings first.
 */
interface IRecoverableWalletFactory {
    /// @dev A wallet was created at `wallet` for `owner`, paid for by `creator`.
    event WalletCreated(address indexed wallet, address indexed owner, address indexed creator);

    /**
     * @notice Creates and initializes a wallet; returns its address.
     * @dev Requirements: the settings are valid (the wallet's own errors, e.g.
     * {IRecoverableWallet-RecoverableWalletInvalidThreshold}) and no wallet exists yet with
     * the same settings and `salt` ({Errors-FailedDeployment}).
     * Emits {WalletCreated} and the wallet's {IRecoverableWallet-WalletInitialized}.
     */
    function createWallet(
        address owner,
        address[] calldata guardians,
        uint256 threshold,
        uint256 delay,
        bytes32 salt
    ) external returns (address wallet);

    /// @notice The address `createWallet` gives for these arguments (created or not).
    function predictWallet(
        address owner,
        address[] calldata guardians,
        uint256 threshold,
        uint256 delay,
        bytes32 salt
    ) external view returns (address);

    /// @notice The RecoverableWallet every wallet of this factory delegates to.
    function implementation() external view returns (address);
}
