"""The consortium's chain kit: a Hyperledger Besu QBFT network for the member hospitals
(genesis, per-hospital node configuration, start-up steps). Besu is not run here."""
