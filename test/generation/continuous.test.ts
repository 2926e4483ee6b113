// Continuous batching against decoding each prompt alone: greedy against transformers' golden
// continuations and generate() on one prompt; sampled against a second implementation with no
// cache and no batch (a full forward over prompt + tokens each step, the row's own uniforms).
// Rows join mid-flight with other prompt lengths, images (M-RoPE deltas), stop tokens and prompts
// longer than the running cache. The per-row sampler is checked against hand-computed inverse CDFs
// and its distribution.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as torch from '../../lib/torch/index.js';
import type { Tensor } from '../../lib/torch/index.js';
import {
  chooseNext,
  generate,
  generateContinuous,
  streamUniform,
  type ContinuousOptions,
  type ContinuousPrompt,
  type ContinuousResult,
} from '../../lib/generation/index.js';
import { fromPretrained, type CausalLM, type ModelInputs } from '../../lib/models/index.js';
import { goldenDir, loadGolden, type GoldenCase } from '../models/golden.js';

async function collect<K>(
  model: CausalLM,
  prompts: Array<ContinuousPrompt<K>>,
  options: ContinuousOptions,
): Promise<Map<K, ContinuousResult<K>>> {
  const out = new Map<K, ContinuousResult<K>>();
  for await (const result of generateContinuous(model, prompts, options)) {
    expect(out.has(result.key)).toBe(false);
    out.set(result.key, result);
  }
  return out;
}

const ids = (row: number[]): Tensor => torch.tensor([row], { dtype: 'int64' });

describe('streamUniform', () => {
  it('is a pure function of (seed, stream, substream, step), in [0, 1) with 24 bits', () => {
    const a = streamUniform(3, 7, 0, 11);
    expect(streamUniform(3, 7, 0, 11)).toBe(a);
    const neighbours = [
      streamUniform(4, 7, 0, 11),
      streamUniform(3, 8, 0, 11),
      streamUniform(3, 7, 1, 11),
      streamUniform(3, 7, 0, 12),
      streamUniform(3, 7 + 2 ** 32, 0, 11),
    ];
    for (const b of neighbours) expect(b).not.toBe(a);
    for (let s = 0; s < 200; s++) {
      const u = streamUniform(0, s, 0, 0);
      expect(u >= 0 && u < 1).toBe(true);
      expect(Number.isInteger(u * 2 ** 24)).toBe(true);
    }
    expect(() => streamUniform(-1, 0, 0, 0)).toThrow(/seed/);
    expect(() => streamUniform(0, 0.5, 0, 0)).toThrow(/stream/);
  });

  it('is uniform: 16 equal bins over 32,000 draws pass a chi-square test, and lag-1 pairs are uncorrelated', () => {
    const bins = new Array<number>(16).fill(0);
    let prev = streamUniform(1, 0, 0, 0);
    let cross = 0;
    const draws = 32_000;
    for (let i = 0; i < draws; i++) {
      const u = streamUniform(1, i % 1000, i % 3, Math.floor(i / 1000));
      bins[Math.floor(u * 16)]! += 1;
      cross += (u - 0.5) * (prev - 0.5);
      prev = u;
    }
    const expected = draws / 16;
    const chi2 = bins.reduce((sum, b) => sum + (b - expected) ** 2 / expected, 0);
    expect(chi2).toBeLessThan(37.7); // chi-square, 15 degrees of freedom, p = 0.001
    // Correlation of consecutive draws: sd of the estimate is 1/sqrt(draws) ≈ 0.0056.
    expect(Math.abs(cross / draws / (1 / 12))).toBeLessThan(0.03);
  });
});

