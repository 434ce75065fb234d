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
#        bash benchmarks/gpu_ablation.sh --smoke [OUTDIR]   (seconds on a CPU: `ablation.py --smoke`,
#   1 row, 1 seed, 1 epoch on 64 faces of $FERKIT_SHARED or ../shared; OUTDIR and RUNS temporary
#   folders by default; a cut by the cap is a failure)
set -u
smoke=()
if [ "${1:-}" = "--smoke" ]; then
  data=$(realpath -m "${FERKIT_SHARED:-$(dirname "$0")/../../shared}/data/fer2013/fer2013.csv.gz")
  out=$(realpath -m "${2:-$(mktemp -d "${TMPDIR:-/tmp}/ferkit-bench-smoke-XXXXXX")}")
  cap=120
  smoke=(--smoke --results-dir "$out")
  if [ -z "${RUNS:-}" ]; then
    RUNS=$(mktemp -d "${TMPDIR:-/tmp}/ferkit-smoke-runs-XXXXXX")
    trap 'rm -rf "$RUNS"' EXIT  # the rows' folders are copied into OUTDIR/runs
  fi
  EXTRA="limit_train=64 limit_val=32 compile=false ${EXTRA:-}"  # ablation.py --smoke: epochs=1
else
  data=$(realpath "${1:?usage: gpu_ablation.sh DATA OUTDIR [SECONDS]}")
  out=$(realpath -m "${2:?usage: gpu_ablation.sh DATA OUTDIR [SECONDS]}")
  cap=${3:-540}
fi
[ -f "$data" ] || { echo "gpu_ablation.sh: $data not found: the FER2013 challenge CSV" >&2; exit 1; }
cd "$(dirname "$0")/.." || exit 1
[ ${#smoke[@]} -gt 0 ] && [ -z "${PYTHON:-}" ] && [ -x .venv/bin/python ] && PYTHON=.venv/bin/python
py=${PYTHON:-python3}
runs=${RUNS:-runs/ablation-paper}
mkdir -p "$out"
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "no GPU"
  "$py" -c 'import torch; print("torch", torch.__version__, "cuda", torch.cuda.is_available())'; } \
  > "$out/device.txt" 2>&1
start=$(date +%s)
# shellcheck disable=SC2086  # EXTRA is a list of overrides
timeout "$cap" "$py" benchmarks/ablation.py --data "$data" --config configs/paper.toml --seeds 0 1 \
  --jobs "${JOBS:-16}" --runs "$runs" --out "$out/ablation" "${smoke[@]}" \
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
if [ ${#smoke[@]} -gt 0 ]; then
  cat "$out/exits.txt"
  [ "$rc" -eq 0 ] || { tail -n 5 "$out/ablation.log"; echo "gpu_ablation.sh --smoke failed (logs in $out)"; }
  [ "$rc" -eq 0 ] && echo "results in $out"
  exit "$rc"
fi
[ "$rc" -eq 124 ] && exit 0
exit "$rc"
