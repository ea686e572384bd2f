#!/usr/bin/env bash
# GPU check (issue 5): document encoding throughput in fp16 and exact MaxSim over 1,000
# candidates, GPU against CPU. Runs in well under 8 minutes on one H100.
#
#   here:      bash tests/benchmarks/gpu_prepare.sh
#   there:     bash tests/benchmarks/gpu_check.sh OUT_DIR      (carry .whl and .gpu)
#
# Results: OUT_DIR/gpu_check.json and a one-screen summary on stdout.
set -euo pipefail
out=${1:?usage: gpu_check.sh OUT_DIR}
mkdir -p "$out"
cd "$(dirname "$0")/../.."
if [ -d .whl ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/colbridge-site .whl/*.whl
    export PYTHONPATH=/tmp/colbridge-site
fi
export PYTHONPATH="core/src:${PYTHONPATH:-}" HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
timeout 450 python3 tests/benchmarks/gpu_check.py "$out"
