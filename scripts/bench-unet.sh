#!/usr/bin/env bash
# Times one UNet forward at SD 1.5 size (random weights; 64x64 latents, batch 2 as with CFG) and reports peak RSS.
# Usage: scripts/bench-unet.sh [extra options, e.g. --runs 5 --threads 2 --config tests/fixtures/configs/sd21/unet.json]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
dotnet build benchmarks/ContinualDiffusion.Benchmarks -c Release -v quiet -nologo >/dev/null
exec dotnet benchmarks/ContinualDiffusion.Benchmarks/bin/Release/net10.0/ContinualDiffusion.Benchmarks.dll \
  --config tests/fixtures/configs/sd15/unet.json "$@"
