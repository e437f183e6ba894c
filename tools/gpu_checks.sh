#!/usr/bin/env bash
# The GPU checks and benchmarks, as one script for a short lease of a GPU machine.
#
#   bash tools/gpu_checks.sh [OUTDIR] [SECONDS]
#
# Runs, most important first, until SECONDS (default 450) have passed: the CUDA tests
# (tests/test_cuda.py), the inference benchmark at the KITTI sizes and at 1080p in float32 and
# bfloat16, the training-step benchmark, torch.compile of the inference forward, and the
# training step compiled. Output goes to OUTDIR (default ./gpu-out): gpu.log, tests.log,
# infer.log, train.log and the inference benchmark's JSON files (few files: a lease returns 8).
# It needs ../shared/conformance and ../shared/data/middlebury/2003/Cones beside the repo, as
# the CPU suite does. Without an installed ipassr it uses the checkout (PYTHONPATH).
set -u
out=${1:-gpu-out}
deadline=$(( $(date +%s) + ${2:-450} ))
mkdir -p "$out" && out=$(cd "$out" && pwd)
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
python=${PYTHON:-python3}

step() {  # step NAME LOG COMMAND...: run within the time left, output to the console and LOG.log
    local name=$1 log="$out/$2.log" left=$(( deadline - $(date +%s) ))
    shift 2
    if (( left < 20 )); then
        echo "== $name: skipped, out of time" | tee -a "$log"
        return
    fi
    echo "== $name ($(date -u +%T), ${left} s left): $*" | tee -a "$log"
    timeout "$left" "$@" 2>&1 | tee -a "$log"
    echo "== $name: exit ${PIPESTATUS[0]}" | tee -a "$log"
}

nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv | tee "$out/gpu.log"
"$python" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda,
      'cudnn', torch.backends.cudnn.version())" | tee -a "$out/gpu.log"

step cuda_tests tests "$python" -m pytest -q -p no:cacheprovider tests/test_cuda.py
step infer_kitti infer "$python" bench/infer.py --device cuda --sizes 310x93:4,621x187:2 \
    --dtypes float32,bfloat16 --repeats 5 --rounds 2 --json "$out/infer_kitti.json"
step infer_1080p infer "$python" bench/infer.py --device cuda --sizes 1920x1080:2 \
    --dtypes float32,bfloat16 --repeats 3 --rounds 1 --json "$out/infer_1080p.json"
step train_step train "$python" bench/train_step.py --device cuda --warmup 3 --repeats 10 \
    --variants eager,trainer,channels_last,bf16+channels_last
# KITTI sizes are launch-bound on a GPU: would CUDA graphs (torch.compile's reduce-overhead
# mode, of the plain forward) pay? (Not measured yet: added after the 2026-11-26 lease.)
step infer_compiled infer "$python" bench/infer.py --device cuda --sizes 310x93:4,621x187:2 \
    --dtypes float32,bfloat16 --repeats 5 --rounds 1 --with-compiled \
    --compile-mode reduce-overhead --json "$out/infer_compiled.json"
step train_compile train "$python" bench/train_step.py --device cuda --warmup 2 --repeats 10 \
    --variants eager,bf16+channels_last+compile
echo "== done $(date -u +%T)"
