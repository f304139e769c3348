#!/usr/bin/env bash
# The one script to run on a lent GPU machine (the device tool), all in one call of under 10 min:
#   1. the tests that touch CUDA (device_tests.txt: kernels, syncs, memory, Lovász, compile) -> $OUT/tests.txt
#   2. bench_gpu.py, the README's table (3 shapes x float32/bfloat16)      -> $OUT/bench_gpu.{txt,json}
#   3. bench_gpu.py --sweep, the launch settings (tile, warps, gradient, programs) -> $OUT/sweep.{txt,json}
#   4. bench_compile.py --device cuda: each loss eager and under torch.compile (one shape) -> $OUT/compile.{txt,json}
#   5. bench_training.py --steps-only: the live trainer's batches drawn and steps/s, batch 16 at 256 px -> $OUT/train.txt
# Each step has its own time limit so that a slow one cannot eat the others' (SIGINT first: pytest and
# bench_gpu.py then print what they have; KILL after 15-20 s).
# Before: bash benchmarks/device_wheels.sh (kornia, MONAI wheels into .whl/, here); then
#   run(command="STEPS='tests bench' bash benchmarks/run_on_device.sh", carry=[".whl"], timeout_s=420)
# The JSON is written after every loss (table) or setting (sweep): a time limit loses only what was left.
# Every step in one call would take up to ~620 s, past one call's 600 s and about all of a session's
# device budget once the machine's start is paid: split it, STEPS="tests bench" first (<= ~385 s), then
# STEPS="tests sweep compile train" with TESTS="the failing files" (<= ~360 s; default TESTS: device_tests.txt).
set -u
STEPS=${STEPS:-tests bench sweep compile train}
TESTS=${TESTS:-$(cat benchmarks/device_tests.txt)}
step() { case " $STEPS " in *" $1 "*) return 0;; *) return 1;; esac; }
OUT=${OUT:-/tmp/segloss-gpu}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
# compiled kernels kept in the checkout (ignored by git): a second call on a still-warm machine skips compiling
export TRITON_CACHE_DIR="$PWD/.triton-cache"
if ls .whl/*.whl > /dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        && export PYTHONPATH=/tmp/site
fi
{ nvidia-smi -L; python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)"
  python3 -c "import kornia, monai; print('kornia', kornia.__version__, 'monai', monai.__version__)"; } > "$OUT/gpu.txt" 2>&1
start=$(date +%s)
touch "$OUT/tests.txt" "$OUT/bench_gpu.txt" "$OUT/sweep.txt" "$OUT/compile.txt" "$OUT/train.txt"
# SIGINT first, not TERM: pytest then still prints which tests failed and why (KILL 20 s later if stuck)
if step tests; then
    timeout -s INT -k 20 150 python3 -m pytest -q -n 8 -p no:cacheprovider -o addopts="" -rfE --tb=short --timeout=120 \
        --disable-warnings $TESTS > "$OUT/tests.txt" 2>&1
    echo "tests exit $? after $(( $(date +%s) - start )) s" >> "$OUT/tests.txt"
fi
if step bench; then
    timeout -s INT -k 15 200 python3 benchmarks/bench_gpu.py --json "$OUT/bench_gpu.json" > "$OUT/bench_gpu.txt" 2>&1
    echo "bench exit $? after $(( $(date +%s) - start )) s" >> "$OUT/bench_gpu.txt"
fi
if step sweep; then
    timeout -s INT -k 15 100 python3 benchmarks/bench_gpu.py --sweep --shapes 8x19x512x1024 16x150x256x256 \
        --dtypes float32 --repeats 10 --json "$OUT/sweep.json" > "$OUT/sweep.txt" 2>&1
    echo "sweep exit $? after $(( $(date +%s) - start )) s" >> "$OUT/sweep.txt"
fi
if step compile; then
    timeout -s INT -k 10 50 python3 benchmarks/bench_compile.py --device cuda --repeats 10 --json "$OUT/compile.json" \
        > "$OUT/compile.txt" 2>&1
    echo "compile exit $? after $(( $(date +%s) - start )) s" >> "$OUT/compile.txt"
fi
if step train; then
    timeout -s INT -k 10 60 python3 benchmarks/bench_training.py --steps-only --batch-size 16 --image-size 256 \
        --rounds 1 --seconds 4 > "$OUT/train.txt" 2>&1
    echo "train exit $? after $(( $(date +%s) - start )) s" >> "$OUT/train.txt"
fi
# all of it comes back under $OUT; the reply shows only its last 12,000 characters
cat "$OUT/gpu.txt"; tail -40 "$OUT/tests.txt"; cat "$OUT/bench_gpu.txt" "$OUT/sweep.txt" "$OUT/compile.txt" "$OUT/train.txt"
