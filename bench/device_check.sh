#!/usr/bin/env bash
# The GPU check, in at most 9 minutes on a machine with nothing but torch (CUDA),
# numpy and the other packages /work/shared/gpu/README.md lists; everything else travels as wheels.
#
# Before sending the checkout (on the machine with the project's venv; see ../shared/gpu/README.md):
#   echo /.gpu/ >> .git/info/exclude; mkdir -p .gpu && cp -r ../shared/gpu/wheels .gpu/
#   .venv/bin/python -m pip download --no-deps --only-binary :all: --python-version 3.12 \
#     --platform manylinux2014_x86_64 -d .gpu/wheels praat-parselmouth   # the cues' pitch tracker, not in ../shared
#   PYTHONPATH=. .venv/bin/python -c "from pathlib import Path; from bench.speech import benchmark_audio; benchmark_audio(Path('.gpu/cache'), 3.0)"
# then run `bash bench/device_check.sh` there with `.gpu` carried along.
#
# Stages (each with its own time limit, each writing its JSON as it finishes, so a stage that
# hangs still leaves the others' figures), results under bench/results/ and copied to $OUT:
#   1. CUDA equality: tests/models/test_cuda.py (fp32/fp16/bf16 against CPU fp32, batch against alone)
#   2. the model-only table: bench.gpu, large, float16/bfloat16/float32, batches 1-512, with --check on base;
#      then float16 batches 1 and 8 without CUDA graphs; then the copy share: one eager float16
#      forward at batches 8 and 128 profiled with the time-major front end (models/frontend.py)
#      and with last turn's funasr conv stack, beside last turn's model-only figure
#   3. one server process, large, --dtype auto (float16), decision layer on, N = 64, 128, 256, 512
set -u
cd "$(dirname "$0")/.."
DAY=$(date +%F)
RESULTS=bench/results
mkdir -p "$RESULTS"
PY=${PYTHON:-python3}
STARTED=$(date +%s)
stage() { echo "=== [$(( $(date +%s) - STARTED )) s] $*"; }

stage "installing the carried wheels"
if [ -d .gpu/wheels ]; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .gpu/wheels/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD
else
  export PYTHONPATH=$PWD
fi
export PYTHONUNBUFFERED=1 EMOSTREAM_BENCH_CACHE=${EMOSTREAM_BENCH_CACHE:-/tmp/cache}
mkdir -p "$EMOSTREAM_BENCH_CACHE"
cp .gpu/cache/*.wav "$EMOSTREAM_BENCH_CACHE"/ 2>/dev/null || echo "no cached speech in .gpu/cache: bench.speech needs espeak-ng"
"$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else '')"
nvidia-smi --query-gpu=name,memory.used,memory.total,utilization.gpu --format=csv 2>/dev/null

stage "1/3 CUDA equality (tests/models/test_cuda.py)"
timeout 75 "$PY" -m pytest -q -p no:cacheprovider tests/models/test_cuda.py --junitxml="$RESULTS/cuda-equality-$DAY.xml" 2>&1 | tail -15

stage "2/3 model-only table (bench.gpu, CUDA graphs where a batch fits) with the equality check on base"
timeout 150 "$PY" -m bench.gpu --device cuda --archs large --check --check-arch base --repeats 5 --profile-batches \
  --json "$RESULTS/gpu-$DAY-cuda.json" 2>&1 | grep -v '^\[' | tail -30
# Where the GPU's time goes now: aten::copy_'s share of device time (last turn: 40 %), time-major
# front end against last turn's funasr conv stack; and large float16 at batch 128 beside last turn's
# 2,303 owned audio-s/s (bench/results/gpu-*-cuda.json of issue 10's run).
echo "last turn: large float16, batch 128: 2,303 owned audio-s/s (funasr's conv stack, 40 % of GPU time in aten::copy_)"
timeout 60 "$PY" -m bench.gpu --device cuda --archs large --dtypes float16 --batches 128 --repeats 5 \
  --profile-batches 8 128 --json "$RESULTS/gpu-$DAY-cuda-profile.json" 2>&1 | grep -v '^\[' | tail -12
# The same small batches launched kernel by kernel: what the graphs save.
timeout 30 "$PY" -m bench.gpu --device cuda --archs large --dtypes float16 --batches 1 8 --repeats 5 --no-graphs \
  --json "$RESULTS/gpu-$DAY-cuda-eager.json" 2>&1 | grep -v '^\[' | tail -6

stage "3/3 one server process, large, decision layer on, N = 64 128 256 512"
timeout 230 "$PY" -m bench.concurrent --archs large --device cuda --dtype auto --ns 64 128 256 512 \
  --seconds 20 --warmup 5 --idle-wait 0 --pause 1 --retries 0 --max-p95 1.5 --drain-timeout 30 \
  --server-option=--max-sessions=1024 \
  --json "$RESULTS/concurrent-$DAY-cuda-large-decision-layer.json" 2>&1 | grep -v '^\[' | tail -25

stage "done"
if [ -n "${OUT:-}" ]; then
  cp "$RESULTS"/*-"$DAY"-cuda*.json "$RESULTS"/cuda-equality-"$DAY".xml "$OUT"/ 2>/dev/null
  ls -la "$OUT"
fi
