// SPDX-License-Identifier: GPL-3.0-or-later
//
// Hardhat 2 configuration for the emr-node contracts.
//
// The compiler is the npm `solc` package (soljson.js, WASM): nothing here downloads a
// compiler binary, so `npm ci && npx hardhat compile` works offline.
//
// EMR_HARDHAT_ARTIFACTS / EMR_HARDHAT_CACHE redirect Hardhat's build output (used by
// tests/contracts/test_artifacts.py to recompile without touching the working tree).

const path = require("path");
const { subtask } = require("hardhat/config");
const { TASK_COMPILE_SOLIDITY_GET_SOLC_BUILD } = require("hardhat/builtin-tasks/task-names");

const SOLC_VERSION = "0.8.30";

subtask(TASK_COMPILE_SOLIDITY_GET_SOLC_BUILD, async (args, hre, runSuper) => {
  const installed = require("solc/package.json").version;
  if (args.solcVersion !== installed) {
    return runSuper(args);
  }
  const solc = require("solc");
  // "0.8.30+commit.73712a01.Emscripten.clang" -> "0.8.30+commit.73712a01"
  const longVersion = solc.version().replace(/\.Emscripten\.clang$/, "");
  return {
    compilerPath: require.resolve("solc/soljson.js"),
    isSolcJs: true,
    version: args.solcVersion,
    longVersion,
  };
});

// The ZK hot paths get the optimizer tuned for runtime gas (runs = 1,000,000): at runs = 200
// solc's constant optimizer rebuilds large constants (field moduli, Poseidon round constants)
// with several opcodes to save bytecode. PoseidonT3 is generated (zk/export/poseidon_solidity.py)
// and its creation needs ~3.93M gas at these settings (docs/gas.md).
const RUNTIME_GAS = {
  version: SOLC_VERSION,
  settings: {
    optimizer: { enabled: true, runs: 1000000 },
    evmVersion: "cancun",
  },
};

// EMR_CHAIN_QBFT=1 (scripts/chain.sh): mimic a consortium's QBFT chain (Besu genesis from
// `emr-node consortium genesis`): zero base fee and gas price, no automine, one block every
// EMR_CHAIN_BLOCK_PERIOD seconds (blockperiodseconds; default 1).
const QBFT_LIKE = process.env.EMR_CHAIN_QBFT === "1";
const BLOCK_PERIOD_MS = Math.round(Number(process.env.EMR_CHAIN_BLOCK_PERIOD || "1") * 1000);
const QBFT_SETTINGS = QBFT_LIKE
  ? {
      initialBaseFeePerGas: 0,
      gasPrice: 0,
      mining: { auto: false, interval: BLOCK_PERIOD_MS },
    }
  : {};

/** @type import('hardhat/config').HardhatUserConfig */
module.exports = {
  solidity: {
    compilers: [
      {
        version: SOLC_VERSION,
        settings: {
          optimizer: { enabled: true, runs: 200 },
          evmVersion: "cancun",
        },
      },
    ],
    overrides: {
      "contracts/zk/CredentialRegistry.sol": RUNTIME_GAS,
      "contracts/zk/ZkAccessGate.sol": RUNTIME_GAS,
      "contracts/verifiers/ClinicianAccessVerifier.sol": RUNTIME_GAS,
      "contracts/verifiers/AgeAtLeastVerifier.sol": RUNTIME_GAS,
      "contracts/zk/PoseidonT3.sol": RUNTIME_GAS,
    },
  },
  paths: {
    sources: "contracts",
    tests: "tests/contracts",
    artifacts: process.env.EMR_HARDHAT_ARTIFACTS
      ? path.resolve(process.env.EMR_HARDHAT_ARTIFACTS)
      : "artifacts",
    cache: process.env.EMR_HARDHAT_CACHE ? path.resolve(process.env.EMR_HARDHAT_CACHE) : "cache",
  },
  networks: {
    hardhat: {
      chainId: 31337,
      accounts: { mnemonic: "test test test test test test test test test test test junk" },
      ...QBFT_SETTINGS,
    },
    localhost: {
      url: "http://127.0.0.1:8545",
    },
  },
};
