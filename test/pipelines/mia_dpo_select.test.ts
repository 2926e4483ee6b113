// MIA-DPO's selection: the ratios (sequence means, grid blocks with the remainder split, the
// central block) and the perplexity on hand-made maps; the keep thresholds per form at their
// edges; and the attention the engine measures on a tiny InternVL checked against a second
// computation: the layer's queries and keys rebuilt from its input hidden state (input norm,
// q/k projections, RoPE), the softmax of the causal scores done in plain JavaScript, the head
// mean over the fed generated tokens' rows, then the ratio by hand. On a tiny Qwen2-VL the maps
// take the merged patch grid of each image.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import * as torch from '../../lib/torch/index.js';
import { applyRotary } from '../../lib/nn/index.js';
import { fromPretrained } from '../../lib/models/index.js';
import type { InternVLChatModel } from '../../lib/models/internvl/model.js';
import * as processing from '../../lib/processing/index.js';
import { writeTinyCheckpoint } from '../../lib/tiny/index.js';
import {
  type AttentionMap,
  attentionEngine,
  centerRatio,
  gridRatio,
  imageSpans,
  isRejectedCandidate,
  maxProbPerplexity,
  ratioBound,
  sequenceRatio,
} from '../../lib/pipelines/mia_dpo_select.js';
import { sequencePrompt } from '../../lib/pipelines/mia_dpo_images.js';

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'vlalign-mia-select-'));
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));
const fixture = (name: string) => path.join(import.meta.dirname, '../fixtures/images', name);

const map = (rows: number, cols: number, values: number[]): AttentionMap => ({
  rows,
  cols,
  values: Float64Array.from(values),
});

describe('ratios on hand-made maps', () => {
  it('sequence: the target map mean over the sum of the means (maps of different sizes)', () => {
    const maps = [map(1, 2, [0.1, 0.3]), map(2, 2, [0.1, 0.1, 0.1, 0.1]), map(1, 1, [0.4])];
    // means 0.2, 0.1, 0.4
    expect(sequenceRatio(maps, 1)).toBeCloseTo(0.2 / 0.7, 12);
    expect(sequenceRatio(maps, 3)).toBeCloseTo(0.4 / 0.7, 12);
  });
  it('grid: blocks of floor(size / parts), the remainder one each to the first blocks', () => {
    // 5 x 5 map, value = row * 5 + col; 2 x 2 split: rows [0, 3) [3, 5), cols [0, 3) [3, 5)
    const values = Array.from({ length: 25 }, (_, i) => i);
    const m = map(5, 5, values);
    const total = 300;
    const block = (ys: number[], xs: number[]) => ys.reduce((s, y) => s + xs.reduce((t, x) => t + y * 5 + x, 0), 0);
    expect(gridRatio(m, 2, 2, 1)).toBeCloseTo(block([0, 1, 2], [0, 1, 2]) / total, 12);
    expect(gridRatio(m, 2, 2, 2)).toBeCloseTo(block([0, 1, 2], [3, 4]) / total, 12);
    expect(gridRatio(m, 2, 2, 4)).toBeCloseTo(block([3, 4], [3, 4]) / total, 12);
    // 1 x 3 split of 5 columns: [0, 2) [2, 4) [4, 5)
    expect(gridRatio(m, 1, 3, 3)).toBeCloseTo(block([0, 1, 2, 3, 4], [4]) / total, 12);
  });
  it("pic-in-pic: LLaVA's central 16 x 16 of 24 x 24 (rows and columns 4..19)", () => {
    const values = new Array(576).fill(0);
    values[4 * 24 + 4] = 1; // inside (first central cell)
    values[19 * 24 + 19] = 2; // inside (last central cell)
    values[3 * 24 + 10] = 3; // row 3: outside
    values[10 * 24 + 20] = 4; // column 20: outside
    expect(centerRatio(map(24, 24, values))).toBeCloseTo(3 / 10, 12);
  });
  it('perplexity is exp(-mean log max softmax)', () => {
    expect(maxProbPerplexity([0.5, 0.25])).toBeCloseTo(Math.sqrt(8), 12);
    expect(maxProbPerplexity([1, 1, 1])).toBe(1);
  });
  it('finds each image token run', () => {
    expect(imageSpans([1, 9, 9, 2, 9, 3, 9, 9, 9], 9)).toEqual([
      [1, 3],
      [4, 5],
      [6, 9],
    ]);
  });
});

