#!/usr/bin/env bash
# Issue 18's one device run: -d cuda end to end on the GPU machine, in under 8 minutes, everything
# under $OUT (at most 8 files come back: run.log gpu.txt install.log kernel_checks.txt agree.log
# speed.log eval.log summary.json). Python parts: benchmarks/gpu_run.py.
#
#   bash benchmarks/gpu_run.sh            # on the GPU machine (wheels in .whl/, port in .gpu_carry/)
#   bash benchmarks/gpu_run.sh --dry-run  # on any machine without a GPU: the same steps, -d cuda on
#                                         # JAX's CPU device (RECSYS_CUDA_DRY_RUN=cpu), small sizes,
#                                         # no wheels installed and no pycuda built (what this machine
#                                         # has is used), the kernel checks under the host emulation
# GPU_RUN_PORT_PYTHON: the Python that runs the official port (default: python3; in the dry run, one
# with a CPU PyTorch, pandas and joblib, or the port step is skipped and says so).
# Steps: 1. install the carried wheels and build pycuda from its sdist (benchmarks/build_pycuda.sh,
# in the background, while
# 2. the data are generated and the C backend's reference runs train on the CPU); 3. the pycuda
# kernel checks against the CPU (tests/test_cuda_kernels.py; on the GPU no pycuda case may skip);
# 4. GRU4Rec, NextItNet, CpRec with -d cuda, metrics within 2% of the reference; 5. weights,
# optimizer state and sample store resident on the device; 6. GRU4Rec training mb/s, RetailRocket
# best parameters, ~30k items, against the official PyTorch port on the same GPU; 7. evaluation
# throughput against 1M items (pycuda rank kernel vs counts inside the jitted graph).
# Every step has its own time limit (490 s together, the pycuda build 240 s beside the first two),
# and a failed step does not stop the later ones. The dry run took 225 s on a 2-core CPU.
set -uo pipefail
cd "$(dirname "$0")/.."
DRY=""; [ "${1:-}" = --dry-run ] && DRY=--dry-run
OUT=${OUT:-/tmp/gpu_run_out}
export GPU_RUN_WORK=${GPU_RUN_WORK:-/tmp/gpu_run_work}
mkdir -p "$OUT" "$GPU_RUN_WORK"
export PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
PY=python3
T0=$(date +%s)
log() { echo "[$(( $(date +%s) - T0 )) s] $*" | tee -a "$OUT/run.log"; }
step() {  # step NAME LIMIT_SECONDS COMMAND...: runs, logs its status, never stops the script
    local name=$1 limit=$2; shift 2
    log "step $name (limit ${limit} s)"
    timeout "$limit" "$@" 2>&1 | tee -a "$OUT/run.log"
    local rc=${PIPESTATUS[0]}
    log "step $name: rc $rc"
    echo "$name $rc" >> "$GPU_RUN_WORK/status"
}
rm -f "$GPU_RUN_WORK/status"

if [ -z "$DRY" ]; then
    nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv | tee "$OUT/gpu.txt"
    # 1. wheels, then pycuda from its sdist with 16 parallel compile jobs, in the background
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        > "$OUT/install.log" 2>&1 || { log "wheel install failed"; cat "$OUT/install.log"; }
    export PYTHONPATH=/tmp/site:$PWD
    (
        set -e
        t=$(date +%s)
        PY=$PY timeout 240 bash benchmarks/build_pycuda.sh .whl/pycuda-*.tar.gz /tmp/site 16
        echo "pycuda built in $(( $(date +%s) - t )) s"
        $PY -c "import pycuda.autoprimaryctx, pycuda.driver as d; print('pycuda', d.get_version(), d.Context.get_device().name())"
    ) >> "$OUT/install.log" 2>&1 &
    BUILD=$!
else
    echo "dry run: no GPU; -d cuda on JAX's CPU device (RECSYS_CUDA_DRY_RUN=cpu)" | tee "$OUT/gpu.txt"
    echo "dry run: nothing installed, pycuda not built (this machine's packages are used)" > "$OUT/install.log"
    export PYTHONPATH=$PWD
    BUILD=""
fi
$PY -c "import sys, jax, pytensor; print(sys.version.split()[0], 'jax', jax.__version__, jax.devices(), 'pytensor', pytensor.__version__)" 2>&1 | tee -a "$OUT/run.log"

# 2. data and the CPU reference (C backend), beside the pycuda build
step data 30 $PY benchmarks/gpu_run.py data --out "$OUT" $DRY
step reference 80 $PY benchmarks/gpu_run.py reference --out "$OUT" $DRY

# 3. kernel checks: on the GPU every pycuda case must run (a skip there is a failure)
if [ -n "$BUILD" ]; then
    log "waiting for the pycuda build"
    wait "$BUILD"; log "pycuda build: rc $?"; tail -3 "$OUT/install.log" | tee -a "$OUT/run.log"
fi
step kernel_checks 50 bash -c "$PY -m pytest -q -rs -p no:cacheprovider tests/test_cuda_kernels.py 2>&1 | tee '$OUT/kernel_checks.txt';
    s=\${PIPESTATUS[0]}; [ -z '$DRY' ] && grep -q 'SKIPPED.*no GPU' '$OUT/kernel_checks.txt' && { echo 'pycuda cases skipped on the GPU'; exit 1; }; exit \$s"

# 4.-7. -d cuda
step agree 100 $PY benchmarks/gpu_run.py agree --out "$OUT" $DRY
step residency 30 $PY benchmarks/gpu_run.py residency --out "$OUT" $DRY
step train_speed 140 $PY benchmarks/gpu_run.py train_speed --out "$OUT" $DRY
step eval_speed 60 $PY benchmarks/gpu_run.py eval_speed --out "$OUT" $DRY

log "done; step status:"
tee -a "$OUT/run.log" < "$GPU_RUN_WORK/status"
! grep -qv ' 0$' "$GPU_RUN_WORK/status"
