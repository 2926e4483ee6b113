// generate keeps nothing between calls (issue #17's generate-memory question): after a call, the live
// native tensors (torch.memory(), the addon's own count) are exactly those before it, whether rows
// finish together or one by one (the cache and the mask drop rows), with an image or without, and
// greedy or sampled, over repeated calls. The tensors the test itself holds are counted by hand.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as torch from '../../lib/torch/index.js';
import type { Tensor } from '../../lib/torch/index.js';
import { generate, type GenerateOptions } from '../../lib/generation/index.js';
import { fromPretrained, type CausalLM } from '../../lib/models/index.js';
import type { ModelInputs } from '../../lib/models/index.js';
import { goldenDir, loadGolden, type GoldenCase } from '../models/golden.js';

const PAD = 481;

function leftPadded(rows: number[][]): { inputIds: Tensor; attentionMask: Tensor } {
  const width = Math.max(...rows.map((r) => r.length));
  const ids = rows.map((r) => [...Array(width - r.length).fill(PAD), ...r]);
  const mask = rows.map((r) => [...Array(width - r.length).fill(0), ...r.map(() => 1)]);
  return { inputIds: torch.tensor(ids, { dtype: 'int64' }), attentionMask: torch.tensor(mask, { dtype: 'int64' }) };
}

describe('generate leaves no live tensors behind', () => {
  let model: CausalLM;
  let cases: Record<string, GoldenCase>;
  let inputs: ModelInputs;
  beforeAll(async () => {
    model = await fromPretrained(goldenDir('qwen2_vl'));
    cases = await loadGolden('qwen2_vl');
    const image = cases.one_image!;
    const text = (cases.text_only!.inputs.input_ids!.toArray() as number[][])[0]!;
    const imageIds = (image.inputs.input_ids!.toArray() as number[][])[0]!;
    inputs = {
      ...leftPadded([imageIds, text]),
      pixelValues: image.inputs.pixel_values,
      imageGridThw: image.inputs.image_grid_thw,
    };
  });
  afterAll(() => model.dispose());

  // Live tensors and bytes before and after `calls` generate calls, and the last call's result.
  function around(options: GenerateOptions, calls = 1) {
    const before = torch.memory();
    let out = generate(model, inputs, options);
    for (let k = 1; k < calls; k++) out = generate(model, inputs, options);
    const after = torch.memory();
    return { before, after, out };
  }

  it('rows that stop at different steps (the cache and mask drop a row) leave the count as it was', () => {
    // The text row's greedy token at step 2 stops it there; the image row goes on to the length limit.
    const stop = cases.text_only!.info.greedy.new_tokens[2]!;
    expect(cases.one_image!.info.greedy.new_tokens.slice(0, 8)).not.toContain(stop);
    const { before, after, out } = around({ maxNewTokens: 8, stopTokenIds: [stop] });
    expect(out.finishReasons).toEqual(['length', 'stop']);
    expect(out.tokens[1]).toHaveLength(3);
    expect(after.numTensors).toBe(before.numTensors);
    expect(after.numBytes).toBe(before.numBytes);
  });

  it('twenty sampled calls, both rows to the limit, leave the count as it was', () => {
    const { before, after, out } = around({ maxNewTokens: 12, stopTokenIds: [], temperature: 1, seed: 3 }, 20);
    expect(out.tokens.map((t) => t.length)).toEqual([12, 12]);
    expect(after.numTensors).toBe(before.numTensors);
    expect(after.numBytes).toBe(before.numBytes);
  });

  it('a call that throws (right padding) leaves the count as it was', () => {
    const before = torch.memory();
    const right = torch.tensor([[1, 1, 0]], { dtype: 'int64' });
    const ids = torch.tensor([[5, 6, PAD]], { dtype: 'int64' });
    expect(() => generate(model, { inputIds: ids, attentionMask: right }, { maxNewTokens: 2 })).toThrow(
      /pad prompts on the left/,
    );
    ids.dispose();
    right.dispose();
    expect(torch.memory().numTensors).toBe(before.numTensors);
  });
});
