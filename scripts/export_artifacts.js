#!/usr/bin/env node
// SPDX-License-Identifier: GPL-3.0-or-later
//
// Copies the ABI and creation bytecode of the deployable contracts from Hardhat's build
// output into node/chain/artifacts/<ContractName>.json, the files the Python node ships.
//
// Usage: npx hardhat compile && node scripts/export_artifacts.js [artifactsDir] [outDir]
// (or `npm run compile`). Output is deterministic: re-running gives byte-identical files.

const fs = require("fs");
const path = require("path");

const ROOT = path.resolve(__dirname, "..");

const CONTRACTS = [
  ["contracts/Consortium.sol", "Consortium"],
  ["contracts/RecordRegistry.sol", "RecordRegistry"],
  ["contracts/ConsentRegistry.sol", "ConsentRegistry"],
  ["contracts/AccessLog.sol", "AccessLog"],
  ["contracts/mocks/ERC1271WalletMock.sol", "ERC1271WalletMock"],
  ["contracts/mocks/CallTargetMock.sol", "CallTargetMock"],
  // patients' identity wallets with guardian recovery (clones made by the factory)
  ["contracts/wallets/RecoverableWallet.sol", "RecoverableWallet"],
  ["contracts/wallets/RecoverableWalletFactory.sol", "RecoverableWalletFactory"],
  // zero-knowledge access: PoseidonT3 is an external library linked into CredentialRegistry
  ["contracts/zk/PoseidonT3.sol", "PoseidonT3"],
  ["contracts/zk/CredentialRegistry.sol", "CredentialRegistry"],
  ["contracts/zk/ZkAccessGate.sol", "ZkAccessGate"],
  ["contracts/verifiers/ClinicianAccessVerifier.sol", "ClinicianAccessVerifier"],
  ["contracts/verifiers/AgeAtLeastVerifier.sol", "AgeAtLeastVerifier"],
];

function main() {
  const artifactsDir = path.resolve(process.argv[2] || path.join(ROOT, "artifacts"));
  const outDir = path.resolve(process.argv[3] || path.join(ROOT, "node", "chain", "artifacts"));
  fs.mkdirSync(outDir, { recursive: true });
  for (const [sourceName, contractName] of CONTRACTS) {
    const file = path.join(artifactsDir, sourceName, `${contractName}.json`);
    if (!fs.existsSync(file)) {
      console.error(`missing ${file}: run \`npx hardhat compile\` first`);
      process.exit(1);
    }
    const built = JSON.parse(fs.readFileSync(file, "utf8"));
    const exported = {
      contractName: built.contractName,
      abi: built.abi,
      bytecode: built.bytecode,
      sourceName: built.sourceName,
    };
    // Only contracts that call external libraries carry placeholders to link at deployment.
    if (Object.keys(built.linkReferences || {}).length > 0) {
      exported.linkReferences = built.linkReferences;
    }
    const target = path.join(outDir, `${contractName}.json`);
    fs.writeFileSync(target, JSON.stringify(exported, null, 2) + "\n");
    console.log(`wrote ${path.relative(process.cwd(), target)}`);
  }
}

main();
