#!/usr/bin/env bash
# Model benchmarks (random weights, so no download is needed); each prints its figures and peak RSS.
#   scripts/bench.sh unet   [--config tests/fixtures/configs/sd15/unet.json] [--size 64] [--batch 2] [--runs 3] [--threads N]
#       one UNet forward at SD 1.5 size, 64x64 latents, batch 2 as with classifier-free guidance
#   scripts/bench.sh train  [tiny|sd15] [--model DIR] [--resolution 512] [--batch 1] [--steps 3] [--ranks 4,16] [--onednn on|off]
#       C-LoRA training steps at task 1 and task 5 side by side, adapter bytes per task
#   scripts/bench.sh sample [tiny|sd15] [--steps 3] [--size 512] [--scheduler ddim] [--onednn on|off]
#       a whole `cdiff sample` generation: per-step time and peak memory
#   scripts/bench.sh classifier [--epochs 3] [--lr 4e-3] [--batch 128] [--seed 0]
#       trains the Fashion-MNIST scoring classifier: wall time and test accuracy
#   scripts/bench.sh prompts --model DIR [--samples 20] [--recon 200]
#       how often a base model's class prompts draw the asked class (judged by the cached classifier)
#   scripts/bench.sh memory [--resolution 512] [--train-steps 3] [--sample-steps 30] [--only train|sample]
#       SD 1.5 at 512x512, batch 1: peak memory and step time of training (fp32/bf16 x checkpointing off/on, and
#       oneDNN off) and of sampling (fp32/bf16), each in its own process, side by side; frozen weights' size per dtype
#   scripts/bench.sh robustness [--per-loader 250] [--kills 20] [--classify-per-loader 100] [--classify-kills 10] [--only diffusion|classify] [--seed 0] [--report FILE]
#       damaged safetensors, images, configs, manifests, pickles and kill -9 fed to cdiff and cdiff classify: crashes, wrong exit codes
#   scripts/bench.sh onednn-conv [--trials 30]
#       oneDNN's input gradient through few-channel convolutions (conv_out) against libtorch's own kernel, plain and
#       padded (Models/OneDnnSafeConv): whether this libtorch still needs the workaround
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
mode="${1:-}"; shift || true
dotnet build benchmarks/ContinualDiffusion.Benchmarks -c Release -v quiet -nologo >/dev/null
bench=(dotnet benchmarks/ContinualDiffusion.Benchmarks/bin/Release/net10.0/ContinualDiffusion.Benchmarks.dll)
given() { local a; for a in "${@:2}"; do [[ "$a" == "$1" ]] && return 0; done; return 1; }   # an option given twice is an error
case "$mode" in
  unet)
    defaults=(); given --config "$@" || defaults=(--config tests/fixtures/configs/sd15/unet.json)
    exec "${bench[@]}" "${defaults[@]+"${defaults[@]}"}" "$@" ;;
  train|sample)
    arch="sd15"; [[ "$mode" == train ]] && arch="tiny"
    if [[ $# -gt 0 && "$1" != --* ]]; then arch="$1"; shift; fi
    defaults=()
    given --model-config "$@" || defaults+=(--model-config "configs/models/$arch.json")
    given --tokenizer "$@" || defaults+=(--tokenizer tests/fixtures/sd-tiny/tokenizer)
    exec "${bench[@]}" "$mode" "${defaults[@]+"${defaults[@]}"}" "$@" ;;
  classifier|prompts|robustness|memory|onednn-conv)
    exec "${bench[@]}" "$mode" "$@" ;;
  *)
    sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
esac
