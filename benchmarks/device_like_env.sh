#!/usr/bin/env bash
# Rehearse the device run here, without a GPU: build the device machine's Python stack (Python 3.12,
# torch 2.11, Triton 3.6; MONAI and kornia from .whl/ as the device gets them) in a throwaway venv, and
# run the device's test files (device_tests.txt) and the losses' suites with the Triton kernels in the
# interpreter. What an API
# change between torch 2.11 and this repository's torch would break shows here, not in the device's minutes.
# Downloads about 3.5 GB (torch's CUDA wheel and its nvidia libraries). Usage:
#   bash benchmarks/device_like_env.sh            (venv in /tmp/segloss-device-env, reused when present)
set -eu
cd "$(dirname "$0")/.."
ENV=${DEVICE_ENV:-/tmp/segloss-device-env}
PY312=$(PYENV_VERSION=3.12.1 command -v python3.12 2>/dev/null || true)
[ -n "$PY312" ] || { echo "no python3.12 here: the device runs Python 3.12" >&2; exit 2; }
if [ ! -x "$ENV/bin/python" ]; then
    PYENV_VERSION=3.12.1 "$PY312" -m venv "$ENV"
    "$ENV/bin/pip" install -q torch==2.11.0 triton==3.6.0 numpy pytest pytest-xdist pytest-timeout hypothesis scipy
fi
[ -d .whl ] || bash benchmarks/device_wheels.sh
rm -rf "$ENV/site" && "$ENV/bin/python" -m pip install -q --no-index --no-deps --no-compile --target "$ENV/site" .whl/*.whl
"$ENV/bin/python" -c "import sys, torch, triton; print(sys.version.split()[0], 'torch', torch.__version__, 'triton', triton.__version__)"
PYTHONPATH="$ENV/site" TRITON_INTERPRET=1 "$ENV/bin/python" -m pytest -q -n 2 -p no:cacheprovider \
    $(cat benchmarks/device_tests.txt) tests/test_bench_gpu.py tests/test_fast_path.py tests/test_functional.py \
    tests/test_dual_focal.py tests/test_recall.py tests/test_region.py tests/test_label_smoothing.py
