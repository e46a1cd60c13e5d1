"""Exports of the toolkit to other ecosystems (Solidity verifier contracts)."""