describe('chooseNext with per-row uniforms', () => {
  it('draws the first token whose cumulative probability exceeds u (hand-computed CDFs)', () => {
    torch.tidy(() => {
      // probabilities 0.1, 0.2, 0.3, 0.4: CDF 0.1, 0.3, 0.6, 1.0
      const logits = torch.tensor([Math.log(0.1), Math.log(0.2), Math.log(0.3), Math.log(0.4)]).reshape([1, 4]);
      const rows = logits.expand([6, 4]).contiguous();
      const u = torch.tensor([0.05, 0.15, 0.29, 0.31, 0.59, 0.99]);
      const choice = chooseNext(rows, { doSample: true }, u);
      expect(choice.tokens.toArray()).toEqual([0, 1, 1, 2, 2, 3]);
      // top-k 2 keeps 0.3 and 0.4: renormalised CDF 0, 0, 3/7, 1
      const topK = chooseNext(rows, { doSample: true, topK: 2 }, torch.tensor([0.01, 0.42, 0.44, 0.9, 0.2, 0.6]));
      expect(topK.tokens.toArray()).toEqual([2, 2, 3, 3, 2, 3]);
      // temperature 0.5 squares the probabilities: 1, 4, 9, 16 over 30; CDF 1/30, 5/30, 14/30, 1
      const cold = chooseNext(
        rows,
        { doSample: true, temperature: 0.5 },
        torch.tensor([0.03, 0.04, 0.16, 0.17, 0.46, 0.47]),
      );
      expect(cold.tokens.toArray()).toEqual([0, 1, 1, 2, 2, 3]);
      // logprobs stay log softmax(logits / T) of the chosen tokens
      const lp = cold.logprobs.toArray() as number[];
      [1, 4, 4, 9, 9, 16].forEach((w, i) => expect(lp[i]).toBeCloseTo(Math.log(w / 30), 5));
      expect(() => chooseNext(rows, { doSample: true }, torch.tensor([0.5, 0.5]))).toThrow(/6 uniforms/);
    });
  });

  it('samples softmax(logits / T) after top-k / top-p: frequencies over 20,000 streams pass a chi-square test', () => {
    const weights = [5, 1, 3, 0.5, 2, 0.2, 4, 0.1];
    const rows = 20_000;
    const counts = torch.tidy(() => {
      const logits = torch
        .tensor(weights.map((w) => Math.log(w)))
        .reshape([1, weights.length])
        .expand([rows, weights.length])
        .contiguous();
      const u = torch.tensor(Float32Array.from({ length: rows }, (_, s) => streamUniform(9, s, 0, 4)));
      const tokens = chooseNext(logits, { doSample: true, topK: 6, topP: 0.9 }, u).tokens.toArray() as number[];
      const c = new Array<number>(weights.length).fill(0);
      for (const t of tokens) c[t]! += 1;
      return c;
    });
    // top-k 6 drops 0.2 and 0.1; of 15.5, top-p 0.9 keeps 5, 4, 3, 2 (mass 14/15.5 = 0.903 reached
    // only with 2: the tokens above it have 12/15.5 = 0.77 < 0.9) and drops 1 and 0.5.
    const kept = [5, 0, 3, 0, 2, 0, 4, 0];
    const total = kept.reduce((a, b) => a + b, 0);
    let chi2 = 0;
    kept.forEach((w, t) => {
      if (w === 0) expect(counts[t]).toBe(0);
      else chi2 += (counts[t]! - (rows * w) / total) ** 2 / ((rows * w) / total);
    });
    expect(chi2).toBeLessThan(16.3); // 3 degrees of freedom, p = 0.001
  });
});

