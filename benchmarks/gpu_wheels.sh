#!/usr/bin/env bash
# Download, here, the wheels the GPU check needs on a GPU node that has Python 3.12 and torch but no
# network (README, "GPU check"): they travel with the working tree (64 MiB in all) and
# benchmarks/gpu_check.sh installs them with --no-index --no-deps.
#
#   bash benchmarks/gpu_wheels.sh                      # -> wheels/gpu (git-ignored)
#   bash benchmarks/gpu_wheels.sh --deepspeed          # also DeepSpeed (built here, no ops) and its deps
#   bash benchmarks/gpu_wheels.sh --scipy              # also scipy, if the node lacks it (~36 MB)
#   bash benchmarks/gpu_wheels.sh --dest DIR --python-version 3.12
#
# The node is assumed to have numpy (torch's images ship it). Versions are the project's pins
# (pyproject.toml) where it pins them. Not carried: Ray (its wheel alone is 79 MB), pyarrow (the check
# reads and writes volumes without the Parquet manifest), hnswlib, SimpleITK, pydicom, nibabel (ingest
# and discovery, which the check does not run), numba (60 MB with llvmlite: without it the numpy
# corruption back end runs its vectorised elastic code, the same numbers).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dest="$here/wheels/gpu"; pyver="3.12"; deepspeed=0; scipy=0
while [ $# -gt 0 ]; do
  case "$1" in
    --dest) dest="$2"; shift ;;
    --python-version) pyver="$2"; shift ;;
    --deepspeed) deepspeed=1 ;;
    --scipy) scipy=1 ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "gpu_wheels.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
pin() {  # the version pyproject.toml pins for a package, or nothing
  grep -oE "\"$1==[^\"]+\"" "$here/pyproject.toml" | head -1 | tr -d '"'
}
# zarr and what it imports; fsspec (the store's paths); pyyaml (config presets); pytest for the
# `gpu` tests (pytest-timeout: the project's addopts use --timeout)
pkgs=("$(pin zarr)" "$(pin numcodecs)" donfig google-crc32c crc32c typing_extensions packaging "$(pin fsspec)"
      "$(pin pyyaml)" "$(pin pytest)" "$(pin pytest-timeout)" pluggy iniconfig)
[ "$scipy" = 1 ] && pkgs+=("$(pin scipy)")
mkdir -p "$dest"
py="${PYTHON:-python3}"
"$py" -m pip download --disable-pip-version-check -q --only-binary=:all: --python-version "$pyver" \
  --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 \
  --no-deps -d "$dest" "${pkgs[@]}"
if [ "$deepspeed" = 1 ]; then
  # DeepSpeed is published as a source archive only: build a pure-Python wheel here without its ops
  # (as ./venv-run installs it), then its pure and binary dependencies for the node's Python
  DS_BUILD_OPS=0 "$here/venv-run" python -m pip wheel --disable-pip-version-check -q --no-deps \
    --no-build-isolation -w "$dest" "$(pin deepspeed)"
  "$py" -m pip download --disable-pip-version-check -q --only-binary=:all: --python-version "$pyver" \
    --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 \
    --no-deps -d "$dest" hjson py-cpuinfo pydantic pydantic-core annotated-types typing-inspection msgpack \
    psutil einops ninja nvidia-ml-py tqdm
fi
total=$(du -sm "$dest" | cut -f1)
echo "gpu_wheels.sh: $(ls "$dest"/*.whl | wc -l) wheels, ${total} MiB in $dest" >&2
[ "$total" -lt 64 ] || { echo "gpu_wheels.sh: over the 64 MiB the GPU machine accepts" >&2; exit 1; }
