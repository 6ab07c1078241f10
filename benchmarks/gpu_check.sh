#!/usr/bin/env bash
# The GPU check in one command (README, "GPU check"): U-Net step at paper size (fp32/bf16/fp16), the
# DeepSpeed engine (ZeRO-1 bf16/fp16) against bare PyTorch, the torch corruption back end on the GPU
# (speed, agreement with numpy), the data path from N DataLoader workers reading the Zarr store, and
# the tests marked `gpu`. Everything below Ray: the GPU machine has no Ray.
#
#   bash benchmarks/gpu_check.sh                 # on a GPU node: installs, then writes benchmarks/results/gpu/
#   bash benchmarks/gpu_check.sh --dry-run       # tiny sizes on the CPU with ./venv-run, JSON to a temp folder
#
# Options: --out DIR (where gpu_check.json goes), --wheels DIR (wheels to install first; default
# wheels/gpu, filled by benchmarks/gpu_wheels.sh), --python PY (default python3), --no-install.
# On a GPU node the project is installed with `pip install --no-deps -e .` (or, failing that, put on
# PYTHONPATH) plus the carried wheels, so the node's own torch is used. Budget: about 8 minutes on one
# H100/H200, start-up included (each part is sized for it; see benchmarks/gpu_check.py).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dry=0; out=""; wheels="$here/wheels/gpu"; py="${PYTHON:-python3}"; install=1
while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) dry=1 ;;
    --out) out="$2"; shift ;;
    --wheels) wheels="$2"; shift ;;
    --python) py="$2"; shift ;;
    --no-install) install=0 ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    *) echo "gpu_check.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
cd "$here"

if [ "$dry" = 1 ]; then
  out="${out:-$(mktemp -d "${TMPDIR:-/tmp}/gpu_check.XXXXXX")}"
  exec ./venv-run python benchmarks/gpu_check.py --dry-run --out "$out"
fi

out="${out:-$here/benchmarks/results/gpu}"
start=$(date +%s)
if [ "$install" = 1 ]; then
  pip=("$py" -m pip install --disable-pip-version-check -q --no-index --no-deps)
  if compgen -G "$wheels/*.whl" > /dev/null; then
    echo "gpu_check.sh: installing $(ls "$wheels"/*.whl | wc -l) carried wheels from $wheels" >&2
    "${pip[@]}" "$wheels"/*.whl
  else
    echo "gpu_check.sh: no wheels in $wheels (benchmarks/gpu_wheels.sh makes them); using what is installed" >&2
  fi
  if ! "${pip[@]}" --no-build-isolation -e "$here" 2> /tmp/gpu_check_install.log; then
    echo "gpu_check.sh: pip install -e failed (see /tmp/gpu_check_install.log); using PYTHONPATH" >&2
    export PYTHONPATH="$here${PYTHONPATH:+:$PYTHONPATH}"
  fi
fi
"$py" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 3)' \
  || { echo "gpu_check.sh: torch sees no CUDA device; on a CPU machine use --dry-run" >&2; exit 3; }
rc=0
"$py" benchmarks/gpu_check.py --out "$out" || rc=$?
echo "gpu_check.sh: done in $(( $(date +%s) - start )) s, exit $rc; results in $out/gpu_check.json" >&2
exit $rc
