"""Micro-benchmark of the embedded backends: ``python scripts/bench_storage.py [--n 1000]``.

Prints ops/s for LocalBlobStore.put_many (4 KiB blobs), SQLiteRecordIndex.add_records and
envelope seal_many (4 KiB records), each as one batch of ``n`` in a temporary directory.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hsm.envelope import seal_many
from hsm.software import SoftwareKeyStore
from storage.backends.local import LocalBlobStore
from storage.backends.sqlite import SQLiteRecordIndex
from storage.cid import cid_for
from storage.models import RecordRow


def _report(name: str, n: int, run: Callable[[], object]) -> None:
    start = time.perf_counter()
    run()
    elapsed = time.perf_counter() - start
    print(f"{name:<34} {n:>6} in {elapsed * 1000:8.1f} ms  {n / elapsed:>10,.0f} ops/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--dir", type=Path, default=None, help="where to write (default: tmp)")
    args = parser.parse_args()
    n = args.n

    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        root = Path(tmp)
        blobs = [os.urandom(args.size) for _ in range(n)]
        store = LocalBlobStore(root / "blobs")
        _report(f"put_many {n} x {args.size} B", n, lambda: store.put_many(blobs))

        rows = [
            RecordRow(
                record_id=os.urandom(32),
                patient="0x" + "ab" * 20,
                category="lab",
                content_type="application/fhir+json",
                cid=cid_for(blob),
                content_hash=os.urandom(32),
                size=len(blob),
                wrapped_key=os.urandom(40),
                kek_version=1,
                creator="0x" + "11" * 20,
                created_at=1_700_000_000 + i,
            )
            for i, blob in enumerate(blobs)
        ]
        index = SQLiteRecordIndex(root / "index.sqlite3")
        _report(f"add_records {n} rows", n, lambda: index.add_records(rows))
        index.close()

        keystore = SoftwareKeyStore.create(root / "keystore.json", "bench passphrase")
        items = [(blob, row.record_id) for blob, row in zip(blobs, rows, strict=True)]
        _report(f"seal_many {n} x {args.size} B", n, lambda: seal_many(items, keystore))


if __name__ == "__main__":
    main()
