#!/usr/bin/env bash
# The paper's ViT / hybrid / BiT comparison (Figs. 3-5) on CIFAR-10, on the GPU machine:
#   OUT=out bash scripts/gpu_scaling_study.sh
# Unpacks CIFAR-10 from the carried .data/ (cifar10.npz + pack.py, as scripts/gpu_train.sh), runs
# `vitkit study data-scaling` and copies its figures, results and each run's summary into $OUT.
# Re-running with the same STUDY folder resumes: finished runs are not redone.
# Knobs (environment): MODELS, FRACTIONS, EPOCHS, PRESET, EXTRA (more --field value pairs), STUDY.
# Expected time: not measured yet; time one epoch first (EPOCHS=1 FRACTIONS=1.0 STUDY=/tmp/probe).
set -u
export PYTHONPATH=src PYTHONUNBUFFERED=1
OUT=${OUT:-out}; mkdir -p "$OUT"
STUDY=${STUDY:-/tmp/study_cifar10}
# At 32x32 every trunk gets the small stem (no early downsampling): R26 /16 gives 8x8 tokens.
MODELS=${MODELS:-"vit_s4:depth=6 vit_r26_s16:depth=6 bit_r26x1"}
FRACTIONS=${FRACTIONS:-"0.05 0.2 1.0"}
EPOCHS=${EPOCHS:-20}
PRESET=${PRESET:+--preset $PRESET}  # e.g. PRESET=small-data; default: TrainConfig's light recipe
EXTRA=${EXTRA:-"--batch-size 256 --lr 1e-3 --label-smoothing 0.1"}
[ -d /tmp/cifar/cifar-10-batches-py ] || python3 .data/pack.py unpack .data/cifar10.npz /tmp/cifar >/dev/null
# shellcheck disable=SC2086  # MODELS, FRACTIONS, PRESET and EXTRA are word lists on purpose
python3 -m vitkit study data-scaling --data cifar10:/tmp/cifar --models $MODELS --fractions $FRACTIONS \
  --epochs "$EPOCHS" --img-size 32 $PRESET --out "$STUDY" --json --progress false $EXTRA \
  2>"$OUT/study.err" | tail -n 1 >"$OUT/study_stdout.json"
cp "$STUDY"/data_scaling.png "$STUDY"/compute_scaling.png "$STUDY"/results.json "$STUDY"/results.csv \
  "$STUDY"/study.json "$OUT"/ 2>/dev/null
for run in "$STUDY"/runs/*/; do
  cp "$run/summary.json" "$OUT/$(basename "$run").summary.json" 2>/dev/null
done
tail -n 20 "$OUT/study.err"; cat "$OUT/results.csv" 2>/dev/null
