#!/usr/bin/env bash
# The full continual-customization comparison (issue 12's protocol): the shipped base model (models/fashion-base,
# which knows every Fashion-MNIST class under a coarse caption) learns five fine-grained classes one after another —
# pullover, T-shirt, coat (three kinds of top), sandal, ankle boot (two kinds of shoe) — each from 20 train images it
# never saw, prompt "a photo of <vt>". 100 samples per concept after every task, 3 seeds (0, 1, 2), C-LoRA at its
# default λ, sequential LoRA (λ = 0) and the non-continual reference. Writes bench-out/results.json, report.md,
# heat maps, concept curves and the sample grid. Finished (method, seed) runs are cached in bench-out/runs/, so an
# interrupted benchmark continues where it stopped when rerun with the same options.
#   scripts/bench-continual.sh                 the comparison
#   scripts/bench-continual.sh --all-methods   every method of `cdiff train --method` and the reference, same
#                                              protocol → methods-out/ (over two hours; finished runs are cached)
#   scripts/bench-continual.sh --lambda-sweep  the λ sweep on validation seeds (100, 101; never the reported ones),
#                                              the benchmark's 5 tasks, 50 samples → lambda-out/ with the F-vs-A figure
#                                              (a 3-task sweep picked λ 0.1, which lost to λ 1 over 5 tasks; see README)
# Other arguments are cdiff benchmark options; each one given replaces its default below.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

args=()
sweep=0
all=0
for a in "$@"; do
  case "$a" in
    --lambda-sweep) sweep=1 ;;
    --all-methods) all=1 ;;
    *) args+=("$a") ;;
  esac
done
given() { local a; for a in "${args[@]+"${args[@]}"}"; do [[ "$a" == "$1" || "$a" == "$1="* ]] && return 0; done; return 1; }
default() { given "$1" || args+=("$1" "$2"); }   # an option given twice is an error, so add only missing ones

default --model "$root/models/fashion-base"
default --classifier "$root/models/fashion-classifier.safetensors"
default --images-per-concept 20
if [ "$sweep" = 1 ]; then
  default --out "$PWD/lambda-out"
  default --methods lora,reference    # λ = 0 is LoRA; every other λ is a clora-l<λ> method
  default --lambdas 0.1,1,10,100,1e3,1e8
  default --seeds 100,101
  default --tasks 5
  default --samples 50
  given --no-base-classes || args+=(--no-base-classes)
elif [ "$all" = 1 ]; then
  default --out "$PWD/methods-out"
  default --methods clora,lora,textual-inversion,custom-diffusion,custom-diffusion-merge,magmax,ortho-init,anchored-lora,reference
  default --seeds 0,1,2
  default --tasks 5
  default --samples 100
else
  default --out "$PWD/bench-out"
  default --methods clora,lora,reference
  default --seeds 0,1,2
  default --tasks 5
  default --samples 100
fi
exec "$root/scripts/cdiff" benchmark "${args[@]}"
