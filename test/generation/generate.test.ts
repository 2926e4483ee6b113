// Generation: cached greedy decoding against the golden continuations, batching with left padding
// against one prompt at a time, stop tokens, and the sampling rules against their definitions.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as torch from '../../lib/torch/index.js';
import type { Tensor } from '../../lib/torch/index.js';
import { chooseNext, generate } from '../../lib/generation/index.js';
import { fromPretrained, type CausalLM } from '../../lib/models/index.js';
import { goldenDir, loadGolden, type GoldenCase } from '../models/golden.js';

const PAD = 481;

// Left-pads token rows into one batch.
function leftPadded(rows: number[][]): { inputIds: Tensor; attentionMask: Tensor } {
  const width = Math.max(...rows.map((r) => r.length));
  const ids = rows.map((r) => [...Array(width - r.length).fill(PAD), ...r]);
  const mask = rows.map((r) => [...Array(width - r.length).fill(0), ...r.map(() => 1)]);
  return { inputIds: torch.tensor(ids, { dtype: 'int64' }), attentionMask: torch.tensor(mask, { dtype: 'int64' }) };
}

describe('generate on golden checkpoints', () => {
  let model: CausalLM;
  let cases: Record<string, GoldenCase>;
  beforeAll(async () => {
    model = await fromPretrained(goldenDir('qwen2_vl'));
    cases = await loadGolden('qwen2_vl');
  });
  afterAll(() => model.dispose());

  const inputsOf = (c: GoldenCase) => ({
    inputIds: c.inputs.input_ids!,
    attentionMask: c.inputs.attention_mask!,
    pixelValues: c.inputs.pixel_values,
    imageGridThw: c.inputs.image_grid_thw,
  });

  it('greedy decoding reproduces the reference continuation of every case', () => {
    for (const c of Object.values(cases)) {
      const out = generate(model, inputsOf(c), { maxNewTokens: 8, stopTokenIds: [] });
      expect(out.tokens[0]).toEqual(c.info.greedy.new_tokens);
      expect(out.finishReasons).toEqual(['length']);
    }
  });

  it('greedy log-probs equal log_softmax of a full uncached forward', () => {
    const c = cases.one_image!;
    const out = generate(model, inputsOf(c), { maxNewTokens: 4, stopTokenIds: [] });
    const prompt = (c.inputs.input_ids!.toArray() as number[][])[0]!;
    torch.tidy(() => {
      const full = torch.tensor([[...prompt, ...out.tokens[0]!.slice(0, 3)]], { dtype: 'int64' });
      const logits = torch.noGrad(
        () =>
          model.forward({ inputIds: full, pixelValues: c.inputs.pixel_values, imageGridThw: c.inputs.image_grid_thw })
            .logits!,
      );
      const logp = logits.squeeze(0).logSoftmax(-1);
      out.tokens[0]!.forEach((token, k) => {
        expect(out.logprobs[0]![k]).toBeCloseTo(
          logp
            .select(0, prompt.length - 1 + k)
            .select(0, token)
            .item(),
          4,
        );
      });
    });
  });

  it('a left-padded batch decodes each row as it would alone', () => {
    const text = (cases.text_only!.inputs.input_ids!.toArray() as number[][])[0]!;
    const rows = [text, text.slice(0, 11), text.slice(4)];
    const alone = rows.map((r) =>
      torch.tidy(
        () =>
          generate(model, { inputIds: torch.tensor([r], { dtype: 'int64' }) }, { maxNewTokens: 6, stopTokenIds: [] })
            .tokens[0],
      ),
    );
    const batch = torch.tidy(() => generate(model, leftPadded(rows), { maxNewTokens: 6, stopTokenIds: [] }));
    expect(batch.tokens).toEqual(alone);
  });

  it('an image prompt batched with a shorter text prompt keeps both continuations', () => {
    const image = cases.one_image!;
    const text = (cases.text_only!.inputs.input_ids!.toArray() as number[][])[0]!;
    const imageIds = (image.inputs.input_ids!.toArray() as number[][])[0]!;
    const batch = torch.tidy(() =>
      generate(
        model,
        {
          ...leftPadded([imageIds, text]),
          pixelValues: image.inputs.pixel_values,
          imageGridThw: image.inputs.image_grid_thw,
        },
        { maxNewTokens: 8, stopTokenIds: [] },
      ),
    );
    expect(batch.tokens).toEqual([image.info.greedy.new_tokens, cases.text_only!.info.greedy.new_tokens]);
  });

  it('stops at a stop token, which ends the output, and reports why', () => {
    const c = cases.text_only!;
    const stop = c.info.greedy.new_tokens[2]!; // 418, first seen at step 2
    const out = torch.tidy(() =>
      generate(model, leftPadded([(c.inputs.input_ids!.toArray() as number[][])[0]!, [1, 2, 3]]), {
        maxNewTokens: 8,
        stopTokenIds: [stop],
      }),
    );
    expect(out.tokens[0]).toEqual(c.info.greedy.new_tokens.slice(0, 3));
    expect(out.finishReasons[0]).toBe('stop');
    expect(out.tokens[1]!.length === 8 ? 'length' : 'stop').toBe(out.finishReasons[1]);
  });

  it('rejects right-padded prompts and bad lengths', () => {
    torch.tidy(() => {
      const inputIds = torch.tensor([[5, 6, PAD]], { dtype: 'int64' });
      const attentionMask = torch.tensor([[1, 1, 0]], { dtype: 'int64' });
      expect(() => generate(model, { inputIds, attentionMask }, { maxNewTokens: 2 })).toThrow(
        /row 0 ends with padding/,
      );
      expect(() => generate(model, { inputIds }, { maxNewTokens: 0 })).toThrow(/maxNewTokens/);
    });
  });
});

