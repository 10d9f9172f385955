#!/usr/bin/env bash
# The one-command demo (after the README's set-up): build cdiff, train or reuse the Fashion-MNIST base model,
# learn three held-out garment classes one after another as <v1>, <v2>, <v3> (C-LoRA, and plain sequential LoRA
# for comparison), sample every learned concept after every task, score the samples with a Fashion-MNIST
# classifier and write a short report with sample grids to ./quickstart-out/report.md. 13 min on 2 CPU
# cores from nothing (see README); about 3.5 min once the base model and the classifier are cached (in
# ${CDIFF_CACHE:-~/.cache/cdiff}).
# Usage: scripts/quickstart.sh [cdiff benchmark options; each one given replaces its default below]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache="${CDIFF_CACHE:-$HOME/.cache/cdiff}"
base="$cache/fashion-base-v3"   # -v3: pretraining defaults changed; a model cached under an old name would be refused
out="$PWD/quickstart-out"
start=$(date +%s)
elapsed() { local s=$(( $(date +%s) - start )); printf '%dm%02ds' $((s / 60)) $((s % 60)); }

args=("$@")
given() { local a; for a in "${args[@]+"${args[@]}"}"; do [[ "$a" == "$1" || "$a" == "$1="* ]] && return 0; done; return 1; }
default() { given "$1" || args+=("$1" "$2"); }   # an option given twice is an error, so add only missing ones

echo "== [1/3] building cdiff" >&2
"$root/scripts/cdiff" doctor --log-level warning >/dev/null

if given --model; then
  echo "== [2/3] base model given on the command line ($(elapsed))" >&2
else
  echo "== [2/3] base model $base: trained once, then reused ($(elapsed))" >&2
  "$root/scripts/cdiff" pretrain --out "$base"
  args+=(--model "$base")
fi

echo "== [3/3] learning 3 concepts one after another, sampling and scoring them after every task ($(elapsed))" >&2
# The reduced protocol: 1 seed, 3 tasks, 20 samples per concept, 500 training steps per task; the other training
# options from configs/train/fashion.json.
# The full comparison (5 tasks, 3 seeds, 100 samples, a λ sweep and the non-continual reference) is
# scripts/bench-continual.sh.
default --out "$out"
default --methods clora,lora
default --seeds 0
default --tasks 3
default --images-per-concept 20
default --samples 20
default --sample-steps 20
default --sample-batch 20
default --train-steps 500   # configs/train/fashion.json's 800 in the full benchmark; fewer here for the time budget
"$root/scripts/cdiff" benchmark "${args[@]}"

report="$(grep -A1 -x -- --out <(printf '%s\n' "${args[@]}") | tail -n 1)/report.md"
echo "== done in $(elapsed): $report" >&2
