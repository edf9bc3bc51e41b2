#!/usr/bin/env bash
# MaskInversion on a GPU (issue 30 item 5): the paper's setting and the grid, a few minutes.
#
#   . .venv/bin/activate && bash benchmarks/gpu_maskinversion.sh
#
# Environment (all optional):
#   PYTHON   the interpreter with RegionLab installed (default: python)
#   REFVENV  the reference's virtualenv (default /work/refvenv; how to make it:
#            benchmarks/maskinversion_parity.py); without it the reference is skipped and the
#            JSON says why
#   OUT      the grid's JSON (default benchmarks/results/maskinversion_speed_gpu.json); the
#            all-masks-at-once run goes next to it as *_unchunked.json
#   REPEATS  timed calls per cell, the median is kept (default 3)
#   TIMEOUT  seconds per reference cell (default 60; a slower cell is recorded as a bound)
#
# Steps, all on the first GPU, random-init ViT-B/16, fp32 without TF32:
#   0. the GPU tests (CUDA result = CPU result, nothing made on the CPU inside the loop);
#   1. the grid: masks {1,3,10,30,100} x sizes {224,448}, 10 iterations, reference + autograd,
#      factorized and auto; its 448 px / 100 masks cell is the paper's setting (the paper: 0.44 s
#      for 100 masks, its decomposition slower than autograd below about 5 masks);
#   2. the paper's setting again with all 100 masks optimised at once (--chunk 128) instead of
#      MASK_CHUNK (4, chosen on a CPU), RegionLab only.
# The card's name, memory, torch and CUDA versions go into each JSON.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python}
REFVENV=${REFVENV:-/work/refvenv}
OUT=${OUT:-benchmarks/results/maskinversion_speed_gpu.json}
REPEATS=${REPEATS:-3}
TIMEOUT=${TIMEOUT:-60}

if ! "$PYTHON" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    echo "gpu_maskinversion.sh: no CUDA device visible to $PYTHON; nothing was run" >&2
    exit 1
fi
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version \
    --format=csv,noheader || true

start=$(date +%s)
echo "== 0. GPU tests"
"$PYTHON" -m pytest -q -m gpu tests/test_maskinversion_device.py \
    || echo "!! the GPU tests FAILED (see above); the timings below still run" >&2

echo "== 1. grid (reference from $REFVENV if it is there) -> $OUT"
"$PYTHON" -m benchmarks.maskinversion_speed --device cuda --sizes 224 448 \
    --masks 1 3 10 30 100 --iterations 10 --engines autograd factorized auto \
    --repeats "$REPEATS" --timeout "$TIMEOUT" --refvenv "$REFVENV" --out "$OUT"

echo "== 2. the paper's setting, all 100 masks at once -> ${OUT%.json}_unchunked.json"
"$PYTHON" -m benchmarks.maskinversion_speed --device cuda --sizes 448 --masks 100 \
    --iterations 10 --engines autograd factorized --chunk 128 --no-reference \
    --repeats "$REPEATS" --out "${OUT%.json}_unchunked.json"

echo "gpu_maskinversion.sh: done in $(( $(date +%s) - start )) s"
