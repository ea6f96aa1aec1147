#!/usr/bin/env bash
# Install what the tests need (system packages and .venv) and run the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --test
exec .venv/bin/python -m pytest "$@"
