// A scored generation as training micro-batches. The completions, group-major, are cut into
// micro-batches of perDeviceTrainBatchSize (TRL's sizes); inside one, the completions of each prompt
// share one packed row [prompt, completion, completion, ...] (lib/data/pack_groups.ts), so the
// prompt and its images run once per micro-batch instead of once per completion. TRL shuffles the
// completions before splitting; keeping each prompt's completions together is what lets them share
// a row (verl's actor does not shuffle either). With one optimizer step per generation, the default,
// the order changes nothing: every completion lands in the same accumulated loss.
import * as torch from '../../torch/index.js';
import type { Tensor } from '../../torch/index.js';
import type { Processor } from '../../processing/index.js';
import type { PaddingSide } from '../../processing/batch.js';
import { IGNORE_INDEX } from '../../processing/segments.js';
import { layoutGroups, type LabelledTokens, type PromptGroup } from '../../data/pack_groups.js';
import type { PackedGroups } from '../group_forward.js';
import type { MicroBatch } from '../methods/method.js';
import type { ScoredGeneration } from './generation.js';
import { joinVision, padTokenOf, type EncodedPrompt } from './prompts.js';

export interface GrpoMicroBatch extends MicroBatch {
  packed: PackedGroups;
  /** [V] per completion (virtual row). */
  advantages: Tensor;
  /** [V, W] the sampling policy's log-probs where targets has a token; null: on-policy (the detached current policy). */
  oldLogps: Tensor | null;
  /** [V, W] filled by the method when beta > 0. */
  refLogps: Tensor | null;
  /** Frees the tensors (the generation calls it once its optimizer steps are done). */
  release(): void;
}

export interface MicroBatchOptions {
  /** Completions per micro-batch (perDeviceTrainBatchSize). */
  size: number;
  /** Keep the sampling log-probs as the old policy's (needed when the policy moves before the last use). */
  keepOldLogps: boolean;
  /** TRL's mask_truncated_completions: a truncated completion gets no targets. */
  maskTruncated: boolean;
  ignoreIndex: number;
}

export function microBatches(
  processor: Processor,
  prompts: readonly EncodedPrompt[],
  generation: ScoredGeneration,
  options: MicroBatchOptions,
): GrpoMicroBatch[] {
  const order = generation.completions.map((_, i) => i);
  const batches: GrpoMicroBatch[] = [];
  for (let start = 0; start < order.length; start += options.size) {
    batches.push(microBatch(processor, prompts, generation, order.slice(start, start + options.size), options));
  }
  return batches;
}

function microBatch(
  processor: Processor,
  prompts: readonly EncodedPrompt[],
  generation: ScoredGeneration,
  members: number[],
  options: MicroBatchOptions,
): GrpoMicroBatch {
  // Groups in order of first appearance; members are group-major, so each group is contiguous.
  const groupOf = new Map<number, number[]>();
  for (const i of members) {
    const p = generation.completions[i]!.prompt;
    groupOf.set(p, [...(groupOf.get(p) ?? []), i]);
  }
  const promptIds = [...groupOf.keys()];
  const groups: PromptGroup[] = promptIds.map((p) => ({
    prompt: prompts[p]!.ids,
    completions: groupOf.get(p)!.map((i) => labelled(generation.completions[i]!, options)),
  }));
  const rowOrder = promptIds.flatMap((p) => groupOf.get(p)!); // virtual row v's completion
  const side: PaddingSide = processor.options.paddingSide ?? processor.tokenizer.paddingSide;
  const tensors = torch.tidy(() => {
    const layout = layoutGroups(groups, { padTokenId: padTokenOf(processor), side, ignoreIndex: options.ignoreIndex });
    const packed: PackedGroups = { ...layout, ...joinVision(promptIds.map((p) => prompts[p]!)) };
    const advantages = torch.tensor(Float64Array.from(rowOrder, (i) => generation.advantages[i]!));
    const oldLogps = options.keepOldLogps ? alignedLogps(rowOrder, generation, layout.targets) : null;
    return { packed, advantages, oldLogps };
  });
  const tokens = countTargets(tensors.packed.targets, options.ignoreIndex);
  const batch: GrpoMicroBatch = {
    ids: promptIds.map((p) => prompts[p]!.record.id),
    ...tensors,
    refLogps: null,
    tokens,
    counts: { rows: rowOrder.length, tokens: Math.max(tokens, 1), microBatches: 1 },
    dispose: () => {}, // kept across the generation's optimizer steps; see release
    release: () => {
      for (const t of Object.values(batch.packed)) (t as Tensor | null)?.dispose?.();
      for (const t of [batch.advantages, batch.oldLogps, batch.refLogps]) t?.dispose();
    },
  };
  return batch;
}

function labelled(completion: ScoredGeneration['completions'][number], options: MicroBatchOptions): LabelledTokens {
  const masked = options.maskTruncated && completion.truncated;
  return { ids: completion.tokens, labels: completion.tokens.map((id) => (masked ? IGNORE_INDEX : id)) };
}

// [V, W] float32: completion token k's sampling log-prob at column k (where the virtual row predicts it).
function alignedLogps(rowOrder: readonly number[], generation: ScoredGeneration, targets: Tensor): Tensor {
  const [rows, width] = targets.shape as [number, number];
  const data = new Float32Array(rows * width);
  rowOrder.forEach((i, v) => {
    const lps = generation.completions[i]!.logprobs;
    for (let k = 0; k < Math.min(lps.length, width); k++) data[v * width + k] = lps[k]!;
  });
  return torch.tensor(data, { shape: [rows, width] });
}

function countTargets(targets: Tensor, ignoreIndex: number): number {
  return torch.tidy(() => targets.ne(ignoreIndex).sum().item() as number);
}
