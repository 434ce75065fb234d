#!/usr/bin/env bash
# ferkit training on a GPU, as one prepared job for a lent machine:
#   1. the full-width paper recipe (configs/paper-wide.toml) alone on the GPU for 3 epochs:
#      images/s per epoch (speed/history.csv);
#   2. in parallel, capped at SECONDS of wall clock: the full-width paper recipe, the paper recipe
#      at ferkit's widths (configs/paper.toml), and that network distilled from `large`
#      (configs/default.toml, two distillation settings and a no-teacher control). Every run
#      resumes with the same command if the cap cut it short. (On 2026-11-28 the half-width
#      configs were passed as overrides of the full-width file; results/gpu-h200 has the commands.)
# Usage: bash benchmarks/gpu_train.sh DATA OUTDIR [SECONDS]   (EXTRA="k=v ..." adds overrides
# to every run, e.g. EXTRA="limit_train=640 epochs=1" for a dry run on a CPU)
#        bash benchmarks/gpu_train.sh --smoke [OUTDIR]   (from the repository root, on a CPU, in
# seconds: 1 epoch on 128 real faces of $FERKIT_SHARED or ../shared, one thread each; only speed,
# half-kd and half-ce: the others differ from these in numbers only; OUTDIR a temporary folder
# by default; exit status 1 when a run failed)
set -u
smoke=false
if [ "${1:-}" = "--smoke" ]; then
  smoke=true
  [ -z "${PYTHON:-}" ] && [ -x .venv/bin/python ] && PYTHON=.venv/bin/python
  out=${2:-$(mktemp -d "${TMPDIR:-/tmp}/ferkit-bench-smoke-XXXXXX")}
  slice=$(mktemp -d "${TMPDIR:-/tmp}/ferkit-smoke-data-XXXXXX")
  trap 'rm -rf "$slice"' EXIT
  # 128 Training, 32 PublicTest and 32 PrivateTest faces (and their FER+ votes) of the shared CSV
  data=$("${PYTHON:-python3}" -c 'import sys; sys.path.insert(0, "benchmarks"); from pathlib import Path
from ablation import fer_slice; print(fer_slice(sys.argv[1], Path(sys.argv[2]), 128, 32, 32))' \
    "${FERKIT_SHARED:-../shared}/data/fer2013/fer2013.csv.gz" "$slice") || exit 1
  cap=120
  EXTRA="limit_train=128 limit_val=32 epochs=1 compile=false threads=1 ${EXTRA:-}"
else
  data=${1:?usage: gpu_train.sh DATA OUTDIR [SECONDS]}
  out=${2:?usage: gpu_train.sh DATA OUTDIR [SECONDS]}
  cap=${3:-420}
fi
py=${PYTHON:-python3}
[ -e "$data" ] || { echo "gpu_train.sh: $data not found: the FER2013 data to train on" >&2; exit 1; }
mkdir -p "$out"
$smoke && rm -f "$out/exits.txt"  # a smoke run into an earlier one's folder judges its own runs only
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  $py -c 'import torch; print("torch", torch.__version__, "cuda", torch.cuda.is_available())'; } \
  > "$out/device.txt" 2>&1

train() {  # NAME SECONDS ARGS...: one `ferkit train` run, its log in OUTDIR/NAME.log
  local name=$1 limit=$2 resume=(); shift 2
  [ -f "$out/$name/checkpoint.pt" ] && resume=(--resume)  # train refuses --resume without one
  # shellcheck disable=SC2086  # EXTRA is a list of overrides
  timeout "$limit" "$py" -m ferkit train --data "$data" --out "$out/$name" "${resume[@]}" "$@" ${EXTRA:-} \
    > "$out/$name.log" 2>&1
  echo "$name: exit $?" >> "$out/exits.txt"
}

start=$(date +%s)
train speed 0 --config configs/paper-wide.toml epochs=3 test_at_end=false
echo "speed phase: $(( $(date +%s) - start )) s" >> "$out/exits.txt"

kd=configs/default.toml
# Its teacher is pinned weights (name@hash) that no longer ship: copied from git history into
# ~/.cache/ferkit/pins (or $FERKIT_PINS, which a lent machine without the history can be given).
for ref in $(grep -o '[a-z-]*@[0-9a-f]\{8,\}' "$kd" | sort -u); do
  "$py" -m ferkit model pin "$ref" >> "$out/pins.log" 2>&1 \
    || { echo "gpu_train.sh: cannot fetch $ref for $kd: see $out/pins.log" >&2; exit 1; }
done
# shellcheck disable=SC2086
{
  $smoke || train paper "$cap" --config configs/paper-wide.toml threads=3 &
  $smoke || train half-paper "$cap" --config configs/paper.toml threads=3 &
  train half-kd "$cap" --config $kd threads=3 &
  $smoke || train half-kd-t4 "$cap" --config $kd distill_alpha=0.9 distill_temperature=4.0 threads=3 &
  train half-ce "$cap" --config $kd 'teachers=[]' label_smoothing=0.1 threads=3 &
  wait
}
echo "total: $(( $(date +%s) - start )) s" >> "$out/exits.txt"
if $smoke; then  # every run must have finished
  cat "$out/exits.txt"
  failed=$(grep ': exit ' "$out/exits.txt" | grep -v ': exit 0$' | cut -d: -f1 | tr '\n' ' ')
  for name in $failed; do tail -n 5 "$out/$name.log"; done
  [ -z "$failed" ] || { echo "gpu_train.sh --smoke: failed: ${failed}(logs in $out)"; exit 1; }
  echo "results in $out"
fi
