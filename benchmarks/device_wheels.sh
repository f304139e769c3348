#!/usr/bin/env bash
# Download, here, the wheels that the device machine lacks for bench_gpu.py's contenders (kornia,
# MONAI: the versions of requirements-dev.txt; scipy, for the boundary loss, is there already), for its
# Python 3.12 on x86-64, into .whl/ (ignored by git). Carry it: run(carry=[".whl"]); then
# run_on_device.sh installs them into /tmp/site. Usage: bash benchmarks/device_wheels.sh
set -eu
cd "$(dirname "$0")/.."
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
version() { grep -i "^$1==" requirements-dev.txt requirements.txt | head -1 | cut -d= -f3; }
mkdir -p .whl
for spec in "kornia==$(version kornia)" "monai==$(version monai)" kornia_rs; do
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl "$spec"
done
ls -la .whl
