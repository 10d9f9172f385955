#!/usr/bin/env bash
# One-time set-up on Debian 12+ / Ubuntu 22.04+ with the .NET 10 SDK: installs the Fashion-MNIST data package
# (used by the demo, the benchmark and some tests) and builds cdiff (NuGet restores TorchSharp + libtorch).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
command -v dotnet >/dev/null || { echo "setup: the .NET 10 SDK is required (dotnet not on PATH)" >&2; exit 2; }
if ! dpkg -s dataset-fashion-mnist >/dev/null 2>&1; then
  echo "setup: installing Debian package dataset-fashion-mnist (Fashion-MNIST, MIT)..." >&2
  sudo_cmd=""; [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq dataset-fashion-mnist
fi
dotnet build "$root/ContinualDiffusion.sln" -c Release -nologo -v quiet -clp:ErrorsOnly
echo "setup: done" >&2
