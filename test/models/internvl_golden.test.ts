// InternVL (InternViT + pixel shuffle + mlp1 + Qwen2) against OpenGVLab's remote code on the golden
// tiny checkpoint: ViT output, image embeddings, every LLM hidden state, logits, cached greedy decoding.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as torch from '../../lib/torch/index.js';
import type { Tensor } from '../../lib/torch/index.js';
import { KVCache } from '../../lib/nn/index.js';
import { fromPretrained, type InternVLChatModel, type ModelInputs } from '../../lib/models/index.js';
import { pixelShuffle } from '../../lib/models/internvl/projector.js';
import { resizeBicubic } from '../../lib/models/internvl/bicubic.js';
import { expectClose, goldenDir, greedyThroughCache, loadGolden, maxAbsDiff, type GoldenCase } from './golden.js';
import { float32Bound } from '../tolerance.js';

const IMG_CONTEXT = 505; // cases.json img_context_token_id: not in config.json, the tokenizer's id

describe('internvl golden', () => {
  let model: InternVLChatModel;
  let cases: Record<string, GoldenCase>;
  beforeAll(async () => {
    model = (await fromPretrained(goldenDir('internvl'))) as InternVLChatModel;
    model.imgContextTokenId = IMG_CONTEXT;
    cases = await loadGolden('internvl');
  });
  afterAll(() => model.dispose());

  it('one_image: ViT last hidden state and image embeddings match', () => {
    const { inputs, expected } = cases.one_image!;
    torch.tidy(() => {
      const v = torch.noGrad(() => model.encodeImages(inputs.pixel_values!, { intermediates: true }));
      report('vit_last_hidden_state', v.vitHidden!, expected.vit_last_hidden_state!);
      report('image_embeds', v.embeds, expected.image_embeds!);
      expectClose(v.vitHidden!, expected.vit_last_hidden_state!, 1e-4);
      expectClose(v.embeds, expected.image_embeds!, 1e-4);
    });
  });

  it('one_image: pixel shuffle + mlp1 alone on the stored ViT output', () => {
    const { expected } = cases.one_image!;
    torch.tidy(() => {
      const embeds = torch.noGrad(() => model.projectVit(expected.vit_last_hidden_state!));
      report('image_embeds (from stored ViT)', embeds, expected.image_embeds!);
      expectClose(embeds, expected.image_embeds!, 1e-4);
    });
  });

  it('text_only: the LLM alone gives the hidden states and logits', () => {
    const { inputs, expected } = cases.text_only!;
    torch.tidy(() => {
      const out = torch.noGrad(() => model.language_model.forward(modelInputs(inputs), { outputHiddenStates: true }));
      checkOutputs('text_only', out.hiddenStates!, out.logits!, expected);
    });
  });

  it('one_image: hidden states and logits match within 1e-4', () => {
    const { inputs, expected } = cases.one_image!;
    torch.tidy(() => {
      const out = torch.noGrad(() => model.forward(modelInputs(inputs), { outputHiddenStates: true }));
      checkOutputs('one_image', out.hiddenStates!, out.logits!, expected);
    });
  });

  for (const name of ['text_only', 'one_image']) {
    it(`${name}: greedy decoding with the KV cache reproduces tokens and step logits`, () => {
      const { inputs, expected, info } = cases[name]!;
      const cache = new KVCache();
      try {
        const { tokens, worst } = torch.tidy(() =>
          greedyThroughCache(model, modelInputs(inputs), cache, expected.greedy_step_logits!),
        );
        if (process.env.GOLDEN_REPORT) console.log(`${name} greedy_step_logits max |diff| ${worst.toExponential(2)}`);
        expect(tokens).toEqual(info.greedy.new_tokens);
      } finally {
        cache.dispose();
      }
    });
  }

  it('image_flags drop tiles: a flagged-out second tile changes nothing', () => {
    const { inputs, expected } = cases.one_image!;
    torch.tidy(() => {
      const pixelValues = torch.cat([inputs.pixel_values!, inputs.pixel_values!.flip([3])], 0);
      const imageFlags = torch.tensor([[1], [0]], { dtype: 'int64' });
      const out = torch.noGrad(() => model.forward({ ...modelInputs(inputs), pixelValues, imageFlags }));
      expectClose(out.logits!, expected.logits!, 1e-4);
    });
  });

  it('a prompt whose <IMG_CONTEXT> count differs from the image rows is an error', () => {
    const { inputs } = cases.one_image!;
    torch.tidy(() => {
      const inputIds = inputs.input_ids!.narrow(1, 0, 200);
      expect(() => model.forward({ inputIds, pixelValues: inputs.pixel_values })).toThrow(
        /has 190 <IMG_CONTEXT> tokens \(id 505\) but the kept tiles give 256 rows/,
      );
    });
  });
});

