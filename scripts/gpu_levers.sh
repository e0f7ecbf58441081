#!/usr/bin/env bash
# Speed levers for vitkit, each measured next to timm in the same process (docs/benchmarks.md).
#   OUT=results bash scripts/gpu_levers.sh b16|small|autotune|round2|fp8
set -u
export PYTHONPATH=$PWD/src${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
OUT=${OUT:-bench_out}; mkdir -p "$OUT"
run() { python3 -m vitkit bench "$@" --json 2>>"$OUT/levers.log" | tail -n 1 >>"$OUT/levers.jsonl"; tail -n 14 "$OUT/levers.log"; }
V=(--speed "" --speed cudnn --speed bf16_residual --speed patch_matmul --speed cudnn,bf16_residual,patch_matmul)
case "${1:-b16}" in
  b16) run --model vit_b16 --img-size 224 --batch 256 --mode train --mode infer --compare timm --compile "${V[@]}" ;;
  small) run --model vit_s4 --img-size 32 --batch 512 --depth 7 --num-classes 10 --mode train --mode infer --compare timm --compile "${V[@]}" ;;
  autotune) run --model vit_s4 --img-size 32 --batch 512 --depth 7 --num-classes 10 --mode train --compare timm --compile --compile-mode max-autotune-no-cudagraphs --speed "" --speed cudnn,bf16_residual ;;
  round2)
    run --model vit_b16 --img-size 224 --batch 256 --mode infer --mode train --compare timm --compile --speed bf16_residual,patch_matmul
    run --model vit_s4 --img-size 32 --batch 512 --depth 7 --num-classes 10 --mode train --compare timm --compile --compile-mode reduce-overhead --speed bf16_residual,patch_matmul
    run --model vit_s4 --img-size 32 --batch 512 --depth 7 --num-classes 10 --mode train --compare timm --compile --compile-mode max-autotune-no-cudagraphs --speed bf16_residual,patch_matmul ;;
  fp8)  # needs torchao (carried as a wheel, see docs/benchmarks.md)
    run --model vit_b16 --img-size 224 --batch 256 --mode train --mode infer --compare timm --compile --speed bf16_residual,patch_matmul --speed bf16_residual,patch_matmul,fp8
    run --model vit_s4 --img-size 32 --batch 512 --depth 7 --num-classes 10 --mode train --compare timm --compile --speed bf16_residual,patch_matmul,fp8 ;;
esac
