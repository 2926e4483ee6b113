// Plain rows through the model: one forward of a collated batch (SFT rows, KTO rows) to the last
// hidden states the token losses take, and the processor pass that makes such a batch.
import * as torch from '../../torch/index.js';
import type { Tensor } from '../../torch/index.js';
import type { CausalLM } from '../../models/index.js';
import type { Processor, Sample } from '../../processing/index.js';
import { joinBatches, type CollatedBatch } from '../../data/collators.js';

/** Last hidden states [R, T, D] of a collated batch. */
export function rowsForward(model: CausalLM, batch: CollatedBatch): Tensor {
  return model.forward(
    {
      inputIds: batch.inputIds,
      attentionMask: batch.attentionMask,
      pixelValues: batch.pixelValues,
      imageGridThw: batch.imageGridThw,
      imageFlags: batch.imageFlags,
    },
    { logits: false },
  ).hidden;
}

/** The processor's batch of `samples` with shifted targets, truncated to maxLength (keep_start). */
export async function collateRows(
  processor: Processor,
  samples: Sample[],
  options: { ignoreIndex: number; maxLength: number | null },
): Promise<CollatedBatch> {
  const processed = await processor.process(samples);
  try {
    return joinBatches(processor, [['batch', processed]], options);
  } finally {
    disposeTensors(processed);
  }
}

/** Completion tokens of each row (targets that are not ignoreIndex). */
export function rowTokenCounts(targets: Tensor, ignoreIndex: number): number[] {
  return torch.tidy(() => Array.from(targets.ne(ignoreIndex).sum(1).data() as BigInt64Array, Number));
}

/** Disposes every tensor held directly by `value`'s fields. */
export function disposeTensors(value: object): void {
  for (const field of Object.values(value)) if (torch.Tensor.isTensor(field)) field.dispose();
}
