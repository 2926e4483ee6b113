#!/usr/bin/env bash
# CI's consumer job: vlalign as a user gets it. Packs this checkout (`npm pack`), checks the tarball
# holds what a source build needs and nothing else, installs it into a fresh temporary project
# (`npm install <tarball>`; offline once npm's cache is warm), then through the installed package
# only: imports it, runs a tiny Qwen2-VL forward (loss and gradient) and one training step of a tiny
# SFT recipe with `npx vlalign train`. Twice: first on the shipped prebuild, then after forcing a
# source build with the consumer's own command, `npx vlalign build`. Each phase prints its time.
#   bash scripts/consumer-check.sh            KEEP=1 keeps the temporary project; JOBS=n compile jobs;
#                                             BINARY_OUT=file keeps a copy of the source-built binary
#                                             (CI runs its smoke tests on it)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

phase_start=$SECONDS
phase() {
  echo "consumer-check: phase '$1' took $((SECONDS - phase_start)) s"
  phase_start=$SECONDS
}
fail() {
  echo "consumer-check: $*" >&2
  exit 1
}

work=$(mktemp -d "${TMPDIR:-/tmp}/vlalign-consumer-XXXXXX")
if [ "${KEEP:-0}" = 1 ]; then echo "consumer-check: keeping $work"; else trap 'rm -rf "$work"' EXIT; fi

# --- 1. The tarball: what the source build needs, nothing else --------------------------------
npm run --silent build:ts
tarball="$work/$(npm pack --silent --pack-destination "$work" | tail -n 1)"
tar -tzf "$tarball" | sed 's|^package/||' | sort >"$work/files.txt"
required=(package.json README.md bin/vlalign.mjs dist/index.js dist/internal.js dist/torch/native.js
  dist/cli/build_addon.js prebuilds/linux-x64/vlalign.napi.node binding.gyp CMakeLists.txt
  scripts/install.mjs scripts/build-native.mjs scripts/native-build.cjs)
mapfile -t sources < <(find cpp -type f | sort)
for file in "${required[@]}" "${sources[@]}"; do
  grep -qxF "$file" "$work/files.txt" || fail "the tarball lacks $file"
