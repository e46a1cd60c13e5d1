"""Replay (or run) the consortium chaos run outside pytest.

    .venv/bin/python scripts/chaos.py --seed 1234 --duration 60 [--hospitals 3] [--keep]

Starts the hospitals of tests/consortium/harness.py in a temporary directory (MariaDB and
Redis from scripts/services.sh, one hardhat node, one js-ipfs daemon per hospital), runs the
workload under the seed's fault plan, checks the invariants and prints the report; exit code
1 if an invariant failed. The logic lives in tests/consortium/chaos.py."""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.consortium.chaos import (
    HarnessTarget,
    chaos_seconds,
    chaos_seed,
    run_chaos,
)
from tests.consortium.harness import Consortium


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=lambda s: int(s, 0), default=None)
    parser.add_argument("--duration", type=float, default=None, help="seconds of faults")
    parser.add_argument("--hospitals", type=int, default=3)
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args()
    seed = chaos_seed() if args.seed is None else args.seed
    seconds = chaos_seconds() if args.duration is None else args.duration

    def log(line: str) -> None:
        print(f"{time.strftime('%H:%M:%S')} {line}", flush=True)

    log(f"EMR_CHAOS_SEED={seed} EMR_CHAOS_SECONDS={seconds:g}")
    home = Path(tempfile.mkdtemp(prefix="emr-chaos-"))
    t = time.monotonic()
    consortium = Consortium.start(args.hospitals, home, hsm=True)
    result_ok: bool | None = None
    log(f"{args.hospitals} hospitals up in {time.monotonic() - t:.1f}s ({home})")
    try:
        result = run_chaos(HarnessTarget(consortium, log), seed=seed, seconds=seconds, log=log)
        result_ok = result.ok
        print(result.describe(), flush=True)
        return 0 if result.ok else 1
    finally:
        consortium.stop()
        if result_ok is False or args.keep:
            print(f"logs kept in {home}")
        else:
            import shutil

            shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