describe('sampling', () => {
  const logits = (): Tensor => torch.tensor([[2.0, 1.0, 0.5, -1.0, 0.0]]);

  it('greedy picks the argmax; log-probs are log_softmax(logits / T)', () => {
    torch.tidy(() => {
      const c = chooseNext(logits(), { temperature: 0.7 });
      expect(c.tokens.item()).toBe(0);
      const expected = logits().div(0.7).logSoftmax(-1).select(1, 0).item();
      expect(c.logprobs.item()).toBeCloseTo(expected, 6);
    });
  });

  it('sample frequencies follow softmax(logits / T)', () => {
    torch.manualSeed(7);
    torch.tidy(() => {
      const n = 20000;
      const batch = logits().expand([n, 5]).contiguous();
      const tokens = chooseNext(batch, { doSample: true, temperature: 1.5 }).tokens.toArray() as number[];
      const probs = logits().div(1.5).softmax(-1).squeeze(0).toArray() as number[];
      probs.forEach((p, v) => {
        const freq = tokens.filter((t) => t === v).length / n;
        expect(Math.abs(freq - p)).toBeLessThan(4 * Math.sqrt((p * (1 - p)) / n) + 1e-3);
      });
    });
  });

  it('top-k and top-p keep exactly the tokens their definitions keep', () => {
    torch.manualSeed(11);
    torch.tidy(() => {
      const batch = logits().expand([4000, 5]).contiguous();
      const topK = new Set(chooseNext(batch, { doSample: true, topK: 2 }).tokens.toArray() as number[]);
      expect([...topK].sort()).toEqual([0, 1]);
      // softmax ≈ [0.56, 0.21, 0.12, 0.03, 0.08]: 0.56 < 0.7 ≤ 0.56 + 0.21, so top-p 0.7 keeps {0, 1}.
      const topP = new Set(chooseNext(batch, { doSample: true, topP: 0.7 }).tokens.toArray() as number[]);
      expect([...topP].sort()).toEqual([0, 1]);
      const tiny = new Set(chooseNext(batch, { doSample: true, topP: 0.01 }).tokens.toArray() as number[]);
      expect([...tiny]).toEqual([0]);
    });
  });

  it('rejects a non-positive temperature', () => {
    torch.tidy(() => expect(() => chooseNext(logits(), { temperature: 0 })).toThrow(/temperature/));
  });
});
