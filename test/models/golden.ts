// The golden fixtures (reference outputs of transformers and InternVL for tiny random checkpoints):
// see test/fixtures/golden/README.md.
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { expect } from 'vitest';
import * as torch from '../../lib/torch/index.js';
import type { Tensor } from '../../lib/torch/index.js';
import type { KVCache } from '../../lib/nn/index.js';
import type { CausalLM, ModelInputs } from '../../lib/models/index.js';

export const goldenDir = (family: string): string =>
  fileURLToPath(new URL(`../fixtures/golden/${family}`, import.meta.url));

export interface GoldenCase {
  inputs: Record<string, Tensor>;
  expected: Record<string, Tensor>;
  info: { greedy: { new_tokens: number[] }; seq_len: number; last_token_argmax: number };
}

const byCase = (all: Record<string, Tensor>, name: string): Record<string, Tensor> =>
  Object.fromEntries(
    Object.entries(all)
      .filter(([k]) => k.startsWith(`${name}.`))
      .map(([k, v]) => [k.slice(name.length + 1), v]),
  );

export async function loadGolden(family: string): Promise<Record<string, GoldenCase>> {
  const dir = goldenDir(family);
  const inputs = await torch.loadSafetensors(`${dir}/inputs.safetensors`);
  const expected = await torch.loadSafetensors(`${dir}/expected.safetensors`);
  const cases = JSON.parse(readFileSync(`${dir}/cases.json`, 'utf8')).cases as Record<string, GoldenCase['info']>;
  return Object.fromEntries(
    Object.entries(cases).map(([name, info]) => [
      name,
      { inputs: byCase(inputs, name), expected: byCase(expected, name), info },
    ]),
  );
}

export function maxAbsDiff(a: Tensor, b: Tensor): number {
  expect(a.shape).toEqual(b.shape);
  return torch.tidy(() => a.double().sub(b.double()).abs().max().item());
}

export function expectClose(actual: Tensor, expected: Tensor, atol: number, rtol = 0): void {
  expect(actual.shape).toEqual(expected.shape);
  const excess = torch.tidy(() => {
    const diff = actual.double().sub(expected.double()).abs();
    return diff.sub(expected.double().abs().mul(rtol).add(atol)).max().item();
  });
  expect(excess, `max |diff| ${maxAbsDiff(actual, expected)} over tolerance`).toBeLessThanOrEqual(0);
}

export const ints = (t: Tensor): number[] => (t.toArray() as number[]).flat(Infinity as 1) as number[];

/**
 * Prefill, then one token at a time through `cache`, checking each step's last-position logits
 * against the reference's uncached `stepLogits` (1e-4). Returns the tokens and the largest diff.
 */
export function greedyThroughCache(
  model: CausalLM,
  prompt: ModelInputs,
  cache: KVCache,
  stepLogits: Tensor,
): { tokens: number[]; worst: number } {
  const tokens: number[] = [];
  let worst = 0;
  let mask = prompt.attentionMask!;
  let out = torch.noGrad(() => model.forward(prompt, { cache }));
  for (let step = 0; step < stepLogits.shape[0]!; step++) {
    const last = out.logits!.select(1, -1).squeeze(0);
    worst = Math.max(worst, maxAbsDiff(last, stepLogits.select(0, step)));
    expectClose(last, stepLogits.select(0, step), 1e-4);
    const next = last.argmax(-1).item() as number;
    tokens.push(next);
    mask = torch.cat([mask, torch.ones([1, 1], { dtype: 'int64' })], 1);
    out = torch.noGrad(() =>
      model.forward({ inputIds: torch.tensor([[next]], { dtype: 'int64' }), attentionMask: mask }, { cache }),
    );
  }
  return { tokens, worst };
}
