#!/usr/bin/env bash
# The one script to run on a lent GPU machine (the device tool): every CUDA test, then
# bench_gpu.py; everything lands in $OUT. Usage: bash benchmarks/run_on_device.sh
set -u
OUT=${OUT:-/tmp/segloss-gpu}
mkdir -p "$OUT"
nvidia-smi -L > "$OUT/gpu.txt" 2>&1
python -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)" >> "$OUT/gpu.txt" 2>&1
python -m pytest -q -p no:cacheprovider -o addopts="" tests/test_triton_kernels.py tests/test_device_factories.py \
    tests/test_fast_path.py tests/test_functional.py tests/test_dual_focal.py tests/test_recall.py \
    > "$OUT/tests.txt" 2>&1
echo "tests exit $?" >> "$OUT/tests.txt"
timeout 420 python benchmarks/bench_gpu.py --json "$OUT/bench_gpu.json" > "$OUT/bench_gpu.txt" 2>&1
echo "bench exit $?" >> "$OUT/bench_gpu.txt"
tail -3 "$OUT/tests.txt"
cat "$OUT/bench_gpu.txt"
