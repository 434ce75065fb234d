#!/usr/bin/env bash
# The paper's ablation at full budget, as one prepared job for a lent GPU machine: the 8 rows of
# benchmarks/ablation.py x 2 seeds, each with the full recipe of configs/paper.toml (40 epochs,
# early stopping), JOBS rows at once on the one card, capped at SECONDS of wall clock. A cut-short
# job resumes with the same command (rows with test metrics are reused, the others continue from
# their checkpoints). The table lands in OUTDIR/ablation.{md,json}, each row's log and history
# beside it; copy them to results/ablation.{md,json} when every row is in.
# Usage: bash benchmarks/gpu_ablation.sh DATA OUTDIR [SECONDS]
#   JOBS=16 (rows at once), MACHINE="..." (named in the table), EXTRA="k=v ..." (overrides for
#   every row, e.g. EXTRA="limit_train=256 limit_val=256 epochs=1 compile=false" for a CPU dry run)
set -u
data=${1:?usage: gpu_ablation.sh DATA OUTDIR [SECONDS]}
out=${2:?usage: gpu_ablation.sh DATA OUTDIR [SECONDS]}
cap=${3:-540}
py=${PYTHON:-python3}
runs=${RUNS:-runs/ablation-full}
mkdir -p "$out"
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "no GPU"
  $py -c 'import torch; print("torch", torch.__version__, "cuda", torch.cuda.is_available())'; } \
  > "$out/device.txt" 2>&1
start=$(date +%s)
# shellcheck disable=SC2086  # EXTRA is a list of overrides
timeout "$cap" "$py" benchmarks/ablation.py --data "$data" --config configs/paper.toml --seeds 0 1 \
  --jobs "${JOBS:-16}" --runs "$runs" --out "$out/ablation" \
  --machine "${MACHINE:-$(head -1 "$out/device.txt")}, ${JOBS:-16} rows at once" threads=1 ${EXTRA:-} \
  > "$out/ablation.log" 2>&1
echo "ablation: exit $? after $(( $(date +%s) - start )) s" >> "$out/exits.txt"
for row in "$runs"/row*-seed*; do  # logs and histories, not checkpoints
  [ -d "$row" ] || continue
  name=$(basename "$row")
  mkdir -p "$out/runs/$name"
  cp "$row".log "$out/runs/$name.log" 2>/dev/null
  cp "$row"/history.csv "$row"/metrics_test.json "$out/runs/$name/" 2>/dev/null
done
exit 0
