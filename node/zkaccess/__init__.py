"""Anonymous clinician access: zero-knowledge proofs instead of a wallet identity."""
