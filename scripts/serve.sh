#!/usr/bin/env bash
# Install emostream into .venv and start the live analysis server (arguments go to server.py).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python server.py "$@"
