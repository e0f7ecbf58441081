#!/usr/bin/env bash
# Speed levers for vitkit, each measured next to timm in the same process (docs/benchmarks.md).
#   OUT=results bash scripts/gpu_levers.sh b16|small|autotune|round2|fp8|kernels|round5-infer|round5-train|round5-small|round5-final|round5-h100|round5-autotune|round6-check|round6-bias|round6-final|round6-host|round7-fold|round7-graphs|round7-h100|round7-class|round7-final|round8-check|round9-libops|round9-small|round9-b16|round9-scratch|round9-final|round9-h100|round10-tail|round10-persistent|round10-final|round10-h100|round10-profiles|round11-residual-small|round11-residual-b16|round11-h100|round11-profiles|round12-dgelu-sum|round12-memsets|round12-sweep|round12-final|round12-h100|round12-h200|round13-origin|round13-final|round13-wgrad|round13-wgrad-ab|round13-pdl|round13-pdl-option|round13-b16-dgelu|round13-h200-profile|round14-probe|round14-b16-tune|round14-ab|round14-b16|round14-fair|round14-h100|round15-ab|round15-nopdl|round15-b16|round15-h100|round16-clocks|round16-cls|round16-settle|round16-h100|round16-profile|round16-cls2|round16-final|round16-confirm|round16-h100-infer
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
  kernels)  # round 5: GPU tests of the attention kernel and the fused GELU, attention micro-benchmark
    python3 -m pytest -q tests/test_tile_attention.py tests/test_linear_gelu.py >"$OUT/gpu_test.txt" 2>&1; tail -n 3 "$OUT/gpu_test.txt"
    python3 scripts/tile_attention_bench.py ${TILE_SHAPES:-} >"$OUT/tile_bench.jsonl" 2>"$OUT/tile_bench.err"; cat "$OUT/tile_bench.jsonl" ;;
  round5-infer)
    run --model vit_b16 --img-size 224 --batch 256 --mode infer --compare timm --compile --speed bf16_residual,patch_matmul \
      --speed bf16_residual,patch_matmul,fused_gelu --speed bf16_residual,patch_matmul,tile --speed bf16_residual,patch_matmul,fused_gelu,tile ;;
  round5-train)
    run --model vit_b16 --img-size 224 --batch 256 --mode train --compare timm --compile --speed bf16_residual,patch_matmul \
      --speed bf16_residual,patch_matmul,fused_gelu --speed bf16_residual,patch_matmul,tile --speed bf16_residual,patch_matmul,fused_gelu,tile ;;
  round5-final)  # B/16 with the chosen launch sizes; then CUDA graphs for both implementations
    run --model vit_b16 --img-size 224 --batch 256 --mode train --mode infer --compare timm --compile --speed bf16_residual,patch_matmul \
      --speed bf16_residual,patch_matmul,fused_gelu --speed bf16_residual,patch_matmul,fused_gelu,tile
    run --model vit_b16 --img-size 224 --batch 256 --mode train --compare timm --compile --compile-mode reduce-overhead \
      --speed bf16_residual,patch_matmul,fused_gelu,tile ;;
  round5-h100)  # the round 5 configuration on an H100 (docs/benchmarks.md section 9)
    run --model vit_b16 --img-size 224 --batch 256 --mode train --mode infer --compare timm --compile --speed bf16_residual,patch_matmul \
      --speed bf16_residual,patch_matmul,fused_gelu --speed bf16_residual,patch_matmul,fused_gelu,tile
    run --model vit_s4 --img-size 32 --batch 512 --depth 7 --num-classes 10 --mode train --mode infer --compare timm --compile \
      --speed bf16_residual,patch_matmul,fused_gelu,tile ;;
  round5-autotune)  # B/16 training: timm (default compile), vitkit default compile, vitkit max-autotune-no-cudagraphs
    python3 - <<'PY' | tee -a "$OUT/autotune.jsonl"
import json, time, torch
from vitkit.bench import bench_one, matmul_ceiling_tflops
from vitkit.variants import model_config
dev, speed = torch.device("cuda"), "bf16_residual,patch_matmul,fused_gelu,tile"
config, ceiling = model_config("vit_b16", img_size=224), matmul_ceiling_tflops(dev)
for impl, spd, mode in [("timm", "", None), ("vitkit", speed, None), ("vitkit", speed, "max-autotune-no-cudagraphs")]:
    start = time.time()
    row = bench_one(impl, config, "train", 256, dev, True, ceiling, 5, 10, 5, spd, mode).to_dict()
    print(json.dumps({**row, "compile_mode": mode, "wall_s": round(time.time() - start)}), flush=True)
PY
    ;;
  round6-check)  # round 6: GPU tests of the cuBLASLt epilogues, the MLP micro-benchmark, B/16 training next to timm
    python3 -m pytest -q tests/test_fused_mlp.py tests/test_linear_gelu.py >"$OUT/gpu_test.txt" 2>&1; tail -n 5 "$OUT/gpu_test.txt"
    python3 scripts/mlp_epilogue_bench.py >"$OUT/mlp_bench.jsonl" 2>"$OUT/mlp_bench.err"; cat "$OUT/mlp_bench.jsonl"; tail -n 5 "$OUT/mlp_bench.err"
    run --model vit_b16 --img-size 224 --batch 256 --mode train --compare timm --compile --speed bf16_residual,patch_matmul,tile \
      --speed bf16_residual,patch_matmul,fused_gelu,tile --speed bf16_residual,patch_matmul,fused_gelu,mlp_epilogues,tile ;;
  round6-bias)  # round 6: bias-gradient sums, then B/16 and CIFAR-scale training with mlp_epilogues and bias_grad
    python3 scripts/bias_grad_bench.py >"$OUT/bias_bench.jsonl" 2>"$OUT/bias_bench.err"; cat "$OUT/bias_bench.jsonl"; tail -n 3 "$OUT/bias_bench.err"
    python3 -m pytest -q tests/test_fused_mlp.py >"$OUT/gpu_test.txt" 2>&1; tail -n 2 "$OUT/gpu_test.txt"
    run --model vit_b16 --img-size 224 --batch 256 --mode train --compare timm --compile --speed bf16_residual,patch_matmul,fused_gelu,mlp_epilogues,tile \
      --speed bf16_residual,patch_matmul,fused_gelu,mlp_epilogues,bias_grad,tile
    run --model vit_s4 --img-size 32 --batch 512 --depth 7 --num-classes 10 --mode train --compare timm --compile \
      --speed bf16_residual,patch_matmul,fused_gelu,mlp_epilogues,tile --speed bf16_residual,patch_matmul,fused_gelu,mlp_epilogues,bias_grad,tile ;;
  round6-final)  # round 6 against round 5 and timm, B/16 and CIFAR-scale training (run on the H100 too)
    run --model vit_b16 --img-size 224 --batch 256 --mode train --compare timm --compile --speed bf16_residual,patch_matmul,fused_gelu,tile \
      --speed bf16_residual,patch_matmul,fused_gelu,mlp_epilogues,bias_grad,tile
    run --model vit_s4 --img-size 32 --batch 512 --depth 7 --num-classes 10 --mode train --compare timm --compile \
      --speed bf16_residual,patch_matmul,fused_gelu,tile --speed bf16_residual,patch_matmul,fused_gelu,mlp_epilogues,tile ;;
  round6-host)  # round 6: CIFAR-scale training, default compile and CUDA graphs (the H100 host-bound check)
    for m in default reduce-overhead; do
      run --model vit_s4 --img-size 32 --batch 512 --depth 7 --num-classes 10 --mode train --compare timm --compile \
        --compile-mode $m --speed bf16_residual,patch_matmul,fused_gelu,tile \
        --speed bf16_residual,patch_matmul,fused_gelu,mlp_epilogues,tile \
        --speed bf16_residual,patch_matmul,fused_gelu,mlp_epilogues,bias_grad,tile
    done ;;
  round7-fold)  # round 7: fold_norm (and the class-token-only final norm) on B/16 and CIFAR-scale training
    python3 -m pytest -q tests/test_fold_norm.py tests/test_model.py tests/test_fused_mlp.py >"$OUT/gpu_test.txt" 2>&1; tail -n 2 "$OUT/gpu_test.txt"
    R6=bf16_residual,patch_matmul,fused_gelu,mlp_epilogues,bias_grad,tile
    run --model vit_b16 --img-size 224 --batch 256 --mode train --compare timm --compile --speed $R6 --speed $R6,fold_norm
    S=bf16_residual,patch_matmul,fused_gelu,mlp_epilogues,tile
    run --model vit_s4 --img-size 32 --batch 512 --depth 7 --num-classes 10 --mode train --compare timm --compile \
      --speed $S --speed $S,fold_norm --speed $S,bias_grad,fold_norm ;;
  round7-graphs)  # round 7: B/16 training with fold_norm, CUDA graphs (both implementations) against default compile
    R7=bf16_residual,patch_matmul,fused_gelu,mlp_epilogues,bias_grad,tile,fold_norm
    for m in default reduce-overhead; do
      run --model vit_b16 --img-size 224 --batch 256 --mode train --compare timm --compile --compile-mode $m --speed $R7
    done ;;
  round7-h100)  # round 7 on an H100: B/16 with and without bias_grad; CIFAR-scale with CUDA graphs (host-bound there)
    R7=bf16_residual,patch_matmul,fused_gelu,mlp_epilogues,bias_grad,tile,fold_norm
    run --model vit_b16 --img-size 224 --batch 256 --mode train --compare timm --compile --speed $R7 \
      --speed bf16_residual,patch_matmul,fused_gelu,mlp_epilogues,tile,fold_norm
    run --model vit_s4 --img-size 32 --batch 512 --depth 7 --num-classes 10 --mode train --compare timm --compile \
      --compile-mode reduce-overhead --speed bf16_residual,patch_matmul,fused_gelu,mlp_epilogues,tile \
      --speed bf16_residual,patch_matmul,fused_gelu,mlp_epilogues,tile,fold_norm ;;
  round7-class)  # round 7: class token as vectors + patches as one tile (65 tokens): GPU tests, kernels, CIFAR-scale step
    python3 -m pytest -q tests/test_tile_attention.py >"$OUT/gpu_test.txt" 2>&1; tail -n 2 "$OUT/gpu_test.txt"
    python3 scripts/tile_attention_bench.py cifar_scale_b512 >"$OUT/tile_bench.jsonl" 2>"$OUT/tile_bench.err"; cat "$OUT/tile_bench.jsonl"
    python3 - <<'PY' | tee -a "$OUT/class_split.jsonl"
