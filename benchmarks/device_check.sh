#!/usr/bin/env bash
# The GPU paths in one command of at most nine minutes, for a lent GPU machine (an H100 or H200 with 16
# cores, its own PyTorch, none of this project's offline packages, no network):
#
#   benchmarks/device_check.sh [RESULTS_DIR]          (default: $OUT where set, else device-check/)
#
# Prepare here first: `python -m pipeline bundle .bundle` (the default teacher and text), and the wheels
# the README names that the machine lacks in .whl/ (model2vec and its needs, for the benchmark's peer);
# both are ignored by git, so carry them with the tree. Then, there:
#   1. the `gpu` test markers (python -m pytest -m gpu),
#   2. python -m pipeline run --device gpu --budget 4x --quick (from nothing: profile, train, search,
#      export, benchmark), its report copied into the results,
#   3. benchmarks/distill_speed.py on CUDA, on the run's supernet and its 4x student (bf16 checked).
# Each step has its own time limit (150 + 270 + 120 s) and its log in the results; summary.txt says
# what ran, its exit status and seconds, and what was skipped and why. Without a CUDA GPU every step
# is skipped, and the script says so and exits 0: that is what it does on a CPU-only machine.
set -uo pipefail
cd "$(dirname "$0")/.."
res=${1:-${OUT:-device-check}}
mkdir -p "$res"
: > "$res/summary.txt"
log() { echo "$*" | tee -a "$res/summary.txt"; }

python=${PYTHON:-python3}
if ls .whl/*.whl > /dev/null 2>&1; then
    "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        && export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH} \
        || log "could not install the wheels of .whl/: steps that need them may fail"
else
    log "no .whl/ folder: the packages this machine lacks (model2vec, for the benchmark's peer) are not installed"
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
if [ -f .bundle/bundle.json ]; then
    export PIPELINE_BUNDLE=$PWD/.bundle
else
    log "no .bundle/ (python -m pipeline bundle .bundle): the defaults need their pip packages here"
fi
export PIPELINE_CACHE=${PIPELINE_CACHE:-/tmp/pipeline-cache} PYTHONUNBUFFERED=1
log "$(date -u +%FT%TZ) commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown) on $(hostname)"
"$python" -c "import torch; print('torch', torch.__version__)" 2>&1 | tee -a "$res/summary.txt"

if ! "$python" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)" 2> /dev/null; then
    log "SKIPPED gpu tests, run --device gpu --budget 4x --quick, distill_speed on CUDA: no CUDA GPU here" \
        "(torch.cuda.is_available() is False or torch is missing)"
    exit 0
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1 | tee -a "$res/summary.txt"

step() {  # step NAME SECONDS COMMAND...: the command under a time limit, its output in NAME.log
    local name=$1 limit=$2 start rc
    shift 2
    start=$(date +%s)
    timeout "$limit" "$@" > "$res/$name.log" 2>&1
    rc=$?
    log "$name: exit $rc after $(( $(date +%s) - start )) s$([ $rc = 124 ] && echo " (stopped at its $limit s limit)")"
    return $rc
}

step gpu-tests 150 "$python" -m pytest -m gpu -q -p no:cacheprovider
run=/tmp/device-check-run
step run-gpu-4x 270 "$python" -m pipeline run --device gpu --budget 4x --quick --out "$run"
for f in report.md report.json; do
    [ -f "$run/benchmark/$f" ] && cp "$run/benchmark/$f" "$res/$f"
done
arch=$(ls "$run"/search/arch_*.json 2> /dev/null | head -n 1)
if [ -n "$arch" ] && [ -f "$run/train/train_summary.json" ]; then
    step distill-speed-cuda 120 "$python" benchmarks/distill_speed.py --device gpu --train-dir "$run/train" \
        --arch "$arch" --steps 10 --rounds 3 --bf16-check on
else
    log "SKIPPED distill_speed on CUDA: the run left no trained supernet and searched student"
fi
exit 0
