#!/usr/bin/env bash
# The one-command demo (after the README's set-up): teach the small Fashion-MNIST model that ships with cdiff
# (models/fashion-base: it draws "a photo of a top / shoe / trouser / dress / bag") three kinds of top one after
# another — pullover as <v1>, T-shirt as <v2>, coat as <v3>, 20 unseen images each — with C-LoRA and with plain
# sequential LoRA, sample every learned concept after every task, score the samples with the shipped Fashion-MNIST
# classifier and write quickstart-out/report.md, which opens with the sample grid. It leaves the C-LoRA run in
# quickstart-out/run for `cdiff sample` and `cdiff status`. Time on 2 CPU cores: see the README.
# Usage: scripts/quickstart.sh [cdiff benchmark options; each one given replaces its default below]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="$PWD/quickstart-out"
start=$(date +%s)
elapsed() { local s=$(( $(date +%s) - start )); printf '%dm%02ds' $((s / 60)) $((s % 60)); }

args=("$@")
given() { local a; for a in "${args[@]+"${args[@]}"}"; do [[ "$a" == "$1" || "$a" == "$1="* ]] && return 0; done; return 1; }
default() { given "$1" || args+=("$1" "$2"); }   # an option given twice is an error, so add only missing ones

echo "== [1/2] building cdiff" >&2
"$root/scripts/cdiff" doctor --log-level warning >/dev/null

echo "== [2/2] learning 3 concepts one after another with C-LoRA and LoRA, sampling and scoring them after every task ($(elapsed))" >&2
# The demo's protocol: 1 seed, 3 tasks, 50 samples per concept; training options from configs/train/fashion.json.
# The full comparison (5 tasks, 3 seeds, 100 samples, the non-continual reference) is scripts/bench-continual.sh.
default --model "$root/models/fashion-base"
default --classifier "$root/models/fashion-classifier.safetensors"
default --out "$out"
default --methods clora,lora
default --seeds 0
default --tasks 3
default --samples 50
default --sample-batch 50
given --keep-runs || args+=(--keep-runs)   # the C-LoRA run directory is handed to the user below
"$root/scripts/cdiff" benchmark "${args[@]}"

dir="$(grep -A1 -x -- --out <(printf '%s\n' "${args[@]}") | tail -n 1)"
if [ -d "$dir/run-clora" ]; then rm -rf "$dir/run"; mv "$dir/run-clora" "$dir/run"; fi
rm -rf "$dir/run-lora"
echo "== done in $(elapsed): $dir/report.md" >&2
cat >&2 <<MSG

The C-LoRA run is in $dir/run (three concepts: <v1> pullover, <v2> T-shirt, <v3> coat). Try:
  scripts/cdiff sample --run $dir/run --prompt "a photo of <v1>" --num-images 4 --out samples
  scripts/cdiff status --run $dir/run
MSG
