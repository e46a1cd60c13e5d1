"""Zero-knowledge toolkit: circom circuits, Groth16 (BN254) setup, proving, verification,
Solidity verifier export and a healthcare policy DSL."""
