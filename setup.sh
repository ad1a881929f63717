#!/usr/bin/env bash
# Installs what the project needs:
#  - with `test`, Debian postgresql: the distributed paropt test starts a throwaway server on loopback;
#  - the Python package with its dependencies (the BLAS PyTensor's C code links comes from pip:
#    scipy-openblas32).
#   bash setup.sh        -> runtime dependencies
#   bash setup.sh test   -> runtime + test dependencies
set -euo pipefail
cd "$(dirname "$0")"
debs=()
if [ "${1:-}" = "test" ] && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
    debs+=(postgresql)
fi
if [ "${#debs[@]}" -gt 0 ]; then
    if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
        (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${debs[@]}" >/dev/null) \
            || echo "setup.sh: could not install ${debs[*]}" >&2
    else
        echo "setup.sh: please install the Debian package(s) ${debs[*]} (needs root and apt-get)" >&2
    fi
fi
extra=""
[ "${1:-}" = "test" ] && extra="[test]"
pip install -q -e ".${extra}"
