// Gradient checkpointing of every family's block stacks gives the same gradients as the plain run,
// for the language model and the vision tower alike.
import { describe, expect, it } from 'vitest';
import * as torch from '../../lib/torch/index.js';
import type { Tensor } from '../../lib/torch/index.js';
import { fromPretrained, type CausalLM, type ModelInputs } from '../../lib/models/index.js';
import { goldenDir, loadGolden } from './golden.js';

function gradients(model: CausalLM, inputs: ModelInputs, checkpoint: boolean): Map<string, Tensor> {
  model.zeroGrad();
  model.train().gradientCheckpointing_(checkpoint);
  torch.tidy(() => {
    const logits = model.forward(inputs).logits!;
    torch.manualSeed(5);
    logits.mul(torch.randnLike(logits)).sum().backward();
  });
  return new Map([...model.namedParameters()].map(([name, p]) => [name, p.grad!]));
}

describe.each([
  ['qwen2_vl', 'two_images'],
  ['qwen2_5_vl', 'two_images'],
  ['internvl', 'one_image'],
])('%s', (family, name) => {
  it(`checkpointed and plain gradients are identical (${name})`, async () => {
    const model = await fromPretrained(goldenDir(family));
    if ('imgContextTokenId' in model) (model as unknown as { imgContextTokenId: number }).imgContextTokenId = 505;
    const { inputs } = (await loadGolden(family))[name]!;
    const modelInputs = {
      inputIds: inputs.input_ids!,
      attentionMask: inputs.attention_mask!,
      pixelValues: inputs.pixel_values,
      imageGridThw: inputs.image_grid_thw,
      imageFlags: inputs.image_flags,
    };
    // Count block calls to see the recomputation happen: once per step plain, twice checkpointed.
    const block = firstBlock(model);
    const forward = block.forward.bind(block);
    let calls = 0;
    block.forward = (...args: unknown[]) => {
      calls++;
      return (forward as (...a: unknown[]) => Tensor)(...args);
    };
    const plain = gradients(model, modelInputs, false);
    expect(calls).toBe(1);
    const recomputed = gradients(model, modelInputs, true);
    expect(calls).toBe(3);
    let compared = 0;
    for (const [param, grad] of plain) {
      expect(grad, param).not.toBeNull();
      expect(recomputed.get(param)!.equal(grad), param).toBe(true);
      compared++;
    }
    expect(compared).toBe(model.parameters().length);
    model.dispose();
  });
});

function firstBlock(model: CausalLM): { forward: (...args: never[]) => Tensor } {
  const path = model.modelType === 'internvl_chat' ? 'language_model.model.layers.0' : 'model.layers.0';
  return model.getSubmodule(path) as unknown as { forward: (...args: never[]) => Tensor };
}
