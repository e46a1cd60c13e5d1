#!/usr/bin/env bash
# Set up (first time) and run every test: lint, contracts, storage, keys, node end to end,
# in embedded and production mode. MariaDB and Redis are started if they are not running;
# the tests start their own IPFS daemons and hardhat node.
# Arguments go to pytest (e.g. -k consent, or -m 'not integration' at the desk).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --dev
bash scripts/services.sh start
bash scripts/softhsm.sh install  # tests make their own tokens
bash scripts/bench_tools.sh      # wrk (Debian): the benchmark script's end-to-end test drives it
bash scripts/ops_tools.sh        # promtool (Debian prometheus): the alert rules' tests
bash scripts/browser.sh install   # Chromium (Debian) for the portal and explorer page tests
.venv/bin/ruff check .
exec .venv/bin/python -m pytest "$@"
