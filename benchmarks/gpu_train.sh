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
set -u
data=${1:?usage: gpu_train.sh DATA OUTDIR [SECONDS]}
out=${2:?usage: gpu_train.sh DATA OUTDIR [SECONDS]}
cap=${3:-420}
py=${PYTHON:-python3}
mkdir -p "$out"
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  $py -c 'import torch; print("torch", torch.__version__, "cuda", torch.cuda.is_available())'; } \
  > "$out/device.txt" 2>&1

train() {  # NAME SECONDS ARGS...: one `ferkit train` run, its log in OUTDIR/NAME.log
  local name=$1 limit=$2; shift 2
  # shellcheck disable=SC2086  # EXTRA is a list of overrides
  timeout "$limit" "$py" -m ferkit train --data "$data" --out "$out/$name" --resume "$@" ${EXTRA:-} \
    > "$out/$name.log" 2>&1
  echo "$name: exit $?" >> "$out/exits.txt"
}

start=$(date +%s)
train speed 0 --config configs/paper-wide.toml epochs=3 test_at_end=false
echo "speed phase: $(( $(date +%s) - start )) s" >> "$out/exits.txt"

kd=configs/default.toml
# shellcheck disable=SC2086
{
  train paper "$cap" --config configs/paper-wide.toml threads=3 &
  train half-paper "$cap" --config configs/paper.toml threads=3 &
  train half-kd "$cap" --config $kd threads=3 &
  train half-kd-t4 "$cap" --config $kd distill_alpha=0.9 distill_temperature=4.0 threads=3 &
  train half-ce "$cap" --config $kd 'teachers=[]' label_smoothing=0.1 threads=3 &
  wait
}
echo "total: $(( $(date +%s) - start )) s" >> "$out/exits.txt"
