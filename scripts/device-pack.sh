#!/usr/bin/env bash
# Prepares what scripts/device-check.sh needs on a GPU machine that has no Node and no network, in
# .device/ (git-ignored; carry it with the working tree, 64 MiB at most):
#   node.tar.xz          this machine's node binary and its headers (bin/node, include/node)
#   node_modules.tar.xz  the production dependencies only (npm ls --omit=dev), no vitest
#   dist.tar.xz          dist/ built from this working tree (npm run build:ts)
# and prints their sizes. Run it here, after the last change to lib/:
#   bash scripts/device-pack.sh
set -euo pipefail
cd "$(dirname "$0")/.."
out=.device
limit_mib=64
rm -rf "$out" && mkdir -p "$out"
stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT

node_bin="$(readlink -f "$(command -v node)")"
node_headers="$(dirname "$node_bin")/../include/node"
[ -f "$node_headers/node.h" ] || node_headers=/usr/include/node
[ -f "$node_headers/node.h" ] || { echo "device-pack: no Node headers next to $node_bin or in /usr/include/node" >&2; exit 1; }
mkdir -p "$stage/node/bin" "$stage/node/include"
cp "$node_bin" "$stage/node/bin/node"
cp -r "$node_headers" "$stage/node/include/node"
echo "device-pack: node $("$node_bin" --version) from $node_bin, headers from $node_headers"
nice -n 10 tar -C "$stage" -cf - node | nice -n 10 xz -T2 -6 > "$out/node.tar.xz"

# Production dependencies: every package directory npm lists, nested ones included.
npm ls --omit=dev --parseable --all 2>/dev/null | sed "s#^$PWD/##" | grep '^node_modules/' | sort -u > "$stage/modules.txt"
echo "device-pack: $(wc -l < "$stage/modules.txt") production packages"
nice -n 10 tar -cf - --no-recursion -T <(find $(cat "$stage/modules.txt") -print | sort -u) | nice -n 10 xz -T2 -6 > "$out/node_modules.tar.xz"

nice -n 10 npm run --silent build:ts
nice -n 10 tar -cf - --exclude='*.map' dist | nice -n 10 xz -T2 -6 > "$out/dist.tar.xz"

total=0
for f in "$out"/*; do
  size=$(stat -c %s "$f")
  total=$((total + size))
  printf 'device-pack: %-28s %6.1f MiB\n' "$f" "$(echo "$size / 1048576" | bc -l)"
done
printf 'device-pack: total %.1f MiB of the %d MiB a carry may hold\n' "$(echo "$total / 1048576" | bc -l)" "$limit_mib"
[ "$total" -le $((limit_mib * 1048576)) ] || { echo "device-pack: .device/ is over ${limit_mib} MiB" >&2; exit 1; }
