#!/usr/bin/env bash
# Set up (first time) and start a node on the embedded default: no services to install.
# Arguments go to `emr-node run` (e.g. --port 8800 --data-dir ./data).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/emr-node run "$@"
