#!/usr/bin/env bash
# Builds pycuda from its sdist (carried in .whl/ by benchmarks/fetch_gpu_packages.sh) into a target
# folder, on a machine without network. Usage: bash benchmarks/build_pycuda.sh SDIST TARGET [JOBS]
# pycuda's own default CUDA root is /usr/local, which finds no cuda.h where the toolkit lives in
# /usr/local/cuda-XX.Y behind a wrapper nvcc (as on this project's machines): the root is looked
# for here (CUDA_HOME, CUDA_PATH, beside the real nvcc, /usr/local/cuda*), and the driver library is
# linked from the toolkit's stubs, the driver's folder or the linker's cache. Checked on the CPU
# development machine up to the link step (no libcuda there); never run on a GPU machine yet.
set -euo pipefail
sdist=$1 target=$2 jobs=${3:-$(nproc)}
PY=${PY:-python3}
nvcc=$(command -v nvcc || true)
real_nvcc=$nvcc
[ -n "$nvcc" ] && grep -qs 'exec .*/bin/nvcc' "$nvcc" && real_nvcc=$(grep -o '/[^ "]*/bin/nvcc' "$nvcc" | head -1)
root=""
for r in "${CUDA_HOME:-}" "${CUDA_PATH:-}" "${real_nvcc:+$(dirname "$(dirname "$(readlink -f "$real_nvcc")")")}" \
         /usr/local/cuda /usr/local/cuda-*; do
    [ -n "$r" ] && [ -f "$r/include/cuda.h" ] && { root=$r; break; }
done
[ -n "$root" ] || { echo "build_pycuda: no CUDA toolkit with include/cuda.h found"; exit 1; }
libdirs=()
for d in "$root/lib64" "$root/lib64/stubs" "$root/targets/x86_64-linux/lib" "$root/targets/x86_64-linux/lib/stubs" \
         /usr/local/nvidia/lib64 /usr/lib/x86_64-linux-gnu; do
    [ -d "$d" ] && libdirs+=("$d")
done
driver_dir=$(for d in "${libdirs[@]}"; do ls "$d"/libcuda.so "$d"/libcuda.so.1 2>/dev/null || true; done | head -1 | xargs -r dirname)
[ -n "$driver_dir" ] || driver_dir=$( (ldconfig -p | grep -o '/[^ ]*/libcuda\.so[.0-9]*$' || true) | head -1 | xargs -r dirname)
echo "build_pycuda: CUDA root $root, driver library in ${driver_dir:-(not found: linking will fail)}, $jobs jobs"
src=$(mktemp -d /tmp/pycuda-src.XXXX)
tar xzf "$sdist" -C "$src" --strip-components=1
cd "$src"
join() { local IFS=,; echo "$*"; }
curand=""  # the project uses no cuRAND: without its header pycuda is built without it
[ -f "$root/include/curand.h" ] || { curand=--no-cuda-enable-curand; echo "build_pycuda: no curand.h, building without cuRAND"; }
$PY configure.py --cuda-root="$root" --cuda-inc-dir="$root/include" $curand \
    --cudadrv-lib-dir="$(join ${driver_dir:-$root/lib64} "${libdirs[@]}")" \
    --cudart-lib-dir="$(join "${libdirs[@]}")" --curand-lib-dir="$(join "${libdirs[@]}")" > /dev/null
printf '\n[build_ext]\nparallel = %s\n' "$jobs" >> setup.cfg
# libcuda.so (unversioned) is what -lcuda needs; a driver folder may hold only libcuda.so.1
if [ -n "$driver_dir" ] && [ ! -e "$driver_dir/libcuda.so" ]; then
    mkdir -p "$src/driverlink" && ln -s "$driver_dir/libcuda.so.1" "$src/driverlink/libcuda.so"
    sed -i "s|^CUDADRV_LIB_DIR = \[|CUDADRV_LIB_DIR = ['$src/driverlink', |" siteconf.py
fi
$PY -m pip install -q --no-index --no-deps --no-build-isolation --no-cache-dir --target "$target" .
