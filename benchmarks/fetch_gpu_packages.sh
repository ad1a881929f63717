#!/usr/bin/env bash
# Downloads what benchmarks/gpu_check.sh and benchmarks/gpu_run.sh install on a GPU machine that cannot reach PyPI:
# pycuda's source distribution (built there against its CUDA) and pure-Python wheels of the
# packages it needs. Run from the repository root on a machine with network; files go to .whl/
# (git-ignored).
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .whl
exclude=$(git rev-parse --git-path info/exclude); mkdir -p "$(dirname "$exclude")"
grep -qx '/.whl/' "$exclude" 2>/dev/null || echo '/.whl/' >> "$exclude"
url=$(curl -fsSL https://pypi.org/pypi/pycuda/json | python3 -c \
    "import json, sys; print(next(u['url'] for u in json.load(sys.stdin)['releases']['2026.1'] if u['packagetype'] == 'sdist'))")
curl -fsS -o .whl/pycuda-2026.1.tar.gz "$url"
# Wheels (Python 3.12, x86-64) of what the GPU image lacks: pycuda's, PyTensor's and Optuna's
# dependencies that are not already there (numpy, scipy, pandas, numba, jax, joblib... are), and
# scipy-openblas32 (the BLAS the C backend links for the CPU reference runs of gpu_run.sh). Installed
# with --no-deps, so the image's own versions of everything else stay.
rm -f .whl/*.whl
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl \
    pytools platformdirs mako siphash24 pytensor==3.0.7 cons etuples logical-unification minikanren \
    optuna alembic sqlalchemy greenlet colorlog scipy-openblas32
ls -la .whl
