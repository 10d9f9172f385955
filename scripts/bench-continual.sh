#!/usr/bin/env bash
# The full continual-customization comparison of the issue: 5 tasks (pullover, coat, shirt, sneaker, ankle boot),
# 20 images per concept, 100 samples per concept after every task, 3 seeds; C-LoRA at its default λ plus a small
# λ sweep, sequential LoRA (λ = 0) and the non-continual reference. Writes bench-out/results.json, report.md,
# heat maps, concept curves and sample grids. Finished (method, seed) runs are cached in bench-out/runs/, so an
# interrupted benchmark continues where it stopped when rerun with the same options.
# Usage: scripts/bench-continual.sh [cdiff benchmark options, which override the defaults below]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache="${CDIFF_CACHE:-$HOME/.cache/cdiff}"
base="$cache/fashion-base"

"$root/scripts/cdiff" pretrain --out "$base"
# System.CommandLine keeps the last value of a repeated option, so arguments given here override these defaults.
"$root/scripts/cdiff" benchmark --model "$base" --out "${BENCH_OUT:-$PWD/bench-out}" \
  --methods clora,lora,reference --lambdas 1e6,1e7,1e9 --seeds 0,1,2 \
  --tasks 5 --images-per-concept 20 --samples 100 \
  "$@"
