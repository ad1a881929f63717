#!/usr/bin/env bash
# On a machine with an NVIDIA GPU and no network (e.g. the device tool's H100): installs pycuda
# (built here from its sdist against this machine's CUDA) and the Python packages the image lacks,
# from .whl/ (made by benchmarks/fetch_gpu_packages.sh, carried along); then
#   1. checks every CUDA kernel on the GPU against the CPU (tests/test_cuda_kernels.py, pycuda cases),
#   2. trains and evaluates each model end to end with -d cuda on the demo data,
#   3. measures (benchmarks/gpu_speed.py).
# Output goes to $OUT (default /tmp/gpu_check). Usage: bash benchmarks/gpu_check.sh [quick]
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/gpu_check}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH=/tmp/site:$PWD
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl
python3 -m pip install -q --no-index --no-deps --no-build-isolation --target /tmp/site .whl/pycuda-*.tar.gz \
    2>&1 | tail -5
python3 -c "import pycuda.autoprimaryctx, pycuda.driver as d; print('pycuda', d.get_version(), d.Context.get_device().name())"

python3 -m pytest -q -p no:cacheprovider tests/test_cuda_kernels.py 2>&1 | tee "$OUT/kernel_checks.txt"

demo=data/demo
for model in gru4rec nextitnet cprec; do
    python3 run.py "$demo/train.tsv" -t "$demo/test.tsv" -g "$model" -d cuda -ps n_epochs=2 -m 1 5 20 \
        2>&1 | tee "$OUT/run_$model.txt"
done
[ "${1:-}" = quick ] && exit 0
python3 benchmarks/gpu_speed.py 2>&1 | tee "$OUT/gpu_speed.txt"
