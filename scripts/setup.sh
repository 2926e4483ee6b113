#!/usr/bin/env bash
# Sets up vlalign on a fresh Debian machine: the system packages libtorch needs, the npm
# dependencies, the native addon (the shipped prebuild when it loads, else a source build) and the
# TypeScript build. Safe to run again: it installs only what is missing.
#   bash scripts/setup.sh                                # what `npm run demo` and `npm test` need
#   VLALIGN_BUILD_FROM_SOURCE=1 bash scripts/setup.sh   # always compile the addon
# The Python peers (python3-torch, python3-pil, python3-numpy) are test and benchmark dependencies:
# the tests cross-check against them, so they are installed too; so is cpplint, which `npm test`
# runs over cpp/.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(libtorch-dev libgloo-dev libopenblas0-openmp python3-torch python3-pil python3-numpy cpplint)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if ((${#missing[@]})); then
  echo "vlalign setup: installing ${missing[*]}"
  if [[ $(id -u) -eq 0 ]]; then sudo=(); elif command -v sudo >/dev/null; then sudo=(sudo); else
    echo "vlalign setup: cannot install ${missing[*]}: not root and no sudo. Run as root:" >&2
    echo "  apt-get update && apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
  if ! "${sudo[@]}" apt-get update -qq || ! DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq "${missing[@]}"; then
    echo "vlalign setup: apt-get could not install ${missing[*]}; install them (or point LIBTORCH at a libtorch) and rerun" >&2
    exit 1
  fi
else
  echo "vlalign setup: system packages present (${packages[*]})"
fi

# npm ci runs the package's install step (scripts/install.mjs), which picks or builds the addon.
if [[ -f package-lock.json ]]; then npm ci --no-audit --no-fund; else npm install --no-audit --no-fund; fi
npm run build:ts
node --input-type=module -e "import { torch } from './dist/index.js'; const i = torch.buildInfo(); console.log('vlalign setup: ready (libtorch ' + i.torchVersion + ', ' + torch.getNumThreads() + ' threads, sources ' + i.sourceHash + ')')"
