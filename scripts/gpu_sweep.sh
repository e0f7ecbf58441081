#!/usr/bin/env bash
# On a GPU machine: run a sweep file's jobs, one queue per GPU, queues in parallel.
# Usage: OUT=out SWEEP_LIMIT=560 bash scripts/gpu_sweep.sh scripts/sweeps/NAME.txt
# Line format: QUEUE NAME TRAIN-ARGS...   (QUEUE "1" or "1b": GPU 1; lines of one queue run in turn,
# queues run at the same time, so "1" and "1b" share GPU 1). "QUEUE !NAME COMMAND..." runs a shell
# command instead of `vitkit train` (its stdout goes to $OUT/NAME.txt). '#' lines are comments.
# Whatever the time limit cuts short still leaves its metrics.jsonl; all results come back as $OUT/sweep.tgz.
set -u
export PYTHONPATH=$PWD/src${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
OUT=${OUT:-out}; mkdir -p "$OUT"; LIMIT=${SWEEP_LIMIT:-560}
python3 .data/pack.py unpack .data/cifar10.npz /tmp/cifar >/dev/null
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader >"$OUT/gpus.txt"
python3 -c "import torch; print(torch.__version__, torch.cuda.device_count())" >>"$OUT/gpus.txt"
run_queue() {
  local queue=$1; local gpu=${queue%%[!0-9]*}
  grep -v '^\s*#' "$2" | awk -v q="$queue" '$1 == q' | while read -r _ name args; do
    if [[ $name == !* ]]; then
      CUDA_VISIBLE_DEVICES=$gpu bash -c "$args" >"$OUT/${name#!}.txt" 2>"$OUT/${name#!}.err"
    else
      # shellcheck disable=SC2086
      CUDA_VISIBLE_DEVICES=$gpu bash scripts/gpu_train.sh "$name" $args
    fi
  done
}
pids=()
for queue in $(grep -v '^\s*#' "$1" | awk 'NF {print $1}' | sort -u); do
  run_queue "$queue" "$1" & pids+=($!)
done
any_alive() { for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && return 0; done; return 1; }
start=$SECONDS
while any_alive && [ $((SECONDS - start)) -lt "$LIMIT" ]; do sleep 2; done
if [ $((SECONDS - start)) -ge "$LIMIT" ]; then
  echo "sweep: time limit ${LIMIT}s reached; stopping what still runs"; kill "${pids[@]}" 2>/dev/null; pkill -f python3; sleep 3
fi
for d in /tmp/runs/*/; do cp "$d/metrics.jsonl" "$OUT/$(basename "$d").metrics.jsonl" 2>/dev/null; done
python3 scripts/sweep_summary.py "$OUT"
# the device returns at most 8 files: everything travels as one archive
(cd "$OUT" && tar czf /tmp/sweep.tgz --exclude sweep.tgz . && find . -mindepth 1 -delete && mv /tmp/sweep.tgz .)
echo "sweep done: $OUT/sweep.tgz"
