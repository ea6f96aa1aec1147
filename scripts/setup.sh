#!/usr/bin/env bash
# Set up emostream on a fresh Debian/Ubuntu machine: system packages, then a virtualenv in .venv.
#   scripts/setup.sh          what the analyzer and server need
#   scripts/setup.sh --test   plus what the test suite needs (espeak-ng, ffmpeg, pytest, Ray, ...)
#   scripts/setup.sh --ray    plus Ray Serve for `emostream serve --ray`
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(libportaudio2)             # sounddevice's PortAudio, for `emostream listen`
if [[ "${1:-}" == "--test" ]]; then
    packages+=(espeak-ng ffmpeg)     # real speech for tests; an independent encoder for test files
    packages+=(mosquitto mosquitto-clients)  # a real MQTT broker (started by the tests) and subscriber
    packages+=(pulseaudio)           # a real audio server for the microphone tests
    packages+=(chromium fonts-noto-color-emoji)  # headless browser for the dashboard tests (never a download)
    packages+=(postgresql)           # a real PostgreSQL server (started by the catalog tests) for the catalog
fi

missing=()
for p in "${packages[@]}"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if ((${#missing[@]})); then
    sudo=""; [[ $(id -u) == 0 ]] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
# torch first, pinned: the CPU wheel where the machine's pip index provides it, CUDA builds from PyPI
# on GPU machines; an unpinned torch would pull a multi-GB CUDA build everywhere.
.venv/bin/python -m pip install -q "torch==2.13.0"
if [[ "${1:-}" == "--test" ]]; then
    .venv/bin/python -m pip install -q -e ".[test,ray]"  # the Ray tests run in CI too, never skipped
elif [[ "${1:-}" == "--ray" ]]; then
    .venv/bin/python -m pip install -q -e ".[ray]"
else
    .venv/bin/python -m pip install -q -e .
fi
# What was installed, for scripts/serve.sh: it re-runs this only when these files change.
cat pyproject.toml scripts/setup.sh | sha256sum | cut -d' ' -f1 > .venv/.emostream-installed
