#!/usr/bin/env bash
# C-LoRA training-step benchmark (random weights): step time at task 1 and task 5 side by side, peak RSS,
# adapter bytes per task at ranks 4 and 16.
# Usage: scripts/bench-train.sh [tiny|sd15] [extra options, e.g. --steps 3 --batch 1 --resolution 512]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
arch="${1:-tiny}"; shift || true
dotnet build benchmarks/ContinualDiffusion.Benchmarks -c Release -v quiet -nologo >/dev/null
exec dotnet benchmarks/ContinualDiffusion.Benchmarks/bin/Release/net10.0/ContinualDiffusion.Benchmarks.dll train \
  --model-config "configs/models/$arch.json" --tokenizer tests/fixtures/sd-tiny/tokenizer "$@"
