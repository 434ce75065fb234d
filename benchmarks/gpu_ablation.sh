#!/usr/bin/env bash
# The paper's ablation at full budget, as one prepared job for a lent GPU machine: the 8 rows of
# benchmarks/ablation.py x 2 seeds, each with the full recipe of configs/paper.toml (40 epochs,
# early stopping), JOBS rows at once on the one card, capped at SECONDS of wall clock.
# A cut-short job resumes with the same command: rows with test metrics are reused, the others
# continue from their checkpoints under RUNS. On the same (warm) machine that is automatic; on a
# fresh one, copy OUTDIR/runs/* back into RUNS and carry RUNS with the job. The table lands in
# OUTDIR/ablation.{md,json}; copy them to results/ablation.{md,json} when every row is in.
# Usage: bash benchmarks/gpu_ablation.sh DATA OUTDIR [SECONDS]
#   JOBS=16 (rows at once), RUNS=runs/ablation-paper, MACHINE="..." (named in the table),
#   EXTRA="k=v ..." (overrides for every row, e.g. EXTRA="limit_train=256 limit_val=256 epochs=1
#   compile=false" for a dry run on a CPU). Exit status: 0 when every row finished or the cap cut
#   the job (see OUTDIR/exits.txt), otherwise the study's.
set -u
data=$(realpath "${1:?usage: gpu_ablation.sh DATA OUTDIR [SECONDS]}")
out=$(realpath -m "${2:?usage: gpu_ablation.sh DATA OUTDIR [SECONDS]}")
cap=${3:-540}
py=${PYTHON:-python3}
cd "$(dirname "$0")/.." || exit 1
runs=${RUNS:-runs/ablation-paper}
mkdir -p "$out"
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "no GPU"
  "$py" -c 'import torch; print("torch", torch.__version__, "cuda", torch.cuda.is_available())'; } \
  > "$out/device.txt" 2>&1
start=$(date +%s)
# shellcheck disable=SC2086  # EXTRA is a list of overrides
timeout "$cap" "$py" benchmarks/ablation.py --data "$data" --config configs/paper.toml --seeds 0 1 \
  --jobs "${JOBS:-16}" --runs "$runs" --out "$out/ablation" \
  --machine "${MACHINE:-$(head -1 "$out/device.txt")}, ${JOBS:-16} rows at once" -- threads=1 ${EXTRA:-} \
  > "$out/ablation.log" 2>&1
rc=$?
echo "ablation: exit $rc after $(( $(date +%s) - start )) s" >> "$out/exits.txt"
mkdir -p "$out/runs"
for row in "$runs"/row*-seed*; do  # every row's folder (checkpoints too, for a resume elsewhere) and log
  [ -d "$row" ] || continue
  cp -r "$row" "$out/runs/"
  cp "$row.log" "$out/runs/" 2>/dev/null
done
[ "$rc" -eq 124 ] && exit 0
exit "$rc"