describe('generateContinuous on the golden Qwen2-VL', () => {
  let model: CausalLM;
  let cases: Record<string, GoldenCase>;
  let text: number[];
  beforeAll(async () => {
    model = await fromPretrained(goldenDir('qwen2_vl'));
    model.eval();
    cases = await loadGolden('qwen2_vl');
    text = (cases.text_only!.inputs.input_ids!.toArray() as number[][])[0]!;
  });
  afterAll(() => model.dispose());

  const imageInputs = (name: string): ModelInputs => {
    const c = cases[name]!;
    return {
      inputIds: c.inputs.input_ids!.clone(),
      pixelValues: c.inputs.pixel_values!.clone(),
      imageGridThw: c.inputs.image_grid_thw!.clone(),
    };
  };
  // Prompts in arrival order: short text, an image, full text (stops at its 3rd token), two images
  // (71 tokens: longer than the running cache when it joins), text that drops its head.
  const prompts = (): Array<ContinuousPrompt<string>> => [
    { key: 'short', inputs: { inputIds: ids(text.slice(0, 6)) }, stream: 0 },
    { key: 'one_image', inputs: imageInputs('one_image'), stream: 1 },
    { key: 'text', inputs: { inputIds: ids(text) }, stream: 2 },
    { key: 'two_images', inputs: imageInputs('two_images'), stream: 3 },
    { key: 'tail', inputs: { inputIds: ids(text.slice(4)) }, stream: 4 },
  ];
  const stop = 418; // text_only's greedy continuation has it at step 2

  it('greedy: every prompt decodes as alone (golden continuations, generate on one prompt), for 1 to 5 rows in flight', async () => {
    const alone = (row: number[]) =>
      torch.tidy(() => generate(model, { inputIds: ids(row) }, { maxNewTokens: 8, stopTokenIds: [stop] }).tokens[0]!);
    const expected: Record<string, number[]> = {
      short: alone(text.slice(0, 6)),
      one_image: cases.one_image!.info.greedy.new_tokens,
      text: cases.text_only!.info.greedy.new_tokens.slice(0, 3),
      two_images: cases.two_images!.info.greedy.new_tokens,
      tail: alone(text.slice(4)),
    };
    expect(expected.one_image).not.toContain(stop);
    expect(expected.two_images).not.toContain(stop);
    for (const maxRows of [1, 2, 3, 5]) {
      const out = await collect(model, prompts(), { maxRows, maxNewTokens: 8, stopTokenIds: [stop] });
      expect(Object.fromEntries([...out].map(([k, r]) => [k, r.tokens[0]])), `maxRows ${maxRows}`).toEqual(expected);
      expect(out.get('text')!.finishReasons).toEqual(['stop']);
      expect(out.get('one_image')!.finishReasons).toEqual(['length']);
    }
  }, 60_000);

  it('yields prompts as they finish: a prompt that stops early comes out before one admitted earlier', async () => {
    const order: string[] = [];
    for await (const r of generateContinuous(model, prompts(), { maxRows: 2, maxNewTokens: 8, stopTokenIds: [stop] }))
      order.push(r.key);
    // short + one_image start; short ends at 8 tokens with one_image, text (3 tokens) joins next
    // and ends before two_images, which joined with it.
    expect(order.indexOf('text')).toBeLessThan(order.indexOf('two_images'));
    expect(order.sort()).toEqual(['one_image', 'short', 'tail', 'text', 'two_images']);
  }, 60_000);

  it('sampled: each completion equals an uncached, unbatched decode with its own uniforms', async () => {
    const sampling = { doSample: true, temperature: 0.8, topK: 40, topP: 0.95, suppressTokenIds: [7, 9] };
    const seed = 5;
    const n = 2;
    const maxNewTokens = 7;
    const stops = [stop, 441];
    // The second implementation: the whole sequence through the model at every step, no cache.
    const reference = (p: ContinuousPrompt<string>, k: number) => {
      const prompt = (p.inputs.inputIds.toArray() as number[][])[0]!;
      const tokens: number[] = [];
      const logprobs: number[] = [];
      for (let step = 0; step < maxNewTokens; step++) {
        const [token, lp] = torch.tidy(() => {
          const logits = torch.noGrad(
            () =>
              model.forward({
                inputIds: ids([...prompt, ...tokens]),
                pixelValues: p.inputs.pixelValues,
                imageGridThw: p.inputs.imageGridThw,
              }).logits!,
          );
          const last = logits.select(1, -1);
          const u = torch.tensor([streamUniform(seed, p.stream, k, step)]);
          const choice = chooseNext(last, sampling, u);
          return [choice.tokens.item() as number, choice.logprobs.item() as number];
        });
        tokens.push(token);
        logprobs.push(lp);
        if (stops.includes(token)) break;
      }
      return { tokens, logprobs };
    };
    const expected = new Map(prompts().map((p) => [p.key, [0, 1].map((k) => reference(p, k))]));
    let stopped = 0;
    for (const maxRows of [2, 4, 10]) {
      const out = await collect(model, prompts(), {
        ...sampling,
        maxRows,
        numSequences: n,
        seed,
        maxNewTokens,
        stopTokenIds: stops,
      });
      for (const [key, want] of expected) {
        const got = out.get(key)!;
        want.forEach((w, k) => {
          expect(got.tokens[k], `${key} completion ${k}, maxRows ${maxRows}`).toEqual(w.tokens);
          got.logprobs[k]!.forEach((lp, i) => expect(lp).toBeCloseTo(w.logprobs[i]!, 4));
          expect(got.finishReasons[k]).toBe(stops.includes(w.tokens.at(-1)!) ? 'stop' : 'length');
          if (got.finishReasons[k] === 'stop') stopped += 1;
        });
      }
    }
    expect(stopped).toBeGreaterThan(0); // rows left mid-flight
  }, 120_000);

  it('checks its prompts and options, naming the prompt', async () => {
    const padded: ContinuousPrompt<string> = {
      key: 'padded',
      inputs: { inputIds: ids([5, 6, 7]), attentionMask: torch.tensor([[0, 1, 1]], { dtype: 'int64' }) },
      stream: 0,
    };
    await expect(collect(model, [padded], { maxRows: 2, maxNewTokens: 2 })).rejects.toThrow(
      /prompt 0 \(key padded\): the prompt is padded/,
    );
    const two: ContinuousPrompt<string> = {
      key: 'two',
      inputs: { inputIds: torch.tensor([[1], [2]], { dtype: 'int64' }) },
      stream: 0,
    };
    await expect(collect(model, [two], { maxRows: 2, maxNewTokens: 2 })).rejects.toThrow(/shape \[1, L\]/);
    await expect(collect(model, [], { maxRows: 1, numSequences: 2, maxNewTokens: 2 })).rejects.toThrow(
      /maxRows \(1\) must hold/,
    );
  });
});

