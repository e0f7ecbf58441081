#!/usr/bin/env bash
# The side-by-side GPU benchmark behind docs/benchmarks.md. Usage on the GPU machine:
#   OUT=results bash scripts/gpu_bench_suite.sh
# Each line: one `vitkit bench` process, JSON summary appended to $OUT/bench.jsonl.
set -u
export PYTHONPATH=src PYTHONUNBUFFERED=1
OUT=${OUT:-bench_out}; mkdir -p "$OUT"
run() { python3 -m vitkit bench "$@" --json 2>>"$OUT/bench.log" | tail -n 1 >>"$OUT/bench.jsonl"; tail -n 12 "$OUT/bench.log"; }
# ViT-B/16 at 224, batch 256: eager and compiled, training step and inference
run --model vit_b16 --img-size 224 --batch 256 --mode train --mode infer --compare timm,hf
run --model vit_b16 --img-size 224 --batch 256 --mode train --mode infer --compare timm --compile
# CIFAR-scale: width 384, depth 7, patch 4 at 32x32, batch 512, 10 classes
run --model vit_s4 --img-size 32 --batch 512 --depth 7 --num-classes 10 --mode train --mode infer --compare timm --compile