done
allowed='^(package\.json|README\.md|LICENSE|bin/vlalign\.mjs|binding\.gyp|CMakeLists\.txt|scripts/(install\.mjs|build-native\.mjs|native-build\.cjs)|prebuilds/linux-x64/vlalign\.napi\.node|cpp/.+|dist/.+\.(js|d\.ts))$'
unexpected=$(grep -vE "$allowed" "$work/files.txt" || true)
[ -z "$unexpected" ] || fail "the tarball holds files a user does not need:
$(echo "$unexpected" | head -20)$([ "$(echo "$unexpected" | wc -l)" -gt 20 ] && echo "
... $(echo "$unexpected" | wc -l) in all")"
echo "consumer-check: $(basename "$tarball"): $(wc -l <"$work/files.txt") files, $(du -k "$tarball" | cut -f1) KiB"
phase "npm pack + file list"

# --- 2. A fresh project installs the tarball ------------------------------------------------
project="$work/project"
mkdir -p "$project"
cd "$project"
npm init -y >/dev/null
npm install --no-audit --no-fund --prefer-offline "$tarball"
installed="$project/node_modules/vlalign"
[ ! -e "$installed/build" ] || fail "the install built from source, but the prebuild fits this machine"
# npm 11 ran the install script, unreviewed, with a warning; it kept the prebuild (it loads here).
grep -q '"outcome": "using prebuilds/linux-x64/vlalign.napi.node"' "$installed/.vlalign-install.json" ||
  fail "the install script did not run, or did not keep the prebuild"
npm install-scripts approve vlalign
if npm install-scripts ls | grep -q vlalign; then fail "npm install-scripts approve vlalign left it unreviewed"; fi
phase "npm install <tarball>"

# The consumer's program: only the installed package's public exports (and sharp, its dependency).
cat >consumer.mjs <<'EOF'
// Usage: node consumer.mjs <prebuilds|build>: which binary must have loaded.
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { losses, models, processing, tiny, torch } from 'vlalign';
import { nativeBinaryPath } from 'vlalign/internal';

const expected = process.argv[2];
assert.ok(nativeBinaryPath.includes(`/node_modules/vlalign/${expected}/`), `loaded ${nativeBinaryPath}`);
const sharp = createRequire(import.meta.resolve('vlalign/package.json'))('sharp');
const info = torch.buildInfo();

await tiny.writeTinyCheckpoint('tiny-qwen2-vl', 'qwen2_vl', { seed: 0 });
const model = await models.fromPretrained('tiny-qwen2-vl');
const processor = await processing.fromPretrained('tiny-qwen2-vl');
const square = { create: { width: 56, height: 56, channels: 3, background: { r: 220, g: 40, b: 40 } } };
const image = await sharp(square).png().toBuffer();
const chat = [
  { role: 'user', content: [{ type: 'image' }, { type: 'text', text: 'What colour is the square?' }] },
  { role: 'assistant', content: [{ type: 'text', text: 'The square is red.' }] },
];
const batch = await processor.process({ messages: chat, images: [image] });
model.train();
const loss = torch.tidy(() => {
  const { logits } = model.forward(batch);
  const targets = losses.targetsFromLabels(batch.labels);
  return torch.nn.functional.crossEntropy(logits.squeeze(0), targets.squeeze(0));
});
loss.backward();
const value = loss.item();
assert.ok(Number.isFinite(value) && value > 0, `loss ${value}`);
assert.ok(model.visual.patch_embed.proj.weight.grad !== null, 'no gradient reached the vision tower');
model.dispose();

// Data and recipe for `npx vlalign train`: two TRL `messages` rows with the same picture.
mkdirSync('sft/images', { recursive: true });
writeFileSync('sft/images/red.png', image);
const row = JSON.stringify({ messages: chat.map((m) => ({ ...m, content: m.content.map((c) => ({ text: null, ...c })) })), images: ['images/red.png'] });
writeFileSync('sft/train.jsonl', `${row}\n${row}\n`);
writeFileSync(
  'sft.yaml',
  ['trainer: sft', 'model_name_or_path: tiny-qwen2-vl', 'dataset:', '  format: trl', '  path: sft/train.jsonl',
    'per_device_train_batch_size: 2', 'max_steps: 1', 'save_steps: 1', 'logging_steps: 1', 'report_to: []',
    'output_dir: runs/sft', ''].join('\n'),
);
console.log(
  `consumer: ${nativeBinaryPath} (libtorch ${info.torchVersion}, ${info.cuda ? 'CUDA' : 'CPU'}): tiny qwen2_vl forward, loss ${value.toFixed(4)}, gradient reaches the vision tower`,
);
EOF

# Forward + one recipe step through the installed package; $1: the folder the binary must come from.
run_consumer() {
  rm -rf tiny-qwen2-vl sft runs sft.yaml
  node consumer.mjs "$1"
  npx vlalign train sft.yaml
  [ -f runs/sft/checkpoint-1/checkpoint_complete.json ] || fail "the training step wrote no checkpoint-1"
  node -e '
    const lines = require("fs").readFileSync("runs/sft/metrics.jsonl", "utf8").trim().split("\n").map(JSON.parse);
    const step = lines.find((l) => typeof l.loss === "number");
    if (!step || !Number.isFinite(step.loss)) { console.error("no finite training loss in metrics.jsonl"); process.exit(1); }
    console.log(`consumer: one SFT step through npx vlalign train, loss ${step.loss}`);'
}

run_consumer prebuilds
phase "prebuild: forward + one training step"

# --- 3. The source build, as a user forces it ---------------------------------------------
nice -n 10 npx vlalign build ${JOBS:+--jobs "$JOBS"}
[ -f "$installed/build/Release/vlalign.node" ] || fail "npx vlalign build left no build/Release/vlalign.node"
phase "npx vlalign build (source build in node_modules/vlalign)"
run_consumer build
phase "source build: forward + one training step"
if [ -n "${BINARY_OUT:-}" ]; then cp "$installed/build/Release/vlalign.node" "$BINARY_OUT"; fi
echo "consumer-check: passed in $SECONDS s ($root)"
