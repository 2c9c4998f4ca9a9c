#!/usr/bin/env bash
# One command for the GPU figures: LITE (h=40) vs exact vs full back-propagation for ProtoNets + EfficientNet-B0
# and Simple CNAPs + FiLM EfficientNet-B0 at 224 px, N in {100, 500, 1000}, float32 and
# mixed_bfloat16, plus the Meta-Dataset pipeline's images/s against what the steps consume; then the
# steps again with LiteConfig.remat=True. Writes OUTPUT.json/.md and OUTPUT_remat.json/.md (default
# bench_out/gpu). Sized for < 15 minutes on one modern GPU (two runs, a 7-minute budget each):
# rows not started within the time budget are reported as skipped, never silently dropped (N is the
# outer loop, so a cut-short run still compares everything at the smaller N), and full
# back-propagation rows predicted to need more than 120 GiB are skipped with their prediction.
#
#   tools/benchmark_gpu.sh [OUTPUT]             # on the GPU machine
#   tools/benchmark_gpu.sh --dry_run [OUTPUT]   # the same plan at tiny sizes on a CPU (a test runs it)
set -euo pipefail
PYTHON=${PYTHON:-python}
DRY_RUN=0
if [[ "${1:-}" == "--dry_run" ]]; then
  DRY_RUN=1
  shift
fi
OUTPUT=$(realpath -m "${1:-bench_out/gpu}")  # relative to where the script is called from
cd "$(dirname "$0")/.."
if (( DRY_RUN )); then
  SIZES=(--gin_file=gin/benchmarks/tiny.gin --image_size=32 --support_sizes=8 --h=4 --chunk_size=4
         --query_size=4 --steps=1 --classes=6 --images_per_class=10 --record_size=40 --episodes=3 --warmup=1)
else
  SIZES=(--gin_file=gin/benchmarks/gpu.gin --image_size=224 --support_sizes=100,500,1000 --h=40 --chunk_size=40
         --query_size=40 --steps=2 --episodes=20 --memory_limit_gb=120 --time_budget_s=420 --case_timeout_s=150)
fi
"$PYTHON" -m tools.benchmark --case=pipeline,learner --learner=protonets,simple_cnaps --modes=lite,exact,full \
  --dtype_policy=float32,mixed_bfloat16 --sources=1 "${SIZES[@]}" --output="$OUTPUT"
# The same steps with rematerialisation (issue 19): OUTPUT_remat.json / .md
exec "$PYTHON" -m tools.benchmark --case=learner --learner=protonets,simple_cnaps --modes=lite,exact,full \
  --dtype_policy=float32,mixed_bfloat16 --gin_bindings=LiteConfig.remat=True "${SIZES[@]}" --output="${OUTPUT}_remat"
