#!/usr/bin/env bash
# The one-command demo (after the README's set-up): build cdiff, train or reuse the Fashion-MNIST base model,
# learn three held-out garment classes one after another as <v1>, <v2>, <v3> with C-LoRA, sample every learned
# concept after every task, score the samples with a Fashion-MNIST classifier and write a short report with a
# sample grid. About 15 minutes on 2 CPU cores from nothing; a few minutes when the base model and the
# classifier are already cached (in ${CDIFF_CACHE:-~/.cache/cdiff}).
# Usage: scripts/quickstart.sh [extra `cdiff benchmark` options, e.g. --methods clora,lora]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache="${CDIFF_CACHE:-$HOME/.cache/cdiff}"
out="${QUICKSTART_OUT:-$PWD/quickstart-out}"
base="$cache/fashion-base"
start=$(date +%s)
elapsed() { local s=$(( $(date +%s) - start )); printf '%dm%02ds' $((s / 60)) $((s % 60)); }

echo "== [1/3] building cdiff ($(elapsed))" >&2
"$root/scripts/cdiff" doctor >/dev/null

echo "== [2/3] base model: $base (trained once, then reused) ($(elapsed))" >&2
"$root/scripts/cdiff" pretrain --out "$base"

echo "== [3/3] learning 3 concepts one after another, sampling and scoring them ($(elapsed))" >&2
# Reduced protocol: 1 seed, 3 tasks, 20 images per concept, 20 samples per concept. The full comparison
# (5 tasks, 3 seeds, 100 samples, λ sweep, LoRA and the non-continual reference) is scripts/bench-continual.sh.
"$root/scripts/cdiff" benchmark --model "$base" --out "$out" \
  --methods clora --seeds 0 --tasks 3 --images-per-concept 20 \
  --train-steps "${QUICKSTART_TRAIN_STEPS:-150}" --samples 20 --sample-steps 20 --sample-batch 20 \
  "$@"

echo "== done in $(elapsed): report $out/report.md (grid: $out/samples-clora-seed0.png)" >&2
