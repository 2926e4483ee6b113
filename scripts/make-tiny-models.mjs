#!/usr/bin/env node
// Writes tiny random checkpoints of each family in the Hugging Face directory format:
//   node scripts/make-tiny-models.mjs <out-dir> [--family qwen2_vl|qwen2_5_vl|internvl] [--seed N]
// Each family goes to <out-dir>/<family>/ (config.json, model.safetensors, tokenizer files).
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { tiny } from 'vlalign';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: { family: { type: 'string', multiple: true }, seed: { type: 'string', default: '0' } },
});
if (positionals.length !== 1) {
  console.error('usage: node scripts/make-tiny-models.mjs <out-dir> [--family name]... [--seed N]');
  process.exit(2);
}
const families = values.family ?? tiny.TINY_FAMILIES;
for (const family of families) {
  if (!tiny.TINY_FAMILIES.includes(family)) {
    console.error(`unknown family '${family}' (known: ${tiny.TINY_FAMILIES.join(', ')})`);
    process.exit(2);
  }
  const dir = join(positionals[0], family);
  await tiny.writeTinyCheckpoint(dir, family, { seed: Number(values.seed) });
  console.log(`wrote ${dir}`);
}
