#!/usr/bin/env bash
# On a machine with an NVIDIA GPU and no network (e.g. the device tool's H100): installs pycuda
# (built here from its sdist against this machine's CUDA) and the Python packages the image lacks,
# from .whl/ (made by benchmarks/fetch_gpu_packages.sh, carried along); then
#   1. checks every CUDA kernel on the GPU against the CPU (tests/test_cuda_kernels.py, pycuda cases),
#   2. checks that -d cuda finds the GPU through the driver,
#   3. measures the kernels against PyTorch on the same GPU (benchmarks/gpu_kernels_speed.py).
# End-to-end training and evaluation with -d cuda: benchmarks/gpu_run.sh (issue 18).
# Output goes to $OUT (default /tmp/gpu_check). Usage: bash benchmarks/gpu_check.sh [quick]
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/gpu_check}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH=/tmp/site:$PWD
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl
bash benchmarks/build_pycuda.sh .whl/pycuda-*.tar.gz /tmp/site 2>&1 | tail -5  # finds the CUDA root pycuda's default misses
python3 -c "import pycuda.autoprimaryctx, pycuda.driver as d; print('pycuda', d.get_version(), d.Context.get_device().name())"

python3 -m pytest -q -p no:cacheprovider tests/test_cuda_kernels.py 2>&1 | tee "$OUT/kernel_checks.txt"

python3 -c "from recsys_core.cuda_device import require_gpu; print('-d cuda finds:', require_gpu())"
[ "${1:-}" = quick ] && exit 0
python3 benchmarks/gpu_kernels_speed.py 2>&1 | tee "$OUT/gpu_kernels_speed.txt"
