#!/usr/bin/env bash
# Fill wheels/ with every wheel the mvds image needs, downloaded on this host,
# so that building the image needs no network inside the build (containers
# here cannot reach the package index).  The wheels match the base image's
# Python version, C library and architecture (asked of the image itself);
# mvds itself is built from source in the image, so edits to the code never
# go stale in wheels/.
#
#   scripts/docker-wheels.sh [BASE_IMAGE]      (default: $MVDS_BASE_IMAGE, else mvds-base:bookworm)
#
# The Dockerfile installs from wheels/ whenever it holds wheels, with
# --no-index; remove wheels/ to let the build use the index instead.
set -euo pipefail
cd "$(dirname "$0")/.."

image=${1:-${MVDS_BASE_IMAGE:-mvds-base:bookworm}}
python=${PYTHON:-python3}
say() { printf 'docker-wheels: %s\n' "$*" >&2; }

read -r pyver libc arch < <(
    docker run --rm "$image" python3 -c '
import platform, sys
libc, version = platform.libc_ver()
print("%d.%d" % sys.version_info[:2], version if libc == "glibc" else "none", platform.machine())
'
) || { say "cannot run python3 in $image"; exit 1; }
if [ "$libc" = none ]; then
    say "$image has no glibc (musl?): only manylinux wheels are fetched here; use a glibc base"
    exit 1
fi
abi="cp${pyver/./}"
platforms=()
for legacy in manylinux1 manylinux2010 manylinux2014; do platforms+=(--platform "${legacy}_$arch"); done
minor=${libc#2.}
for ((m = 5; m <= minor; m++)); do platforms+=(--platform "manylinux_2_${m}_$arch"); done

build=$(mktemp -d)
trap 'rm -rf "$build"' EXIT
say "mvds's requirements for CPython $pyver ($abi), glibc $libc, $arch (base image $image)"
"$python" -m pip wheel --quiet --no-deps --wheel-dir "$build" . >/dev/null
rm -rf wheels
mkdir -p wheels
# The runtime dependencies (read from the freshly built mvds wheel) and the
# build backend the image needs to build mvds from source.
"$python" -m pip download --quiet --dest wheels --only-binary=:all: \
    --python-version "$pyver" --implementation cp --abi "$abi" --abi abi3 --abi none \
    "${platforms[@]}" "$build"/mvds-*.whl "setuptools>=77" wheel
rm -f wheels/mvds-*.whl
say "$(ls wheels | wc -l) wheels in wheels/: $(ls wheels | sed 's/-.*//' | sort | tr '\n' ' ')"
