// Preference accuracy against a hand computation: each answer's summed log-prob from its own
// single-row forward (full logits, log-softmax in float64, the answer's tokens picked by the
// processor's labels), rewards β·(policy − reference), ties 0.5; and the 0.5 of a policy equal to
// its reference (a second copy, or the policy with its LoRA adapters disabled).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as torch from '../../lib/torch/index.js';
import { adapters, models, processing, tiny } from '../../lib/index.js';
import type { CausalLM } from '../../lib/models/index.js';
import type { PreferenceRecord } from '../../lib/data/records.js';
import { preferenceAccuracy } from '../../lib/eval/preference.js';
import { pairRecord, pngOf } from './fixtures.js';

const root = mkdtempSync(join(tmpdir(), 'vlalign-eval-pref-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

// Summed log-prob of the completion of one sample, from its own forward.
async function handLogp(
  model: CausalLM,
  processor: processing.Processor,
  record: PreferenceRecord,
  side: 'chosen' | 'rejected',
) {
  const batch = await processor.process([
    { prompt: record.prompt, completion: record[side], images: record.images as Uint8Array[] },
  ]);
  const extras = batch as { imageGridThw?: torch.Tensor | null; imageFlags?: torch.Tensor | null };
  return torch.tidy(() => {
    const out = torch.noGrad(() =>
      model.forward({
        inputIds: batch.inputIds,
        attentionMask: batch.attentionMask,
        pixelValues: batch.pixelValues,
        imageGridThw: extras.imageGridThw ?? null,
        imageFlags: extras.imageFlags ?? null,
      }),
    );
    const logp = out.logits!.squeeze(0).to({ dtype: 'float64' }).logSoftmax(-1).toArray() as number[][];
    const labels = (batch.labels.toArray() as number[][])[0]!;
    let sum = 0;
    for (let t = 1; t < labels.length; t++) if (labels[t]! !== -100) sum += logp[t - 1]![labels[t]!]!;
    return sum;
  });
}

describe('preferenceAccuracy', () => {
  let dir: string;
  let policy: CausalLM;
  let reference: CausalLM;
  let processor: processing.Processor;
  let records: PreferenceRecord[];
  beforeAll(async () => {
    dir = join(root, 'policy');
    await tiny.writeTinyCheckpoint(dir, 'qwen2_vl', { seed: 1 });
    await tiny.writeTinyCheckpoint(join(root, 'ref'), 'qwen2_vl', { seed: 2 });
    policy = await models.fromPretrained(dir);
    reference = await models.fromPretrained(join(root, 'ref'));
    processor = await processing.fromPretrained(dir);
    const image = await pngOf(3);
    records = [
      pairRecord('a', 'what is shown?', 'a red square', 'a blue circle and more', image),
      pairRecord('b', 'count them', 'three', 'seven or eight', null),
      pairRecord('c', 'describe it', 'noise', 'a long winding road', image),
      pairRecord('d', 'yes or no?', 'yes', 'no', null),
    ];
  }, 120_000);
  afterAll(() => {
    policy?.dispose();
    reference?.dispose();
  });

  it('equals β·(log π − log π_ref) per answer computed row by row', async () => {
    const beta = 0.3;
    const result = await preferenceAccuracy(policy, processor, records, { reference, beta, batchSize: 3 });
    let expected = 0;
    for (const [i, record] of records.entries()) {
      const chosen =
        beta *
        ((await handLogp(policy, processor, record, 'chosen')) -
          (await handLogp(reference, processor, record, 'chosen')));
      const rejected =
        beta *
        ((await handLogp(policy, processor, record, 'rejected')) -
          (await handLogp(reference, processor, record, 'rejected')));
      expect(result.pairs[i]!.id).toBe(record.id);
      expect(result.pairs[i]!.chosen).toBeCloseTo(chosen, 4);
      expect(result.pairs[i]!.rejected).toBeCloseTo(rejected, 4);
      expected += chosen > rejected ? 1 : 0;
    }
    expect(result.count).toBe(4);
    expect(result.accuracy).toBeCloseTo(expected / 4, 12);
    const margins = result.pairs.reduce((s, p) => s + p.chosen - p.rejected, 0) / 4;
    expect(result.margins).toBeCloseTo(margins, 12);
  }, 120_000);

  it('scores 0.5 when the policy equals its reference (a second copy of the checkpoint)', async () => {
    const copy = await models.fromPretrained(dir);
    try {
      const result = await preferenceAccuracy(policy, processor, records, { reference: copy, batchSize: 2 });
      expect(result.accuracy).toBe(0.5);
      for (const p of result.pairs) expect([p.chosen, p.rejected, p.correct]).toEqual([0, 0, 0.5]);
    } finally {
      copy.dispose();
    }
  }, 120_000);

  it('with a LoraModel as reference: 0.5 at init (B = 0), and the adapters stay enabled after', async () => {
    const model = await models.fromPretrained(dir);
    const lora = adapters.getPeftModel(model, { r: 4, loraAlpha: 8, targetModules: ['q_proj', 'v_proj'] });
    try {
      const fresh = await preferenceAccuracy(model, processor, records, { reference: lora });
      expect(fresh.accuracy).toBe(0.5);
      // Move B off zero: the policy now differs from its reference, which is the base model.
      torch.noGrad(() => {
        for (const [name, p] of lora.trainableParameters()) if (name.includes('lora_B')) p.normal_(0, 0.5);
      });
      const moved = await preferenceAccuracy(model, processor, records, { reference: lora });
      expect(moved.pairs.some((p) => p.chosen !== 0)).toBe(true);
      // The reference side is the base checkpoint: the same numbers as a separate copy of it.
      const againstCopy = await preferenceAccuracy(model, processor, records, { reference: policy });
      againstCopy.pairs.forEach((p, i) => {
        expect(p.chosen).toBeCloseTo(moved.pairs[i]!.chosen, 5);
        expect(p.rejected).toBeCloseTo(moved.pairs[i]!.rejected, 5);
      });
    } finally {
      model.dispose();
    }
  }, 120_000);

  it('names the record when it is not a preference record', async () => {
    const bad = { ...records[0]!, kind: 'prompt' } as unknown as PreferenceRecord;
    await expect(preferenceAccuracy(policy, processor, [bad], { reference })).rejects.toThrow(
      /a\.jsonl:1: .*preference/,
    );
  });
});