describe('internvl exact semantics', () => {
  // vlm_arch.md §2.4: token t = i2·16 + j2, channel di·2D + dj·D + c holds patch (2·i2 + di, 2·j2 + dj).
  it('pixel shuffle v2 follows the index formula; v1 leaves the token grid transposed', () => {
    torch.tidy(() => {
      const D = 3;
      const value = (row: number, col: number, c: number): number => row * 1000 + col * 10 + c;
      const grid = torch.tensor(
        Float32Array.from({ length: 32 * 32 * D }, (_, i) =>
          value(Math.floor(i / (32 * D)), Math.floor(i / D) % 32, i % D),
        ),
        { shape: [1, 32, 32, D] },
      );
      const v2 = pixelShuffle(grid, 0.5, 'v2').toArray() as number[][][];
      const v1 = pixelShuffle(grid, 0.5, 'v1').toArray() as number[][][];
      expect([v2[0]!.length, v2[0]![0]!.length]).toEqual([256, 4 * D]);
      for (let i2 = 0; i2 < 16; i2++)
        for (let j2 = 0; j2 < 16; j2++)
          for (let di = 0; di < 2; di++)
            for (let dj = 0; dj < 2; dj++)
              for (let c = 0; c < D; c++) {
                const want = value(2 * i2 + di, 2 * j2 + dj, c);
                expect(v2[0]![i2 * 16 + j2]![di * 2 * D + dj * D + c]).toBe(want);
                expect(v1[0]![j2 * 16 + i2]![di * 2 * D + dj * D + c]).toBe(want);
              }
    });
  });

  it('position-grid resize equals F.interpolate(bicubic, align_corners=False); same size is the identity', () => {
    torch.tidy(() => {
      // PyTorch's test_upsamplingBicubic2d_correctness: arange(8).view(1, 2, 2, 2), scale 2.
      const expected = torch.tensor([
        [
          [-0.31641, 0.01562, 0.5625, 0.89453],
          [0.34766, 0.67969, 1.22656, 1.55859],
          [1.44141, 1.77344, 2.32031, 2.65234],
          [2.10547, 2.4375, 2.98438, 3.31641],
        ],
        [
          [3.68359, 4.01562, 4.5625, 4.89453],
          [4.34766, 4.67969, 5.22656, 5.55859],
          [5.44141, 5.77344, 6.32031, 6.65234],
          [6.10547, 6.4375, 6.98438, 7.31641],
        ],
      ]);
      const grid = torch.arange(0, 8).float().reshape([2, 2, 2]).permute([1, 2, 0]); // [h, w, channels]
      // The literals have 5 decimals (±5e-6); each output sums 4x4 taps of values up to ~7.3 in float32.
      expectClose(resizeBicubic(grid, 4, 4).permute([2, 0, 1]), expected, 5e-6 + float32Bound(16, 8));
      const big = torch.randn([32, 32, 4]);
      expect(maxAbsDiff(resizeBicubic(big, 32, 32), big)).toBe(0);
      expect(resizeBicubic(big, 24, 40).shape).toEqual([24, 40, 4]);
    });
  });
});

function modelInputs(inputs: Record<string, Tensor>): ModelInputs {
  return {
    inputIds: inputs.input_ids!,
    attentionMask: inputs.attention_mask!,
    pixelValues: inputs.pixel_values,
    imageFlags: inputs.image_flags,
  };
}

function checkOutputs(name: string, hiddenStates: Tensor[], logits: Tensor, expected: Record<string, Tensor>): void {
  const hidden = torch.stack(hiddenStates.map((h) => h.squeeze(0)));
  report(`${name} hidden_states`, hidden, expected.hidden_states!);
  report(`${name} logits`, logits, expected.logits!);
  expectClose(hidden, expected.hidden_states!, 1e-4, 1e-5);
  expectClose(logits, expected.logits!, 1e-4);
}

function report(label: string, actual: Tensor, expected: Tensor): void {
  if (process.env.GOLDEN_REPORT) console.log(`${label}: max |diff| ${maxAbsDiff(actual, expected).toExponential(2)}`);
}
