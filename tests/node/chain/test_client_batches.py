"""The batched calls' fixed gas limits cover large batches on a real chain."""

from __future__ import annotations

import secrets
from pathlib import Path

from eth_account import Account

from node.chain.client import MAX_ACCESS_BATCH, access_log_gas_limit, anchor_gas_limit
from node.chain.merkle import MerkleTree, record_leaf, verify_proof
from node.chain.models import AccessEntry
from node.chain.record_ids import new_record_id
from node.consent.typed_data import AccessBasis
from tests.node.conftest import make_settings


def test_large_anchor_and_access_batches_fit_their_gas_limits(tmp_path: Path) -> None:
    from node.wiring import build_node

    node = build_node(make_settings(tmp_path / "n"))
    try:
        chain = node.chain
        n = 1000
        member = chain.member_id(chain.hospital)
        ids = [new_record_id(member) for _ in range(n)]
        patients = [Account.create().address for _ in range(n)]
        hashes = [secrets.token_bytes(32) for _ in range(n)]
        leaves = [record_leaf(i, p, h, None) for i, p, h in zip(ids, patients, hashes, strict=True)]
        tree = MerkleTree(leaves)
        result = chain.anchor_batch(tree.root, ids, patients)
        receipt = chain._w3.eth.get_transaction_receipt(result.tx_hash)  # type: ignore[attr-defined]
        assert receipt["gasUsed"] < anchor_gas_limit(n)
        assert verify_proof(leaves[777], tree.proof(777), tree.root)
        assert chain.verify_record(
            result.batch_id, ids[777], patients[777], hashes[777], None, tree.proof(777)
        )

        entries = [
            AccessEntry(
                patients[i % n], ids[i % n], patients[0], i % 2 == 0, AccessBasis.RECORD_CONSENT
            )
            for i in range(500)
        ]
        tx = chain.record_accesses(entries)
        used = chain._w3.eth.get_transaction_receipt(tx.tx_hash)["gasUsed"]  # type: ignore[attr-defined]
        assert used < access_log_gas_limit(500)
        assert access_log_gas_limit(MAX_ACCESS_BATCH) < 30_000_000
        assert anchor_gas_limit(5000) < 30_000_000  # the largest configurable anchor batch
    finally:
        node.stop()
