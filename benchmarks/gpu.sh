#!/usr/bin/env bash
# The one GPU command (issue 15): on a CUDA machine, within 8 minutes,
#   1. the kernel tests with the kernels compiled (TRITON_INTERPRET unset), on CUDA tensors
#   2. the kernel benchmark (benchmarks/kernels.py)
#   3. the end-to-end benchmark (benchmarks/e2e.py: training step and inference, torchvision
#      eager / compile against resdsl / + compile)
#   4. the synchronized BN's per-rank cost (benchmarks/syncbn.py)
# each under its own time limit, writing benchmarks/results/*-gpu.txt (or $RESULTS) with the
# device, the versions and the command at the top. A step that fails is reported and the
# others still run; the exit status is the number of failed steps.
#
#     bash benchmarks/gpu.sh            # all four
#     QUICK=1 bash benchmarks/gpu.sh    # fewer repetitions (a first look, ~3 min)
set -uo pipefail
cd "$(dirname "$0")/.."
RESULTS=${RESULTS:-benchmarks/results}
mkdir -p "$RESULTS"
unset TRITON_INTERPRET
export RESDSL_KERNELS=auto
reps=25; rounds=5; steps=20
if [ "${QUICK:-0}" = 1 ]; then reps=5; rounds=2; steps=5; fi
failed=0

step() {  # step NAME SECONDS COMMAND...: run it, keep its output, note a failure
  local name=$1 limit=$2; shift 2
  local out="$RESULTS/$name-gpu.txt"
  {
    echo "# $(date -u +%Y-%m-%dT%H:%MZ) $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null | head -1)"
    python -c "import torch, sys; import importlib.util as u; t = u.find_spec('triton'); \
print('# python', sys.version.split()[0], '| torch', torch.__version__, '| cuda', torch.version.cuda, \
'| triton', __import__('triton').__version__ if t else None)"
    echo "# command: $*"
  } > "$out"
  echo "== $name (limit ${limit}s) -> $out"
  if timeout "$limit" "$@" >> "$out" 2>&1; then tail -n 25 "$out"; else
    echo "!! $name failed or ran out of time (exit $?)"; tail -n 40 "$out"; failed=$((failed + 1)); fi
}

step kernel-tests 150 python -m pytest -q -p no:cacheprovider tests/test_kernels_cuda.py
step kernels 150 python benchmarks/kernels.py --reps "$reps"
step e2e 150 python benchmarks/e2e.py --rounds "$rounds" --steps "$steps"
step syncbn 40 python benchmarks/syncbn.py --reps "$((reps * 2))"
echo "gpu.sh: $failed step(s) failed"
exit "$failed"