describe('generateContinuous on the golden InternVL (positions from the attention mask)', () => {
  it('greedy rows of other lengths joining mid-flight decode as alone', async () => {
    const model = await fromPretrained(goldenDir('internvl'));
    model.eval();
    const cases = await loadGolden('internvl');
    const text = (cases.text_only!.inputs.input_ids!.toArray() as number[][])[0]!;
    const rows = [text.slice(0, 5), text, text.slice(3, 9), text.slice(2)];
    const alone = rows.map((r) =>
      torch.tidy(() => generate(model, { inputIds: ids(r) }, { maxNewTokens: 6, stopTokenIds: [] }).tokens[0]!),
    );
    expect(alone[1]).toEqual(cases.text_only!.info.greedy.new_tokens.slice(0, 6));
    const out = await collect(
      model,
      rows.map((r, i) => ({ key: i, inputs: { inputIds: ids(r) }, stream: i })),
      // a stop token that ends some rows early, so later ones join a running cache
      { maxRows: 2, maxNewTokens: 6, stopTokenIds: [alone[0]![1]!] },
    );
    rows.forEach((_, i) => {
      const cut = alone[i]!.indexOf(alone[0]![1]!);
      expect(out.get(i)!.tokens[0]).toEqual(cut === -1 ? alone[i] : alone[i]!.slice(0, cut + 1));
    });
    model.dispose();
  }, 60_000);
});
