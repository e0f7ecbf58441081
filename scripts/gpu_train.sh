#!/usr/bin/env bash
# On the GPU machine: unpack CIFAR-10 from the carried .data/, then run `vitkit train` with the
# given arguments and keep its summary. Usage: OUT=out bash scripts/gpu_train.sh NAME [train args...]
set -u
export PYTHONPATH=$PWD/src${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
OUT=${OUT:-out}; mkdir -p "$OUT"
[ -d /tmp/cifar/cifar-10-batches-py ] || python3 .data/pack.py unpack .data/cifar10.npz /tmp/cifar >/dev/null
name=$1; shift
python3 -m vitkit train --data cifar10:/tmp/cifar --out "/tmp/runs/$name" --json --progress false "$@" \
  2>"$OUT/$name.err" | tail -n 1 >"$OUT/$name.json"
cp "/tmp/runs/$name/metrics.jsonl" "$OUT/$name.metrics.jsonl" 2>/dev/null
echo "$name: $(cat "$OUT/$name.json")"; tail -n 3 "$OUT/$name.err"