import json, torch
from vitkit.bench import bench_one, matmul_ceiling_tflops
from vitkit.layers import tile_attention
from vitkit.variants import model_config
dev, ceiling = torch.device("cuda"), matmul_ceiling_tflops(torch.device("cuda"))
config, launch = model_config("vit_s4", img_size=32, depth=7, num_classes=10), tile_attention.launch
speed = "bf16_residual,patch_matmul,fused_gelu,mlp_epilogues,tile,fold_norm"
for impl, spd, split in [("timm", "", True), ("vitkit", speed, True), ("vitkit", speed, False)]:
    tile_attention.launch = launch if split else (lambda n, d: launch(n, d)._replace(class_split=False))
    row = bench_one(impl, config, "train", 512, dev, True, ceiling, 5, 10, 5, spd, None).to_dict()
    print(json.dumps({**row, "class_split": split and impl == "vitkit"}), flush=True)
PY
    ;;
  round7-final)  # round 7's configurations against timm: B/16 and CIFAR-scale training (run on the H100 too)
    R7=bf16_residual,patch_matmul,fused_gelu,mlp_epilogues,bias_grad,tile,fold_norm
    run --model vit_b16 --img-size 224 --batch 256 --mode train --compare timm --compile --speed $R7
    for m in default reduce-overhead; do
      run --model vit_s4 --img-size 32 --batch 512 --depth 7 --num-classes 10 --mode train --compare timm --compile \
        --compile-mode $m --speed bf16_residual,patch_matmul,fused_gelu,mlp_epilogues,tile,fold_norm
    done ;;
  round8-check)  # round 7's untested GPU paths: tests, kernel timings, then both steps' full kernel profiles
    python3 -m pytest -q tests/test_tile_attention.py tests/test_fold_norm.py >"$OUT/gpu_tests.txt" 2>&1; tail -n 3 "$OUT/gpu_tests.txt"
    python3 scripts/tile_attention_bench.py b16_b256 cifar_scale_b512 >"$OUT/tile_bench.jsonl" 2>"$OUT/tile_bench.err"; cat "$OUT/tile_bench.jsonl"
    python3 scripts/gpu_profile.py --model vit_s4 --img-size 32 --depth 7 --batch 512 --set num_classes=10 --top 200 \
      --speed bf16_residual,patch_matmul,fused_gelu,mlp_epilogues,tile,fold_norm >"$OUT/profiles.jsonl" 2>>"$OUT/levers.log"
    python3 scripts/gpu_profile.py --impls vitkit --top 200 \
      --speed bf16_residual,patch_matmul,fused_gelu,mlp_epilogues,bias_grad,tile,fold_norm >>"$OUT/profiles.jsonl" 2>>"$OUT/levers.log"
    cut -c1-300 "$OUT/profiles.jsonl" ;;
  round9-libops)  # GPU tests on main and on branch library-ops (its tree unpacked in $LIBOPS), then host ms per step, alternating
    T="tests/test_tile_attention.py tests/test_fold_norm.py tests/test_fused_mlp.py tests/test_linear_gelu.py"
    timeout 200 python3 -m pytest -q $T >"$OUT/gpu_tests_main.txt" 2>&1; tail -n 2 "$OUT/gpu_tests_main.txt"
    (cd "$LIBOPS" && PYTHONPATH=$PWD/src timeout 200 python3 -m pytest -q $T) >"$OUT/gpu_tests_libops.txt" 2>&1; tail -n 2 "$OUT/gpu_tests_libops.txt"
    for tree in "$PWD" "$LIBOPS" "$PWD" "$LIBOPS"; do
      (cd "$tree" && PYTHONPATH=$PWD/src timeout 120 python3 scripts/host_overhead_bench.py --how default --impls vitkit) 2>>"$OUT/levers.log" \
        | sed "s|^{|{\"tree\": \"$(basename "$tree")\", |" | tee -a "$OUT/host_overhead.jsonl"
    done ;;
  round9-small)  # qkv_bias_sums: GPU tests; CIFAR-scale with CUDA graphs, then again with VITKIT_PLAIN_DGELU=1 (read at commit 3e0a4d7 only)
    S7=bf16_residual,patch_matmul,fused_gelu,mlp_epilogues,tile,fold_norm
    timeout 240 python3 -m pytest -q tests/test_tile_attention.py >"$OUT/gpu_tests.txt" 2>&1; tail -n 2 "$OUT/gpu_tests.txt"
    SMALL=(--model vit_s4 --img-size 32 --batch 512 --depth 7 --num-classes 10 --mode train --compare timm --compile
           --compile-mode reduce-overhead --speed $S7 --speed $S7,qkv_bias_sums)
    run "${SMALL[@]}"
    VITKIT_PLAIN_DGELU=1 run "${SMALL[@]}" ;;
  round9-b16)  # CIFAR-scale kernel profiles without and with qkv_bias_sums, then B/16 with and without it (section 13 ran it at 966ba80)
    S7=bf16_residual,patch_matmul,fused_gelu,mlp_epilogues,tile,fold_norm
    R7=bf16_residual,patch_matmul,fused_gelu,mlp_epilogues,bias_grad,tile,fold_norm
    for speed in $S7 $S7,qkv_bias_sums; do
      python3 scripts/gpu_profile.py --model vit_s4 --img-size 32 --depth 7 --batch 512 --set num_classes=10 --top 200 \
        --impls vitkit --speed $speed >>"$OUT/profiles.jsonl" 2>>"$OUT/levers.log"
    done
    cut -c1-400 "$OUT/profiles.jsonl"
    run --model vit_b16 --img-size 224 --batch 256 --mode train --compare timm --compile --speed $R7 --speed $R7,qkv_bias_sums ;;
  round9-scratch)  # B/16 attention: split vs dQ-scratch backward (its candidates exist at commit 07f0877); CIFAR-scale qkv_bias_sums; GPU tests
    python3 scripts/tile_attention_bench.py b16_b256 --match tile_default --match tile_bwd_scratch >"$OUT/tile_bench.jsonl" 2>"$OUT/tile_bench.err"
    cat "$OUT/tile_bench.jsonl"
    S7=bf16_residual,patch_matmul,fused_gelu,mlp_epilogues,tile,fold_norm
    run --model vit_s4 --img-size 32 --batch 512 --depth 7 --num-classes 10 --mode train --compare timm --compile \
      --compile-mode reduce-overhead --speed $S7 --speed $S7,qkv_bias_sums
    timeout 200 python3 -m pytest -q tests/test_tile_attention.py >"$OUT/gpu_tests.txt" 2>&1; tail -n 2 "$OUT/gpu_tests.txt" ;;
  round9-final)  # qkv_bias_sums with bias_grad's GEMVs: GPU tests; CIFAR-scale twice each (graphs); B/16
    timeout 200 python3 -m pytest -q tests/test_tile_attention.py >"$OUT/gpu_tests.txt" 2>&1; tail -n 2 "$OUT/gpu_tests.txt"
    S7=bf16_residual,patch_matmul,fused_gelu,mlp_epilogues,tile,fold_norm
    R7=bf16_residual,patch_matmul,fused_gelu,mlp_epilogues,bias_grad,tile,fold_norm
    run --model vit_s4 --img-size 32 --batch 512 --depth 7 --num-classes 10 --mode train --compare timm --compile \
      --compile-mode reduce-overhead --speed $S7 --speed $S7,qkv_bias_sums --speed $S7 --speed $S7,qkv_bias_sums
    run --model vit_b16 --img-size 224 --batch 256 --mode train --compare timm --compile --speed $R7 --speed $R7,qkv_bias_sums ;;
  round9-h100)  # the final configurations on an H100: B/16, then CIFAR-scale with CUDA graphs
    S7=bf16_residual,patch_matmul,fused_gelu,mlp_epilogues,tile,fold_norm
    R7=bf16_residual,patch_matmul,fused_gelu,mlp_epilogues,bias_grad,tile,fold_norm
    run --model vit_b16 --img-size 224 --batch 256 --mode train --compare timm --compile --speed $R7 --speed $R7,qkv_bias_sums
    run --model vit_s4 --img-size 32 --batch 512 --depth 7 --num-classes 10 --mode train --compare timm --compile \
      --compile-mode reduce-overhead --speed $S7 --speed $S7,qkv_bias_sums ;;
  round10-tail)  # B/16 attention, whole blocks + a narrow tail against padded blocks (at commit 18708fc, VITKIT_TAIL); GPU tests
    python3 scripts/tile_attention_bench.py b16_b256 --match tile_default --match tile_tail >"$OUT/tile_bench.jsonl" 2>"$OUT/tile_bench.err"
    cat "$OUT/tile_bench.jsonl"
    R7Q=bf16_residual,patch_matmul,fused_gelu,mlp_epilogues,bias_grad,tile,fold_norm,qkv_bias_sums
    VITKIT_TAIL=0 run --model vit_b16 --img-size 224 --batch 256 --mode train --compare timm --compile --speed $R7Q
    VITKIT_TAIL=1 run --model vit_b16 --img-size 224 --batch 256 --mode train --compile --speed $R7Q
    timeout 150 python3 -m pytest -q tests/test_tile_attention.py tests/test_fused_mlp.py tests/test_fold_norm.py >"$OUT/gpu_tests.txt" 2>&1; tail -n 2 "$OUT/gpu_tests.txt" ;;
  round10-persistent)  # class-split kernels looping over (image, head)s (at commit 1bf95fb, VITKIT_CS), graph-timed attention; CIFAR-scale steps
    python3 scripts/tile_attention_bench.py cifar_scale_b512 speedrun_b256 b16_b256 --match tile_default --match tile_class_split_p --match tile_class_split_w4 --match tile_tail >"$OUT/tile_bench.jsonl" 2>"$OUT/tile_bench.err"
    cat "$OUT/tile_bench.jsonl"
    S7Q=bf16_residual,patch_matmul,fused_gelu,mlp_epilogues,tile,fold_norm,qkv_bias_sums
    for cs in ${CS_LIST:-0,1 2,3 0,1 4,3}; do
      VITKIT_CS=$cs run --model vit_s4 --img-size 32 --batch 512 --depth 7 --num-classes 10 --mode train --compare timm --compile \
        --compile-mode reduce-overhead --speed $S7Q
    done ;;
  round10-final)  # the tail kernels as landed: GPU tests; B/16 attention launch sizes; B/16 step against timm (then on an H100: round10-h100)
    timeout 200 python3 -m pytest -q tests/test_tile_attention.py tests/test_fused_mlp.py tests/test_fold_norm.py >"$OUT/gpu_tests.txt" 2>&1; tail -n 2 "$OUT/gpu_tests.txt"
    python3 scripts/tile_attention_bench.py b16_b256 --match tile_default --match tile_fwd --match tile_bwd >"$OUT/tile_bench.jsonl" 2>"$OUT/tile_bench.err"
    cat "$OUT/tile_bench.jsonl"
    R7Q=bf16_residual,patch_matmul,fused_gelu,mlp_epilogues,bias_grad,tile,fold_norm,qkv_bias_sums
    run --model vit_b16 --img-size 224 --batch 256 --mode train --compare timm --compile --speed $R7Q ;;
  round10-h100)  # tile attention GPU tests; B/16 step against timm; CIFAR-scale with CUDA graphs
    timeout 150 python3 -m pytest -q tests/test_tile_attention.py >"$OUT/gpu_tests.txt" 2>&1; tail -n 2 "$OUT/gpu_tests.txt"
    R7Q=bf16_residual,patch_matmul,fused_gelu,mlp_epilogues,bias_grad,tile,fold_norm,qkv_bias_sums
    S7Q=bf16_residual,patch_matmul,fused_gelu,mlp_epilogues,tile,fold_norm,qkv_bias_sums
    run --model vit_b16 --img-size 224 --batch 256 --mode train --compare timm --compile --speed $R7Q
    run --model vit_s4 --img-size 32 --batch 512 --depth 7 --num-classes 10 --mode train --compare timm --compile \
      --compile-mode reduce-overhead --speed $S7Q ;;
  round10-profiles)  # long-sequence kernels at every head_dim; B/16 kernel profile (R7Q); CIFAR-scale profile with the host's top ops
    timeout 150 python3 -m pytest -q tests/test_tile_attention.py -k long_sequence >"$OUT/gpu_tests.txt" 2>&1; tail -n 2 "$OUT/gpu_tests.txt"
    R7Q=bf16_residual,patch_matmul,fused_gelu,mlp_epilogues,bias_grad,tile,fold_norm,qkv_bias_sums
    S7Q=bf16_residual,patch_matmul,fused_gelu,mlp_epilogues,tile,fold_norm,qkv_bias_sums
    python3 scripts/gpu_profile.py --model vit_b16 --img-size 224 --batch 256 --impls vitkit --top 25 --speed $R7Q >>"$OUT/profiles.jsonl" 2>>"$OUT/profiles.err"
    python3 scripts/gpu_profile.py --model vit_s4 --img-size 32 --depth 7 --batch 512 --set num_classes=10 --impls vitkit --top 25 \
      --host-top 12 --speed $S7Q >>"$OUT/profiles.jsonl" 2>>"$OUT/profiles.err"
    tail -n 5 "$OUT/profiles.err" ;;
  round11-residual-small)  # residual_epilogue: GPU tests; CIFAR-scale with CUDA graphs, alternating, against timm
    timeout 240 python3 -m pytest -q tests/test_residual_epilogue.py tests/test_fused_mlp.py tests/test_fold_norm.py >"$OUT/gpu_tests.txt" 2>&1; tail -n 2 "$OUT/gpu_tests.txt"
    S7Q=bf16_residual,patch_matmul,fused_gelu,mlp_epilogues,tile,fold_norm,qkv_bias_sums
    run --model vit_s4 --img-size 32 --batch 512 --depth 7 --num-classes 10 --mode train --compare timm --compile \
      --compile-mode reduce-overhead --speed $S7Q --speed $S7Q,residual_epilogue --speed $S7Q --speed $S7Q,residual_epilogue ;;
  round11-residual-b16)  # residual_epilogue: B/16 against timm
    R7Q=bf16_residual,patch_matmul,fused_gelu,mlp_epilogues,bias_grad,tile,fold_norm,qkv_bias_sums
    run --model vit_b16 --img-size 224 --batch 256 --mode train --compare timm --compile --speed $R7Q --speed $R7Q,residual_epilogue ;;
  round11-h100)  # residual_epilogue on an H100: B/16, then CIFAR-scale with CUDA graphs, against timm
    R7Q=bf16_residual,patch_matmul,fused_gelu,mlp_epilogues,bias_grad,tile,fold_norm,qkv_bias_sums
    S7Q=bf16_residual,patch_matmul,fused_gelu,mlp_epilogues,tile,fold_norm,qkv_bias_sums
    run --model vit_b16 --img-size 224 --batch 256 --mode train --compare timm --compile --speed $R7Q --speed $R7Q,residual_epilogue
    run --model vit_s4 --img-size 32 --batch 512 --depth 7 --num-classes 10 --mode train --compare timm --compile \
      --compile-mode reduce-overhead --speed $S7Q --speed $S7Q,residual_epilogue ;;
  round11-profiles)  # kernel profiles of the CIFAR-scale step, vitkit (S7Q + residual_epilogue) and timm (run on the H100)
    S7QR=bf16_residual,patch_matmul,fused_gelu,mlp_epilogues,tile,fold_norm,qkv_bias_sums,residual_epilogue
    python3 scripts/gpu_profile.py --model vit_s4 --img-size 32 --depth 7 --batch 512 --set num_classes=10 --impls vitkit,timm \
      --top 40 --speed $S7QR >>"$OUT/profiles.jsonl" 2>>"$OUT/profiles.err"
    tail -n 3 "$OUT/profiles.err" ;;
  round12-dgelu-sum)  # speed option dgelu_bias_sum: GPU tests, the op alone, then the CIFAR-scale step with and without it
    timeout 240 python3 -m pytest -q tests/test_dgelu_matmul.py tests/test_fused_mlp.py >"$OUT/gpu_tests.txt" 2>&1; tail -n 2 "$OUT/gpu_tests.txt"
    timeout 200 python3 scripts/dgelu_bias_sum_bench.py --shape cifar --sweep >"$OUT/dgelu_bench.jsonl" 2>"$OUT/dgelu_bench.err"
    timeout 60 python3 scripts/dgelu_bias_sum_bench.py --shape b16 >>"$OUT/dgelu_bench.jsonl" 2>>"$OUT/dgelu_bench.err"
    S7QR=bf16_residual,patch_matmul,fused_gelu,mlp_epilogues,tile,fold_norm,qkv_bias_sums,residual_epilogue
    run --model vit_s4 --img-size 32 --batch 512 --depth 7 --num-classes 10 --mode train --compile --compile-mode reduce-overhead \
      --compare timm --speed $S7QR --speed $S7QR,dgelu_bias_sum ;;
  round12-memsets)  # dgelu_bias_sum's GPU tests; who launches the memsets and split-K reduces of the CIFAR-scale step; the step, reversed order
    timeout 150 python3 -m pytest -q tests/test_dgelu_matmul.py >"$OUT/gpu_tests.txt" 2>&1; tail -n 2 "$OUT/gpu_tests.txt"
    S7QRD=bf16_residual,patch_matmul,fused_gelu,mlp_epilogues,tile,fold_norm,qkv_bias_sums,residual_epilogue,dgelu_bias_sum
    python3 scripts/gpu_profile.py --model vit_s4 --img-size 32 --depth 7 --batch 512 --set num_classes=10 --impls vitkit \
      --top 45 --speed $S7QRD --launchers 'Memset|splitKreduce|FillFunctor' >>"$OUT/profiles.jsonl" 2>>"$OUT/profiles.err"
    run --model vit_s4 --img-size 32 --batch 512 --depth 7 --num-classes 10 --mode train --compile --compile-mode reduce-overhead \
      --compare timm --speed $S7QRD --speed ${S7QRD%,dgelu_bias_sum} ;;
  round12-sweep)  # dgelu_bias_sum: GPU tests, launch sweep at the CIFAR scale; cuBLASLt's memsets with and without workspace; Inductor's ATen calls
    timeout 150 python3 -m pytest -q tests/test_dgelu_matmul.py >"$OUT/gpu_tests.txt" 2>&1; tail -n 2 "$OUT/gpu_tests.txt"
    timeout 150 python3 scripts/dgelu_bias_sum_bench.py --shape cifar --sweep >"$OUT/dgelu_sweep.jsonl" 2>"$OUT/dgelu_sweep.err"
    timeout 100 python3 scripts/cublaslt_memset_bench.py >"$OUT/memsets.jsonl" 2>"$OUT/memsets.err"
    S7QRD=bf16_residual,patch_matmul,fused_gelu,mlp_epilogues,tile,fold_norm,qkv_bias_sums,residual_epilogue,dgelu_bias_sum
    TORCH_LOGS=output_code timeout 120 python3 scripts/inductor_code_grep.py --speed $S7QRD >"$OUT/inductor_code.txt" 2>&1
    grep -n "aten\.sum\|aten.sum\|extern_kernels\|torch.ops.aten" "$OUT/inductor_code.txt" | cut -c1-300 | head -40 ;;
  round12-final)  # GPU tests; cuBLASLt with and without workspace; the CIFAR-scale step (CUDA graphs) and B/16 against timm
    timeout 200 python3 -m pytest -q tests/test_dgelu_matmul.py tests/test_fused_mlp.py >"$OUT/gpu_tests.txt" 2>&1; tail -n 2 "$OUT/gpu_tests.txt"
    timeout 100 python3 scripts/cublaslt_memset_bench.py >"$OUT/memsets.jsonl" 2>"$OUT/memsets.err"
    [ -n "${SWEEP:-}" ] && timeout 150 python3 scripts/dgelu_bias_sum_bench.py --shape cifar --sweep >"$OUT/dgelu_sweep.jsonl" 2>"$OUT/dgelu_sweep.err"
    S7QR=bf16_residual,patch_matmul,fused_gelu,mlp_epilogues,tile,fold_norm,qkv_bias_sums,residual_epilogue
    R7QR=bf16_residual,patch_matmul,fused_gelu,mlp_epilogues,bias_grad,tile,fold_norm,qkv_bias_sums,residual_epilogue
    run --model vit_s4 --img-size 32 --batch 512 --depth 7 --num-classes 10 --mode train --compile --compile-mode reduce-overhead \
      --compare timm --speed $S7QR,dgelu_bias_sum --speed $S7QR
    run --model vit_b16 --img-size 224 --batch 256 --mode train --compile --compare timm --speed $R7QR ;;
  round12-h100)  # the CIFAR-scale step with and without dgelu_bias_sum in both orders, and B/16, against timm (run on the H100)
    S7QR=bf16_residual,patch_matmul,fused_gelu,mlp_epilogues,tile,fold_norm,qkv_bias_sums,residual_epilogue
    R7QR=bf16_residual,patch_matmul,fused_gelu,mlp_epilogues,bias_grad,tile,fold_norm,qkv_bias_sums,residual_epilogue
    SMALL=(--model vit_s4 --img-size 32 --batch 512 --depth 7 --num-classes 10 --mode train --compile --compile-mode reduce-overhead --compare timm)
    run "${SMALL[@]}" --speed $S7QR,dgelu_bias_sum --speed $S7QR
    run "${SMALL[@]}" --speed $S7QR --speed $S7QR,dgelu_bias_sum
    run --model vit_b16 --img-size 224 --batch 256 --mode train --compile --compare timm --speed $R7QR ;;
  round13-origin)  # dgelu_bias_sum's GPU tests; where the CIFAR-scale step's eager reductions come from (shapes, callers, Inductor's code); the step
    timeout 150 python3 -m pytest -q tests/test_dgelu_matmul.py >"$OUT/gpu_tests.txt" 2>&1; tail -n 2 "$OUT/gpu_tests.txt"
    S7QRD=bf16_residual,patch_matmul,fused_gelu,mlp_epilogues,tile,fold_norm,qkv_bias_sums,residual_epilogue,dgelu_bias_sum
    TORCH_LOGS=output_code timeout 150 python3 scripts/inductor_code_grep.py --depth 2 --speed $S7QRD >"$OUT/inductor_code.txt" 2>&1
    grep -n "aten\.sum\|aten.sum\|torch.ops.aten\|reduce" "$OUT/inductor_code.txt" | cut -c1-300 | head -40; gzip "$OUT/inductor_code.txt"
    python3 scripts/gpu_profile.py --model vit_s4 --img-size 32 --depth 7 --batch 512 --set num_classes=10 --impls vitkit \
      --top 45 --speed $S7QRD --launchers 'reduce_kernel|Memset' >>"$OUT/profiles.jsonl" 2>>"$OUT/profiles.err"
    run --model vit_s4 --img-size 32 --batch 512 --depth 7 --num-classes 10 --mode train --compile --compile-mode reduce-overhead \
      --compare timm --speed $S7QRD ;;
  round13-final)  # the CIFAR-scale step (S7QR + dgelu_bias_sum, CUDA graphs) against timm in three processes, then B/16 (R7QR) against timm
    S7QRD=bf16_residual,patch_matmul,fused_gelu,mlp_epilogues,tile,fold_norm,qkv_bias_sums,residual_epilogue,dgelu_bias_sum
    R7QR=bf16_residual,patch_matmul,fused_gelu,mlp_epilogues,bias_grad,tile,fold_norm,qkv_bias_sums,residual_epilogue
    for i in 1 2 3; do
      run --model vit_s4 --img-size 32 --batch 512 --depth 7 --num-classes 10 --mode train --compile --compile-mode reduce-overhead \
        --compare timm --speed $S7QRD
    done
    run --model vit_b16 --img-size 224 --batch 256 --mode train --compile --compare timm --speed $R7QR ;;
  round13-wgrad)  # fp32 parameter gradients straight from the matmuls: GPU tests, then the CIFAR-scale step against timm in three processes, and B/16
    timeout 300 python3 -m pytest -q tests/test_fused_mlp.py tests/test_dgelu_matmul.py tests/test_residual_epilogue.py tests/test_tile_attention.py \
      tests/test_fold_norm.py >"$OUT/gpu_tests.txt" 2>&1; tail -n 3 "$OUT/gpu_tests.txt"
    OUT=$OUT bash "${BASH_SOURCE[0]}" round13-final ;;
  round13-wgrad-ab)  # fp32 parameter gradients against main (a worktree carried at .wt/main), alternating processes on one GPU: the CIFAR-scale step, and B/16 with B16=1
    S7QRD=bf16_residual,patch_matmul,fused_gelu,mlp_epilogues,tile,fold_norm,qkv_bias_sums,residual_epilogue,dgelu_bias_sum
    R7QR=bf16_residual,patch_matmul,fused_gelu,mlp_epilogues,bias_grad,tile,fold_norm,qkv_bias_sums,residual_epilogue
    for tree in .wt/main . .wt/main .; do
      echo "{\"tree\": \"$tree\"}" >>"$OUT/levers.jsonl"
      if [ -n "${B16:-}" ]; then
        PYTHONPATH=$tree/src run --model vit_b16 --img-size 224 --batch 256 --mode train --compile --compare timm --speed $R7QR
      else
        PYTHONPATH=$tree/src run --model vit_s4 --img-size 32 --batch 512 --depth 7 --num-classes 10 --mode train --compile \
          --compile-mode reduce-overhead --compare timm --speed $S7QRD
      fi
    done ;;
  round13-pdl)  # Inductor's programmatic dependent launch (TORCHINDUCTOR_ENABLE_PDL, for vitkit and timm alike) against none, alternating processes: the CIFAR-scale step
    python3 -c "import torch._inductor.config as c; print('pdl:', c.triton.enable_pdl)"
    S7QRD=bf16_residual,patch_matmul,fused_gelu,mlp_epilogues,tile,fold_norm,qkv_bias_sums,residual_epilogue,dgelu_bias_sum
    for pdl in 0 1 0 1; do
      echo "{\"pdl\": $pdl}" >>"$OUT/levers.jsonl"
      TORCHINDUCTOR_ENABLE_PDL=$pdl run --model vit_s4 --img-size 32 --batch 512 --depth 7 --num-classes 10 --mode train --compile \
        --compile-mode reduce-overhead --compare timm --speed $S7QRD
    done ;;
  round13-pdl-option)  # speed option pdl (vitkit's compilation only; timm keeps Inductor's defaults): GPU tests (TESTS=0: none), the CIFAR-scale step in both orders, B/16
    [ "${TESTS:-1}" = 1 ] && timeout 200 python3 -m pytest -q tests/test_compile_options.py >"$OUT/gpu_tests.txt" 2>&1; tail -n 2 "$OUT/gpu_tests.txt"
    S7QRD=bf16_residual,patch_matmul,fused_gelu,mlp_epilogues,tile,fold_norm,qkv_bias_sums,residual_epilogue,dgelu_bias_sum
    R7QR=bf16_residual,patch_matmul,fused_gelu,mlp_epilogues,bias_grad,tile,fold_norm,qkv_bias_sums,residual_epilogue
    SMALL=(--model vit_s4 --img-size 32 --batch 512 --depth 7 --num-classes 10 --mode train --compile --compile-mode reduce-overhead --compare timm)
    run "${SMALL[@]}" --speed $S7QRD,pdl --speed $S7QRD
    run "${SMALL[@]}" --speed $S7QRD --speed $S7QRD,pdl
    run --model vit_b16 --img-size 224 --batch 256 --mode train --compile --compare timm --speed $R7QR,pdl --speed $R7QR ;;
  round13-b16-dgelu)  # B/16: R7QR + pdl with and without dgelu_bias_sum (its op was level with cuBLASLt + GEMV in round13-overlap), A-B-A in one process
    R7QRP=bf16_residual,patch_matmul,fused_gelu,mlp_epilogues,bias_grad,tile,fold_norm,qkv_bias_sums,residual_epilogue,pdl
    run --model vit_b16 --img-size 224 --batch 256 --mode train --compile --compare timm --speed $R7QRP --speed $R7QRP,dgelu_bias_sum --speed $R7QRP ;;
  round14-probe)  # (tune_kernels: branch round14-tune-kernels) class-split kernels over warps x register caps (graph-timed); the CIFAR-scale step with tune_kernels in both orders
    python3 scripts/class_split_bench.py --sweep >>"$OUT/class_split_sweep.jsonl" 2>>"$OUT/sweep.err"; cat "$OUT/class_split_sweep.jsonl"
    S7QRDP=bf16_residual,patch_matmul,fused_gelu,mlp_epilogues,tile,fold_norm,qkv_bias_sums,residual_epilogue,dgelu_bias_sum,pdl
    SMALL=(--model vit_s4 --img-size 32 --batch 512 --depth 7 --num-classes 10 --mode train --compile --compile-mode reduce-overhead --compare timm)
    run "${SMALL[@]}" --speed $S7QRDP,tune_kernels --speed $S7QRDP
    run "${SMALL[@]}" --speed $S7QRDP --speed $S7QRDP,tune_kernels ;;
  round14-b16-tune)  # (branch round14-tune-kernels) B/16 with tune_kernels (R7QR + pdl), against timm
    R7QRP=bf16_residual,patch_matmul,fused_gelu,mlp_epilogues,bias_grad,tile,fold_norm,qkv_bias_sums,residual_epilogue,pdl
    run --model vit_b16 --img-size 224 --batch 256 --mode train --compile --compare timm --speed $R7QRP --speed $R7QRP,tune_kernels ;;
  round14-ab)  # (branch round14-tune-kernels) GPU tests; the CIFAR-scale step, main (a worktree carried at .wt/main) and this tree alternating; this tree also with tune_kernels
    timeout 240 python3 -m pytest -q tests/test_dgelu_matmul.py tests/test_fused_mlp.py tests/test_compile_options.py >"$OUT/gpu_tests.txt" 2>&1; tail -n 2 "$OUT/gpu_tests.txt"
    S7QRDP=bf16_residual,patch_matmul,fused_gelu,mlp_epilogues,tile,fold_norm,qkv_bias_sums,residual_epilogue,dgelu_bias_sum,pdl
    SMALL=(--model vit_s4 --img-size 32 --batch 512 --depth 7 --num-classes 10 --mode train --compile --compile-mode reduce-overhead --compare timm)
    for tree in .wt/main . .wt/main .; do
      echo "{\"tree\": \"$tree\"}" >>"$OUT/levers.jsonl"
      if [ "$tree" = . ]; then run "${SMALL[@]}" --speed $S7QRDP --speed $S7QRDP,tune_kernels
      else PYTHONPATH=$tree/src run "${SMALL[@]}" --speed $S7QRDP; fi
    done ;;
  round14-b16)  # B/16: R7QR + pdl with and without dgelu_bias_sum (its third launch), both orders, against timm
    R7QRP=bf16_residual,patch_matmul,fused_gelu,mlp_epilogues,bias_grad,tile,fold_norm,qkv_bias_sums,residual_epilogue,pdl
    B16=(--model vit_b16 --img-size 224 --batch 256 --mode train --compile --compare timm)
    run "${B16[@]}" --speed $R7QRP,dgelu_bias_sum --speed $R7QRP
    run "${B16[@]}" --speed $R7QRP --speed $R7QRP,dgelu_bias_sum ;;
  round14-fair)  # (branch round14-tune-kernels) coordinate-descent tuning for both (TORCHINDUCTOR_COORDINATE_DESCENT_TUNING=1, timm too), around a process where only vitkit gets it (tune_kernels, measured first)
    S7QRDP=bf16_residual,patch_matmul,fused_gelu,mlp_epilogues,tile,fold_norm,qkv_bias_sums,residual_epilogue,dgelu_bias_sum,pdl
    SMALL=(--model vit_s4 --img-size 32 --batch 512 --depth 7 --num-classes 10 --mode train --compile --compile-mode reduce-overhead --compare timm)
    TORCHINDUCTOR_COORDINATE_DESCENT_TUNING=1 run "${SMALL[@]}" --speed $S7QRDP
    run "${SMALL[@]}" --speed $S7QRDP,tune_kernels --speed $S7QRDP
    TORCHINDUCTOR_COORDINATE_DESCENT_TUNING=1 run "${SMALL[@]}" --speed $S7QRDP ;;
  round16-settle)  # the recommended sets with last_block_cls against timm after 5 s of steps each (bench --settle): CIFAR scale twice, B/16 training and inference
    S7QRDPC=bf16_residual,patch_matmul,fused_gelu,mlp_epilogues,tile,fold_norm,qkv_bias_sums,residual_epilogue,dgelu_bias_sum,pdl,last_block_cls
    for i in 1 2; do
      run --model vit_s4 --img-size 32 --batch 512 --depth 7 --num-classes 10 --mode train --compile --compile-mode reduce-overhead \
        --compare timm --settle 5 --speed $S7QRDPC
    done
    run --model vit_b16 --img-size 224 --batch 256 --mode train --compile --compare timm --settle 5 \
      --speed bf16_residual,patch_matmul,fused_gelu,mlp_epilogues,bias_grad,tile,fold_norm,qkv_bias_sums,residual_epilogue,pdl,dgelu_bias_sum,last_block_cls
    run --model vit_b16 --img-size 224 --batch 256 --mode infer --compile --compare timm --settle 5 --speed bf16_residual,patch_matmul,fused_gelu,last_block_cls ;;
  round16-h100-infer)  # on the H100: B/16 inference with and without last_block_cls against timm, then settled 3 s with it
    B16I=(--model vit_b16 --img-size 224 --batch 256 --mode infer --compile --compare timm)
    run "${B16I[@]}" --speed bf16_residual,patch_matmul,fused_gelu,last_block_cls --speed bf16_residual,patch_matmul,fused_gelu
    run "${B16I[@]}" --settle 3 --speed bf16_residual,patch_matmul,fused_gelu,last_block_cls ;;
  round16-h100)  # on the H100: last_block_cls's GPU tests; the CIFAR-scale step and B/16 training with and without it, against timm
    timeout 300 python3 -m pytest -q tests/test_last_block_cls.py tests/test_dgelu_matmul.py >"$OUT/gpu_tests.txt" 2>&1; tail -n 1 "$OUT/gpu_tests.txt"
    S7QRDP=bf16_residual,patch_matmul,fused_gelu,mlp_epilogues,tile,fold_norm,qkv_bias_sums,residual_epilogue,dgelu_bias_sum,pdl
    run --model vit_s4 --img-size 32 --batch 512 --depth 7 --num-classes 10 --mode train --compile --compile-mode reduce-overhead \
      --compare timm --speed $S7QRDP,last_block_cls --speed $S7QRDP
    run --model vit_s4 --img-size 32 --batch 512 --depth 7 --num-classes 10 --mode train --compile --compile-mode reduce-overhead \
      --compare timm --settle 5 --speed $S7QRDP,last_block_cls
    R7QRPD=bf16_residual,patch_matmul,fused_gelu,mlp_epilogues,bias_grad,tile,fold_norm,qkv_bias_sums,residual_epilogue,pdl,dgelu_bias_sum
    run --model vit_b16 --img-size 224 --batch 256 --mode train --compile --compare timm --speed $R7QRPD,last_block_cls --speed $R7QRPD ;;
  round16-profile)  # kernel time per step, the CIFAR-scale step (S7QRD, no pdl: the profile over-counts early starts) with and without last_block_cls
    S7QRD=bf16_residual,patch_matmul,fused_gelu,mlp_epilogues,tile,fold_norm,qkv_bias_sums,residual_epilogue,dgelu_bias_sum
    for speed in $S7QRD,last_block_cls $S7QRD; do
      python3 scripts/gpu_profile.py --model vit_s4 --img-size 32 --depth 7 --batch 512 --set num_classes=10 --impls vitkit \
        --speed $speed --top 80 >>"$OUT/profile.jsonl" 2>>"$OUT/profile.err"
    done; tail -n 3 "$OUT/profile.err" ;;
  round16-cls2)  # last_block_cls with its one-query attention as fused reductions: GPU test; the CIFAR-scale step with and without it, both orders, 3 s settled; its profile
    timeout 200 python3 -m pytest -q tests/test_last_block_cls.py >"$OUT/gpu_tests.txt" 2>&1; tail -n 1 "$OUT/gpu_tests.txt"
    S7QRDP=bf16_residual,patch_matmul,fused_gelu,mlp_epilogues,tile,fold_norm,qkv_bias_sums,residual_epilogue,dgelu_bias_sum,pdl
    SMALL=(--model vit_s4 --img-size 32 --batch 512 --depth 7 --num-classes 10 --mode train --compile --compile-mode reduce-overhead --compare timm --settle 3)
    run "${SMALL[@]}" --speed $S7QRDP,last_block_cls --speed $S7QRDP
    run "${SMALL[@]}" --speed $S7QRDP --speed $S7QRDP,last_block_cls
    python3 scripts/gpu_profile.py --model vit_s4 --img-size 32 --depth 7 --batch 512 --set num_classes=10 --impls vitkit \
      --speed ${S7QRDP%,pdl},last_block_cls --top 80 >>"$OUT/profile.jsonl" 2>>"$OUT/profile.err" ;;
  round16-confirm)  # the final tree: bench's GPU tests; the CIFAR-scale step with last_block_cls against timm, settled 3 s, two processes; 6 s windows with clock_watch.py
    timeout 200 python3 -m pytest -q tests/test_bench.py tests/test_last_block_cls.py >"$OUT/gpu_tests.txt" 2>&1; tail -n 1 "$OUT/gpu_tests.txt"
    S7QRDPC=bf16_residual,patch_matmul,fused_gelu,mlp_epilogues,tile,fold_norm,qkv_bias_sums,residual_epilogue,dgelu_bias_sum,pdl,last_block_cls
    for i in 1 2; do
      run --model vit_s4 --img-size 32 --batch 512 --depth 7 --num-classes 10 --mode train --compile --compile-mode reduce-overhead \
        --compare timm --settle 3 --speed $S7QRDPC
    done
    timeout 300 python3 scripts/clock_watch.py --speed $S7QRDPC --seconds 6 --rounds 2 >"$OUT/clocks.jsonl" 2>"$OUT/clocks.err"; cat "$OUT/clocks.jsonl" ;;
  round16-final)  # main as landed: GPU tests; the CIFAR-scale step with and without last_block_cls, both orders, 3 s settled; B/16 training and inference with it, settled; the profile
    timeout 300 python3 -m pytest -q tests/test_last_block_cls.py tests/test_fused_mlp.py tests/test_dgelu_matmul.py tests/test_bench.py >"$OUT/gpu_tests_final.txt" 2>&1; tail -n 1 "$OUT/gpu_tests_final.txt"
    bash "$0" round16-cls2
    R7QRPD=bf16_residual,patch_matmul,fused_gelu,mlp_epilogues,bias_grad,tile,fold_norm,qkv_bias_sums,residual_epilogue,pdl,dgelu_bias_sum
    run --model vit_b16 --img-size 224 --batch 256 --mode train --compile --compare timm --settle 3 --speed $R7QRPD,last_block_cls
    run --model vit_b16 --img-size 224 --batch 256 --mode infer --compile --compare timm --settle 3 --speed bf16_residual,patch_matmul,fused_gelu,last_block_cls ;;
  round16-cls)  # last_block_cls: GPU tests; the CIFAR-scale step (S7QRDP) with and without it, both orders; B/16 training and inference; sustained clocks with it
    timeout 300 python3 -m pytest -q tests/test_last_block_cls.py tests/test_dgelu_matmul.py tests/test_fused_mlp.py >"$OUT/gpu_tests.txt" 2>&1; tail -n 2 "$OUT/gpu_tests.txt"
    S7QRDP=bf16_residual,patch_matmul,fused_gelu,mlp_epilogues,tile,fold_norm,qkv_bias_sums,residual_epilogue,dgelu_bias_sum,pdl
    SMALL=(--model vit_s4 --img-size 32 --batch 512 --depth 7 --num-classes 10 --mode train --compile --compile-mode reduce-overhead --compare timm)
    run "${SMALL[@]}" --speed $S7QRDP,last_block_cls --speed $S7QRDP
    run "${SMALL[@]}" --speed $S7QRDP --speed $S7QRDP,last_block_cls
    R7QRPD=bf16_residual,patch_matmul,fused_gelu,mlp_epilogues,bias_grad,tile,fold_norm,qkv_bias_sums,residual_epilogue,pdl,dgelu_bias_sum
    run --model vit_b16 --img-size 224 --batch 256 --mode train --compile --compare timm --speed $R7QRPD,last_block_cls --speed $R7QRPD
    run --model vit_b16 --img-size 224 --batch 256 --mode infer --compile --compare timm --speed bf16_residual,patch_matmul,fused_gelu,last_block_cls --speed bf16_residual,patch_matmul,fused_gelu
    timeout 300 python3 scripts/clock_watch.py --speed $S7QRDP,last_block_cls --seconds 6 --rounds 2 >"$OUT/clocks.jsonl" 2>"$OUT/clocks.err"; cat "$OUT/clocks.jsonl" ;;
  round16-clocks)  # clocks and power through long runs of the CIFAR-scale step (vitkit S7QRDP, timm); Nsight Compute on the MLP backward matmuls
    nvidia-smi --query-gpu=name,power.limit,power.max_limit,clocks.max.sm,clocks.max.mem --format=csv | tee "$OUT/card.txt"
    timeout 400 python3 scripts/clock_watch.py --seconds 8 --rounds 2 >"$OUT/clocks.jsonl" 2>"$OUT/clocks.err"; cat "$OUT/clocks.jsonl"; tail -n 3 "$OUT/clocks.err"
    cat >"$OUT/ncu_ops.py" <<'PY'
