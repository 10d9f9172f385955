#!/usr/bin/env bash
# The full continual-customization comparison of the issue: 5 tasks (pullover, coat, shirt, sneaker, ankle boot),
# 20 images per concept, 100 samples per concept after every task, 3 seeds; C-LoRA at its default λ plus a small
# λ sweep, sequential LoRA (λ = 0) and the non-continual reference. Writes bench-out/results.json, report.md,
# heat maps, concept curves and sample grids. Finished (method, seed) runs are cached in bench-out/runs/, so an
# interrupted benchmark continues where it stopped when rerun with the same options.
# Usage: scripts/bench-continual.sh [cdiff benchmark options; each one given replaces its default below]
#   e.g. scripts/bench-continual.sh --seeds 0 --samples 50      (the base model is `cdiff pretrain`'s unless --model)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache="${CDIFF_CACHE:-$HOME/.cache/cdiff}"
base="$cache/fashion-base-v3"   # the same cached model as scripts/quickstart.sh

args=("$@")
given() { local a; for a in "${args[@]+"${args[@]}"}"; do [[ "$a" == "$1" || "$a" == "$1="* ]] && return 0; done; return 1; }
default() { given "$1" || args+=("$1" "$2"); }   # an option given twice is an error, so add only missing ones

if ! given --model; then
  "$root/scripts/cdiff" pretrain --out "$base"   # reuses the cached model when the request is unchanged
  args+=(--model "$base")
fi
default --out "$PWD/bench-out"
default --methods clora,lora,reference
default --lambdas 1,1e8   # around the default λ = 10 (configs/train/fashion.json), and SD's default 1e8
default --seeds 0,1,2
default --tasks 5
default --images-per-concept 20
default --samples 100
exec "$root/scripts/cdiff" benchmark "${args[@]}"
