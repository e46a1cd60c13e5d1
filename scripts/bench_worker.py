"""In-process cost of the worker role's chain work: ``python scripts/bench_worker.py``.

On a fresh embedded chain (temporary directory), times ``--rounds`` times each:
- ``anchor_batch`` of ``--records`` records (the anchorer),
- ``record_accesses`` of ``--accesses`` entries (the access-log flusher),
then fills the chain up to ``--events`` audit events and times one ``sync_mirror`` over
all of them into a fresh SQLite mirror (the audit mirror), and ``audit_events`` alone.
Prints wall and CPU milliseconds (CPU is what the worker takes from the API processes).
"""

from __future__ import annotations

import argparse
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from eth_account import Account

from node.audit.mirror import sync_mirror
from node.chain.client import Web3ChainClient
from node.chain.embedded import EmbeddedChain
from node.chain.external import ensure_deployment
from node.chain.merkle import MerkleTree, record_leaf
from node.chain.models import AccessEntry
from node.chain.record_ids import new_record_id
from node.consent.typed_data import AccessBasis
from storage.backends.sqlite_mirror import SQLiteAuditMirror


def _timed(run: Callable[[], object]) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    run()
    return (time.perf_counter() - wall) * 1000, (time.process_time() - cpu) * 1000


def _report(name: str, samples: list[tuple[float, float]]) -> None:
    wall = statistics.median(s[0] for s in samples)
    cpu = statistics.median(s[1] for s in samples)
    print(f"{name:<40} wall {wall:8.1f} ms   cpu {cpu:8.1f} ms   (median of {len(samples)})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=1000)
    parser.add_argument("--accesses", type=int, default=1000)
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        account = Account.create()
        embedded = EmbeddedChain(
            directory / "chain.sqlite", funded_accounts={account.address: 10**24}
        )
        deployment = ensure_deployment(
            embedded.web3, directory / "deployment.json", account, [(account.address, "Bench")]
        )
        chain = Web3ChainClient(embedded.web3, deployment, account)
        member = chain.member_id(chain.hospital)
        patients = [Account.create().address for _ in range(max(args.records, 1))]
        events = 0

        def anchor() -> None:
            ids = [new_record_id(member) for _ in range(args.records)]
            leaves = [
                record_leaf(i, p, secrets.token_bytes(32), None)
                for i, p in zip(ids, patients, strict=True)
            ]
            chain.anchor_batch(MerkleTree(leaves).root, ids, patients[: args.records])

        def accesses() -> None:
            entries = [
                AccessEntry(
                    patients[i % len(patients)],
                    secrets.token_bytes(32),
                    account.address,
                    i % 2 == 0,
                    AccessBasis.RECORD_CONSENT,
                )
                for i in range(args.accesses)
            ]
            chain.record_accesses(entries)

        samples = []
        for _ in range(args.rounds):
            samples.append(_timed(anchor))
            events += args.records + 1  # RecordAnchored each, BatchAnchored once
        _report(f"anchor_batch ({args.records} records)", samples)

        samples = []
        for _ in range(args.rounds):
            samples.append(_timed(accesses))
            events += args.accesses
        _report(f"record_accesses ({args.accesses} entries)", samples)

        while events < args.events:
            accesses()
            events += args.accesses

        found: list[int] = []
        sample = _timed(lambda: found.append(len(chain.audit_events())))
        _report(f"audit_events ({found[0]} events)", [sample])

        mirror = SQLiteAuditMirror(directory / "mirror.sqlite")
        blocks: list[int] = []

        def sync() -> None:
            while advanced := sync_mirror(chain=chain, mirror=mirror):
                blocks.append(advanced)

        sample = _timed(sync)
        _report(f"sync_mirror ({found[0]} events, {sum(blocks)} blocks)", [sample])
        chain.close()
        embedded.close()


if __name__ == "__main__":
    main()
