// Qwen2-VL and Qwen2.5-VL against transformers' outputs on the golden tiny checkpoints: positions,
// vision intermediates, every hidden state, logits, and cached greedy decoding.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as torch from '../../lib/torch/index.js';
import type { Tensor } from '../../lib/torch/index.js';
import { KVCache } from '../../lib/nn/index.js';
import { fromPretrained, type QwenVLForConditionalGeneration } from '../../lib/models/index.js';
import { windowLayout } from '../../lib/internal.js';
import { expectClose, goldenDir, greedyThroughCache, ints, loadGolden, type GoldenCase } from './golden.js';
import { float32Bound } from '../tolerance.js';

for (const family of ['qwen2_vl', 'qwen2_5_vl'] as const) {
  describe(`${family} golden`, () => {
    let model: QwenVLForConditionalGeneration;
    let cases: Record<string, GoldenCase>;
    beforeAll(async () => {
      model = (await fromPretrained(goldenDir(family))) as QwenVLForConditionalGeneration;
      cases = await loadGolden(family);
    });
    afterAll(() => model.dispose());

    for (const name of ['text_only', 'one_image', 'two_images']) {
      it(`${name}: M-RoPE positions and rope deltas are exact`, () => {
        const { inputs } = cases[name]!;
        torch.tidy(() => {
          const { positionIds, ropeDeltas } = model.ropeIndex(
            inputs.input_ids!,
            inputs.attention_mask!,
            inputs.image_grid_thw,
          );
          expect(ints(positionIds)).toEqual(ints(inputs.position_ids!));
          expect(ints(ropeDeltas)).toEqual(ints(inputs.rope_deltas!));
        });
      });

      it(`${name}: hidden states and logits match within 1e-4`, () => {
        const { inputs, expected } = cases[name]!;
        torch.tidy(() => {
          const out = torch.noGrad(() => model.forward(modelInputs(inputs), { outputHiddenStates: true }));
          expectClose(torch.stack(out.hiddenStates!.map((h) => h.squeeze(0))), expected.hidden_states!, 1e-4, 1e-5);
          expectClose(out.logits!, expected.logits!, 1e-4);
        });
      });

      it(`${name}: greedy decoding with the KV cache reproduces tokens and step logits`, () => {
        const { inputs, expected, info } = cases[name]!;
        const cache = new KVCache();
        try {
          const { tokens } = torch.tidy(() =>
            greedyThroughCache(model, modelInputs(inputs), cache, expected.greedy_step_logits!),
          );
          expect(tokens).toEqual(info.greedy.new_tokens);
        } finally {
          cache.dispose();
        }
      });
    }

    for (const name of ['one_image', 'two_images']) {
      it(`${name}: vision intermediates and image embeddings match`, () => {
        const { inputs, expected } = cases[name]!;
        torch.tidy(() => {
          const v = torch.noGrad(() =>
            model.encodeImages(inputs.pixel_values!, inputs.image_grid_thw!, { intermediates: true }),
          );
          // One float32 conv on each side, a reduction over the patch's 3·2·14·14 = 1176 pixels.
          const patchTol = float32Bound(
            inputs.pixel_values!.shape[1]!,
            expected.vision_patch_embeds!.abs().max().item() as number,
          );
          expectClose(v.patchEmbeds!, expected.vision_patch_embeds!, patchTol);
          expectClose(v.preMerger!, expected.vision_pre_merger!, 1e-4);
          expectClose(v.embeds, expected.image_embeds!, 1e-4);
        });
      });

      if (family === 'qwen2_5_vl') {
        it(`${name}: window index and window boundaries are exact`, () => {
          const { inputs, expected } = cases[name]!;
          const grids = (inputs.image_grid_thw!.toArray() as number[][]).map(
            (g) => g as unknown as [number, number, number],
          );
          const layout = windowLayout(grids, 2, 112 / 2 / 14);
          expect([...layout.windowIndex]).toEqual(ints(expected.vision_window_index!));
          expect(layout.cuWindowSeqlens).toEqual(ints(expected.vision_cu_window_seqlens!));
        });
      }
    }
  });
}

function modelInputs(inputs: Record<string, Tensor>) {
  return {
    inputIds: inputs.input_ids!,
    attentionMask: inputs.attention_mask!,
    pixelValues: inputs.pixel_values,
    imageGridThw: inputs.image_grid_thw,
  };
}