describe('keep thresholds (make_data_duotu / ping / pip)', () => {
  const base = { ppl: 1.5, response: 'a red car', gt: 'a blue car' };
  const keep = (form: 'sequence' | 'grid' | 'pip', count: number, ratio: number, extra = {}) =>
    isRejectedCandidate({ form, count, ratio, ...base, ...extra });
  it('sequence keeps shares up to and including 0.8 / 0.7 / 0.6 / 0.6', () => {
    expect([2, 3, 4, 5].map((n) => ratioBound('sequence', n).bound)).toEqual([0.8, 0.7, 0.6, 0.6]);
    expect(keep('sequence', 2, 0.8)).toBe(true);
    expect(keep('sequence', 2, 0.80001)).toBe(false);
    expect(keep('sequence', 3, 0.7)).toBe(true);
    expect(keep('sequence', 3, 0.71)).toBe(false);
    expect(keep('sequence', 5, 0.6)).toBe(true);
    expect(keep('sequence', 4, 0.61)).toBe(false);
  });
  it('grid keeps shares strictly below 0.7 / 0.6 / 0.5 / 0.4 / 0.3', () => {
    const bounds = { 2: 0.7, 3: 0.6, 4: 0.5, 6: 0.4, 9: 0.3 };
    for (const [n, b] of Object.entries(bounds)) {
      expect(keep('grid', Number(n), b)).toBe(false);
      expect(keep('grid', Number(n), b - 1e-6)).toBe(true);
    }
  });
  it('pic-in-pic keeps shares strictly below 0.8', () => {
    expect(keep('pip', 2, 0.8)).toBe(false);
    expect(keep('pip', 2, 0.79)).toBe(true);
  });
  it('needs ppl > 1.1, an answer other than the ground truth, and no empty text; NaN keeps nothing', () => {
    expect(keep('pip', 2, 0.1, { ppl: 1.1 })).toBe(false);
    expect(keep('pip', 2, 0.1, { ppl: 1.1000001 })).toBe(true);
    expect(keep('pip', 2, 0.1, { response: 'a blue car' })).toBe(false);
    expect(keep('pip', 2, 0.1, { response: '' })).toBe(false);
    expect(keep('sequence', 2, Number.NaN)).toBe(false);
  });
});

/** Softmax of the causal scores of query row r over keys 0..r, for one head, in plain numbers. */
function attentionRow(q: Float32Array, k: Float32Array, r: number, hd: number): number[] {
  const scores: number[] = [];
  for (let j = 0; j <= r; j++) {
    let dot = 0;
    for (let d = 0; d < hd; d++) dot += q[r * hd + d]! * k[j * hd + d]!;
    scores.push(dot / Math.sqrt(hd));
  }
  const top = Math.max(...scores);
  const exps = scores.map((s) => Math.exp(s - top));
  const z = exps.reduce((a, b) => a + b, 0);
  return exps.map((e) => e / z);
}