import sys; sys.path.insert(0, "scripts")
import torch
from dgelu_bias_sum_bench import problem
from vitkit.layers import dgelu_matmul, dgelu_pingpong
grad, weight, pre, _ = problem("cifar")
for _ in range(2):  # the second round is the one to read: compiled, caches warm
    torch.matmul(grad, weight); dgelu_matmul.launch(grad, weight, pre, **dgelu_matmul.LAUNCHES[0]); dgelu_pingpong.launch(grad, weight, pre)
torch.cuda.synchronize()
PY
    timeout 300 ncu --clock-control none -k 'regex:_pingpong_kernel|_dgelu_kernel|nvjet' --launch-skip 3 -c 3 \
      --section SpeedOfLight --section MemoryWorkloadAnalysis_Tables --section ComputeWorkloadAnalysis --section WarpStateStats \
      --section SchedulerStats --section LaunchStats python3 "$OUT/ncu_ops.py" >"$OUT/ncu.txt" 2>&1; grep -c "" "$OUT/ncu.txt" ;;
  round15-ab)  # GPU tests; dgelu_bias_sum's op with the Gluon ping-pong kernel; the CIFAR-scale step, main (a worktree carried at .wt/main) and this tree alternating
    timeout 300 python3 -m pytest -q tests/test_dgelu_matmul.py tests/test_fused_mlp.py tests/test_compile_options.py >"$OUT/gpu_tests.txt" 2>&1; tail -n 2 "$OUT/gpu_tests.txt"
    timeout 200 python3 scripts/dgelu_pingpong_bench.py >"$OUT/dgelu_pingpong.jsonl" 2>"$OUT/dgelu_pingpong.err"; cat "$OUT/dgelu_pingpong.jsonl"
    S7QRDP=bf16_residual,patch_matmul,fused_gelu,mlp_epilogues,tile,fold_norm,qkv_bias_sums,residual_epilogue,dgelu_bias_sum,pdl
    SMALL=(--model vit_s4 --img-size 32 --batch 512 --depth 7 --num-classes 10 --mode train --compile --compile-mode reduce-overhead --compare timm)
    for tree in .wt/main . .wt/main .; do
      echo "{\"tree\": \"$tree\"}" >>"$OUT/levers.jsonl"
      PYTHONPATH=$tree/src run "${SMALL[@]}" --speed $S7QRDP
    done ;;
  round15-nopdl)  # the CIFAR-scale step without pdl (S7QRD), main (.wt/main) and this tree; B/16 R7QRP with and without dgelu_bias_sum (the ping-pong kernel on Hopper)
    S7QRD=bf16_residual,patch_matmul,fused_gelu,mlp_epilogues,tile,fold_norm,qkv_bias_sums,residual_epilogue,dgelu_bias_sum
    SMALL=(--model vit_s4 --img-size 32 --batch 512 --depth 7 --num-classes 10 --mode train --compile --compile-mode reduce-overhead --compare timm)
    for tree in . .wt/main; do
      echo "{\"tree\": \"$tree\"}" >>"$OUT/levers.jsonl"
      PYTHONPATH=$tree/src run "${SMALL[@]}" --speed $S7QRD
    done
    R7QRP=bf16_residual,patch_matmul,fused_gelu,mlp_epilogues,bias_grad,tile,fold_norm,qkv_bias_sums,residual_epilogue,pdl
    run --model vit_b16 --img-size 224 --batch 256 --mode train --compile --compare timm --speed $R7QRP,dgelu_bias_sum --speed $R7QRP ;;
  round15-b16)  # B/16: R7QRP with and without dgelu_bias_sum (the ping-pong kernel on Hopper), both orders, against timm
    R7QRP=bf16_residual,patch_matmul,fused_gelu,mlp_epilogues,bias_grad,tile,fold_norm,qkv_bias_sums,residual_epilogue,pdl
    B16=(--model vit_b16 --img-size 224 --batch 256 --mode train --compile --compare timm)
    run "${B16[@]}" --speed $R7QRP --speed $R7QRP,dgelu_bias_sum
    run "${B16[@]}" --speed $R7QRP,dgelu_bias_sum --speed $R7QRP ;;
  round15-h100)  # on the H100: dgelu's GPU tests, B/16 both orders, the CIFAR-scale step (S7QRD + pdl) against timm
    timeout 300 python3 -m pytest -q tests/test_dgelu_matmul.py >"$OUT/gpu_tests.txt" 2>&1; tail -n 1 "$OUT/gpu_tests.txt"
    bash "$0" round15-b16
    run --model vit_s4 --img-size 32 --batch 512 --depth 7 --num-classes 10 --mode train --compile --compile-mode reduce-overhead \
      --compare timm --speed bf16_residual,patch_matmul,fused_gelu,mlp_epilogues,tile,fold_norm,qkv_bias_sums,residual_epilogue,dgelu_bias_sum,pdl ;;
  round14-h100)  # main after round 14 (run on the H100): dgelu_matmul's GPU tests, the CIFAR-scale step (S7QRD + pdl) against timm, two processes
    timeout 200 python3 -m pytest -q tests/test_dgelu_matmul.py >"$OUT/gpu_tests.txt" 2>&1; tail -n 1 "$OUT/gpu_tests.txt"
    S7QRDP=bf16_residual,patch_matmul,fused_gelu,mlp_epilogues,tile,fold_norm,qkv_bias_sums,residual_epilogue,dgelu_bias_sum,pdl
    for i in 1 2; do
      run --model vit_s4 --img-size 32 --batch 512 --depth 7 --num-classes 10 --mode train --compile \
        --compile-mode reduce-overhead --compare timm --speed $S7QRDP
    done ;;
  round13-h200-profile)  # kernel time per step by category, vitkit (S7QRD + pdl) and timm, the CIFAR-scale step (run on the H200)
    S7QRDP=bf16_residual,patch_matmul,fused_gelu,mlp_epilogues,tile,fold_norm,qkv_bias_sums,residual_epilogue,dgelu_bias_sum,pdl
    python3 scripts/gpu_profile.py --model vit_s4 --img-size 32 --depth 7 --batch 512 --set num_classes=10 --top 40 \
      --speed $S7QRDP >>"$OUT/profiles.jsonl" 2>>"$OUT/profiles.err" ;;
  round12-h200)  # the CIFAR-scale step with and without dgelu_bias_sum in both orders, B/16, against timm; GPU tests, launch sweep (run on the H200)
    S7QR=bf16_residual,patch_matmul,fused_gelu,mlp_epilogues,tile,fold_norm,qkv_bias_sums,residual_epilogue
    R7QR=bf16_residual,patch_matmul,fused_gelu,mlp_epilogues,bias_grad,tile,fold_norm,qkv_bias_sums,residual_epilogue
    SMALL=(--model vit_s4 --img-size 32 --batch 512 --depth 7 --num-classes 10 --mode train --compile --compile-mode reduce-overhead --compare timm)
    run "${SMALL[@]}" --speed $S7QR,dgelu_bias_sum --speed $S7QR
    run "${SMALL[@]}" --speed $S7QR --speed $S7QR,dgelu_bias_sum
    run --model vit_b16 --img-size 224 --batch 256 --mode train --compile --compare timm --speed $R7QR
    timeout 90 python3 -m pytest -q tests/test_dgelu_matmul.py >"$OUT/gpu_tests.txt" 2>&1; tail -n 2 "$OUT/gpu_tests.txt"
    timeout 80 python3 scripts/dgelu_bias_sum_bench.py --shape cifar --sweep >"$OUT/dgelu_sweep.jsonl" 2>"$OUT/dgelu_sweep.err" ;;
  round5-small)
    run --model vit_s4 --img-size 32 --batch 512 --depth 7 --num-classes 10 --mode train --mode infer --compare timm --compile \
      --speed bf16_residual,patch_matmul,tile --speed bf16_residual,patch_matmul,fused_gelu --speed bf16_residual,patch_matmul,fused_gelu,tile ;;
esac
