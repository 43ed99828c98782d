#!/usr/bin/env bash
# Build the libsolv Python module with Debian (and RPM) support into a wheelhouse.
# The PyPI wheel is built without ENABLE_DEBIAN. pip's wheel cache ignores config settings,
# hence --no-cache-dir. Needs gcc and the dev headers of zlib, libxml2, liblzma, libzstd and
# libbz2; cmake, ninja and swig come from PyPI.
#
# Usage: scripts/build-solv-wheel.sh WHEELHOUSE [PIP]
set -euo pipefail
wheelhouse=${1:?usage: build-solv-wheel.sh WHEELHOUSE [PIP]}
pip=${2:-pip}
version=0.7.39.post1
if ls "$wheelhouse"/solv-"$version"-*.whl >/dev/null 2>&1; then
  exit 0
fi
"$pip" wheel -q --no-cache-dir --no-deps --no-binary solv -w "$wheelhouse" "solv==$version" \
  --config-settings=build.requires=swig \
  --config-settings=cmake.define.ENABLE_DEBIAN=ON \
  --config-settings=cmake.define.MULTI_SEMANTICS=ON \
  --config-settings=cmake.define.ENABLE_ZSTD_COMPRESSION=ON \
  --config-settings=cmake.define.ENABLE_BZIP2_COMPRESSION=ON