describe('attention measured on a tiny InternVL against a second computation', () => {
  it('gives the head-mean attention of the fed generated tokens on each image, and the ratio', async () => {
    const dir = path.join(root, 'internvl');
    await writeTinyCheckpoint(dir, 'internvl', { seed: 5 });
    const model = (await fromPretrained(dir)) as InternVLChatModel;
    const processor = await processing.fromPretrained(dir);
    const layer = 1;
    const engine = attentionEngine(model, processor, { layer, maxNewTokens: 5 });
    const question = sequencePrompt('<image>\nWhat is shown here?', 2, 2);
    const images = [fixture('img_140x140.png'), fixture('img_320x240.png')];
    const [inspection] = await engine.inspect([{ question, images }], 0);
    const tokens = inspection!.tokens!;
    expect(tokens.length).toBeGreaterThan(2);
    expect(inspection!.maps.map((m) => [m.rows, m.cols])).toEqual([
      [16, 16],
      [16, 16],
    ]); // one 448 tile: 32 x 32 patches, pixel-shuffled by 0.5

    // The second computation: the same prompt ids, the fed tokens, the layer's input hidden state.
    const batch = await processor.process([
      { prompt: [{ role: 'user', content: question }], images: [...images], maxTiles: 1 },
    ]);
    const promptIds = (batch.inputIds.toArray() as number[][])[0]!;
    const fed = tokens.slice(0, -1);
    const ids = [...promptIds, ...fed];
    const { heads, kvHeads, hd, q, k, maxProbs } = torch.noGrad(() =>
      torch.tidy(() => {
        const input = torch.tensor([ids], { dtype: 'int64' });
        const extras = batch as { imageFlags?: torch.Tensor | null };
        const out = model.forward(
          { inputIds: input, pixelValues: batch.pixelValues, imageFlags: extras.imageFlags ?? null },
          { outputHiddenStates: true },
        );
        const decoder = model.language_model.model;
        const attn = decoder.layers.at(layer)!.self_attn;
        const x = decoder.layers.at(layer)!.input_layernorm.forward(out.hiddenStates![layer]!);
        const { numHeads, numKvHeads, headDim } = model.textConfig;
        const L = ids.length;
        const rotary = decoder.rotary(torch.arange(0, L, { dtype: 'int64' }).unsqueeze(0), x.dtype);
        const split = (t: torch.Tensor, n: number) => t.view([1, L, n, headDim]).transpose(1, 2);
        const qs = applyRotary(split(attn.q_proj.forward(x), numHeads), rotary).contiguous();
        const ks = applyRotary(split(attn.k_proj.forward(x), numKvHeads), rotary).contiguous();
        const steps = out
          .logits!.narrow(1, promptIds.length - 1, tokens.length)
          .softmax(-1)
          .amax(-1);
        return {
          heads: numHeads,
          kvHeads: numKvHeads,
          hd: headDim,
          q: qs.data() as Float32Array,
          k: ks.data() as Float32Array,
          maxProbs: Array.from(steps.data() as Float32Array),
        };
      }),
    );
    const L = ids.length;
    const columns = new Float64Array(L);
    for (let h = 0; h < heads; h++) {
      const kv = Math.floor(h / (heads / kvHeads));
      const qh = q.subarray(h * L * hd, (h + 1) * L * hd);
      const kh = k.subarray(kv * L * hd, (kv + 1) * L * hd);
      for (let r = promptIds.length; r < L; r++) {
        attentionRow(qh, kh, r, hd).forEach((p, j) => {
          columns[j]! += p / (heads * fed.length);
        });
      }
    }
    const contextId = model.imgContextTokenId!;
    const spans = promptIds.flatMap((id, i) => (id === contextId && promptIds[i - 1] !== contextId ? [i] : []));
    expect(spans).toHaveLength(2);
    inspection!.maps.forEach((m, i) => {
      const expected = columns.slice(spans[i]!, spans[i]! + 256);
      m.values.forEach((v, j) => expect(v).toBeCloseTo(expected[j]!, 6));
    });
    const means = spans.map((s) => columns.slice(s, s + 256).reduce((a, b) => a + b, 0) / 256);
    expect(sequenceRatio(inspection!.maps, 2)).toBeCloseTo(means[1]! / (means[0]! + means[1]!), 6);
    const ppl = Math.exp(-maxProbs.reduce((s, p) => s + Math.log(p), 0) / maxProbs.length);
    expect(inspection!.ppl).toBeCloseTo(ppl, 5);
    // the probe is removed afterwards
    expect(model.language_model.model.layers.at(layer)!.self_attn.attentionProbe).toBeNull();
  }, 240_000);
});

describe('attention maps on a tiny Qwen2-VL', () => {
  it("take each image's merged patch grid (h / 2, w / 2) and the layer bound is checked", async () => {
    const dir = path.join(root, 'qwen');
    await writeTinyCheckpoint(dir, 'qwen2_vl', { seed: 3 });
    const model = await fromPretrained(dir);
    const processor = await processing.fromPretrained(dir);
    expect(() => attentionEngine(model, processor, { layer: 99, maxNewTokens: 3 })).toThrow(/layer must be in/);
    const engine = attentionEngine(model, processor, { layer: 0, maxNewTokens: 4 });
    const images = [fixture('img_140x140.png'), fixture('img_320x240.png')];
    const [inspection] = await engine.inspect([{ question: sequencePrompt('What is it?', 2, 1), images }], 0);
    const batch = (await processor.process([
      { prompt: [{ role: 'user', content: [{ type: 'image' }, { type: 'image' }] }], images },
    ])) as { imageGridThw: torch.Tensor };
    const grids = batch.imageGridThw.toArray() as number[][];
    expect(inspection!.maps.map((m) => [m.rows, m.cols])).toEqual(grids.map(([, h, w]) => [h! / 2, w! / 2]));
    for (const m of inspection!.maps) {
      expect(m.values.length).toBe(m.rows * m.cols);
      expect(m.values.every((v) => v >= 0 && v <= 1)).toBe(true);
    }
    expect(inspection!.ppl).toBeGreaterThanOrEqual(1);
  }, 240_000);
});
