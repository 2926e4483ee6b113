// Freezing on the tiny Qwen2-VL and InternVL checkpoints: which parameter names stay trainable.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fromPretrained } from '../../lib/models/pretrained.js';
import type { CausalLM } from '../../lib/models/causal_lm.js';
import { writeTinyCheckpoint } from '../../lib/tiny/index.js';
import { applyFreezing, type FreezeOptions } from '../../lib/train/freeze.js';

const root = mkdtempSync(join(tmpdir(), 'vlalign-freeze-'));
const models: Record<string, CausalLM> = {};

beforeAll(async () => {
  for (const family of ['qwen2_vl', 'internvl'] as const) {
    await writeTinyCheckpoint(join(root, family), family, { seed: 1 });
  }
});
afterAll(() => {
  for (const m of Object.values(models)) m.dispose();
  rmSync(root, { recursive: true, force: true });
});

async function trainableAfter(family: 'qwen2_vl' | 'internvl', options: FreezeOptions) {
  const model = await fromPretrained(join(root, family));
  const counts = applyFreezing(model, options);
  const names = [...model.namedParameters()].filter(([, p]) => p.requiresGrad).map(([n]) => n);
  const numel = (keep: (n: string) => boolean) =>
    [...model.namedParameters()].filter(([n]) => keep(n)).reduce((s, [, p]) => s + p.numel(), 0);
  const result = { counts, names, numel };
  models[`${family}-${Object.keys(options).join()}`] = model;
  return result;
}

const tops = (names: string[]) =>
  [...new Set(names.map((n) => (n.startsWith('visual.merger.') ? 'visual.merger' : n.split('.')[0])))].sort();

describe('applyFreezing', () => {
  it('Qwen2-VL: vision tower without the merger, the merger as the projector, the LLM with lm_head', async () => {
    const vt = await trainableAfter('qwen2_vl', { freezeVisionTower: true });
    expect(tops(vt.names)).toEqual(
      ['model', 'visual.merger', ...(vt.names.some((n) => n.startsWith('lm_head')) ? ['lm_head'] : [])].sort(),
    );
    expect(vt.counts.trainable).toBe(vt.numel((n) => !n.startsWith('visual.') || n.startsWith('visual.merger.')));
    expect(vt.counts.total).toBe(vt.numel(() => true));
    const mlp = await trainableAfter('qwen2_vl', { freezeMlp: true });
    expect(mlp.names.some((n) => n.startsWith('visual.merger.'))).toBe(false);
    expect(mlp.names.some((n) => n.startsWith('visual.blocks.'))).toBe(true);
    const llm = await trainableAfter('qwen2_vl', { freezeLlm: true });
    expect(tops(llm.names)).toEqual(['visual', 'visual.merger']);
  });

  it('InternVL: freeze_backbone = vision_model, freeze_mlp = mlp1, freeze_llm = language_model', async () => {
    const backbone = await trainableAfter('internvl', { freezeBackbone: true });
    expect(tops(backbone.names)).toEqual(['language_model', 'mlp1']);
    const mlp = await trainableAfter('internvl', { freezeMlp: true, freezeLlm: true });
    expect(tops(mlp.names)).toEqual(['vision_model']);
    expect(mlp.counts.trainable).toBe(mlp.numel((n) => n.startsWith('vision_model.')));
    const none = await trainableAfter('internvl', {});
    expect(none.counts.trainable).toBe(none.counts.total);
  });
});
