#!/usr/bin/env bash
# On a GPU machine: the one-tile attention kernel's GPU test, its micro-benchmark against SDPA, the
# speedrun step's kernel profile with and without it, and the speed issue's benches next to timm.
#   OUT=out bash scripts/gpu_tile_check.sh
set -u
export PYTHONPATH=$PWD/src${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
OUT=${OUT:-out}; mkdir -p "$OUT"
python3 -c "import torch, triton; print(torch.__version__, triton.__version__, torch.cuda.get_device_name())" >"$OUT/versions.txt"
python3 -m pytest -q -x tests/test_tile_attention.py >"$OUT/gpu_test.txt" 2>&1
python3 scripts/tile_attention_bench.py ${TILE_SHAPES:-} >"$OUT/tile_bench.jsonl" 2>"$OUT/tile_bench.err"
SPEEDRUN=(--model vit_ti4 --img-size 32 --batch 256 --impls vitkit --set embed_dim=192 --set depth=9
          --set num_heads=12 --set mlp_dim=384 --set patch_size=5 --set stride=3 --set num_classes=10)
for speed in bf16_residual bf16_residual,tile; do
  python3 scripts/gpu_profile.py "${SPEEDRUN[@]}" --speed "$speed" >>"$OUT/profile.jsonl" 2>>"$OUT/profile.err"
done
BENCH=(--mode train --compare timm --compile --json --speed bf16_residual,patch_matmul --speed bf16_residual,patch_matmul,tile)
python3 -m vitkit bench --model vit_s4 --img-size 32 --batch 512 --depth 7 --num-classes 10 "${BENCH[@]}" \
  2>>"$OUT/bench.err" | tail -n 1 >>"$OUT/bench.jsonl"
[ -z "${SKIP_B16:-}" ] && python3 -m vitkit bench --model vit_b16 --img-size 224 --batch 256 --mode infer "${BENCH[@]}" \
  2>>"$OUT/bench.err" | tail -n 1 >>"$OUT/bench.jsonl"
