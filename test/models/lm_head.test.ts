// model.lmHead(): the output projection the losses take ({ weight, bias }), for every family. It is
// the lm_head Linear (the embedding when tied), the model's own logits are exactly linear(hidden,
// weight, bias) with it, and it is read at each call, so a swapped lm_head shows.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { models, nn, tiny, torch } from '../../lib/index.js';

const root = mkdtempSync(join(tmpdir(), 'vlalign-lm-head-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

async function tinyModel(family: tiny.TinyFamily, tied = false): Promise<models.CausalLM> {
  const dir = join(root, `${family}${tied ? '-tied' : ''}`);
  await tiny.writeTinyCheckpoint(dir, family, { seed: 7 });
  if (tied) {
    const file = join(dir, 'config.json');
    const config = JSON.parse(readFileSync(file, 'utf8'));
    const text = family === 'internvl' ? config.llm_config : config;
    text.tie_word_embeddings = true;
    writeFileSync(file, JSON.stringify(config));
  }
  return models.fromPretrained(dir);
}

describe('lmHead()', () => {
  for (const family of tiny.TINY_FAMILIES) {
    it(`${family}: lm_head's weight, no bias; the forward's logits use exactly it`, async () => {
      const model = await tinyModel(family);
      const head = model.lmHead();
      const name = family === 'internvl' ? 'language_model.lm_head' : 'lm_head';
      const linear = model.getSubmodule(name) as nn.Linear;
      expect(head.weight).toBe(linear.weight);
      expect(head.bias ?? null).toBeNull();
      expect(model.outputWeight()).toBe(head.weight);
      torch.tidy(() => {
        const inputIds = torch.tensor([[5, 9, 2, 7]], { dtype: 'int64' });
        const out = torch.noGrad(() => model.forward({ inputIds }));
        const logits = torch.nn.functional.linear(out.hidden, head.weight, head.bias);
        expect(out.logits!.equal(logits)).toBe(true);
      });
      model.dispose();
    });
  }

  it('tied embeddings: the embedding weight', async () => {
    const model = await tinyModel('qwen2_vl', true);
    const embed = model.stateDict().get('model.embed_tokens.weight')!;
    expect(model.lmHead().weight).toBe(embed);
    model.dispose();
  });

  it('is read at each call: a replaced lm_head shows, bias included', async () => {
    const model = (await tinyModel('qwen2_5_vl')) as models.CausalLM & { lm_head: nn.Linear | null };
    const old = model.lm_head!;
    const replacement = new nn.Linear(old.inFeatures, old.outFeatures, { bias: true });
    model.replaceModule('lm_head', replacement);
    expect(model.lmHead().weight).toBe(replacement.weight);
    expect(model.lmHead().bias).toBe(replacement.bias);
    model.dispose();
    old.dispose();
  });
});
