#!/usr/bin/env bash
# Start the live analysis server (arguments go to server.py), installing emostream into .venv first
# when it is not there yet or pyproject.toml / scripts/setup.sh changed since (a stamp records it).
# No weights on this machine? `bash scripts/serve.sh --demo` serves a random-weight demo model.
set -euo pipefail
cd "$(dirname "$0")/.."
want=$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -d' ' -f1)
if [[ ! -x .venv/bin/python || "$(cat .venv/.emostream-installed 2>/dev/null)" != "$want" ]]; then
    bash scripts/setup.sh
fi
exec .venv/bin/python server.py "$@"
