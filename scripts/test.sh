#!/usr/bin/env bash
# Set up (first time) and run every test: lint, contracts, storage, keys, node end to end.
# Arguments go to pytest (e.g. -k consent, or -m 'not integration' at the desk).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --dev
.venv/bin/ruff check .
exec .venv/bin/python -m pytest "$@"
