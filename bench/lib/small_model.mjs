// The benchmarks' shared model: the small Qwen2-VL whose config the PyTorch peer prints
// (bench/peers/model_forward.py --print-config), so both sides build the same architecture, and
// the image-size flag in Qwen2-VL's 14-px patches.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { models, nn, torch } from 'vlalign';

/** The Python interpreter of the peers (Debian's, with python3-torch, unless PYTHON says otherwise). */
export const PYTHON = process.env.PYTHON || '/usr/bin/python3';

const configScript = path.join(path.dirname(fileURLToPath(import.meta.url)), '../peers/model_forward.py');

/** The small Qwen2-VL's config.json, as the peer defines it. */
export function smallQwen2VlConfig() {
  const child = spawnSync(PYTHON, [configScript, '--print-config'], { encoding: 'utf8', env: process.env });
  if (child.error || child.status !== 0) {
    throw new Error(
      `${PYTHON} ${configScript} --print-config failed: ${child.error?.message ?? child.stderr} (set PYTHON to an interpreter with torch)`,
    );
  }
  return JSON.parse(child.stdout);
}

/**
 * Writes the small Qwen2-VL, float32 weights drawn from `seed`, as an HF checkpoint in `dir`.
 * `withoutStopTokens`: no eos_token_id, so generation runs every completion to its length limit
 * (the token count the peers force with min_new_tokens).
 */
export async function writeSmallQwen2Vl(dir, { seed, withoutStopTokens = false }) {
  const config = smallQwen2VlConfig();
  torch.manualSeed(seed);
  const model = new models.QwenVLForConditionalGeneration(config, { dtype: 'float32', device: 'cpu' });
  try {
    nn.initWeights(model, config.initializer_range ?? 0.02);
    await models.savePretrained(model, dir);
    if (withoutStopTokens) dropStopTokens(dir);
    return { config, params: model.numParameters(), visionParams: model.visual.numParameters() };
  } finally {
    model.dispose();
  }
}

function dropStopTokens(checkpoint) {
  const file = path.join(checkpoint, 'config.json');
  const config = JSON.parse(fs.readFileSync(file, 'utf8'));
  config.eos_token_id = [];
  fs.writeFileSync(file, JSON.stringify(config, null, 2));
}

/**
 * An `--image HxW` flag in 14-px patches, both even (Qwen2-VL merges 2 x 2 patches) and > 0.
 * `example` is the flag's default, shown in the error with its size in pixels.
 */
export function parsePatchGrid(text, example) {
  const [h, w] = String(text).toLowerCase().split('x').map(Number);
  if (!Number.isInteger(h) || !Number.isInteger(w) || h <= 0 || w <= 0 || h % 2 || w % 2) {
    const [eh, ew] = example.split('x').map(Number);
    throw new Error(
      `--image expects HxW in 14-px patches, both even and > 0 (${example} = ${eh * 14}x${ew * 14} px), got ${text}`,
    );
  }
  return [h, w];
}
