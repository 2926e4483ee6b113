// Ranks in lockstep (ZeRO stage 3): every forward gathers each block's parameters with a collective
// inside the block, so every rank must run the same blocks the same number of times in the same
// order. A model bound to a Lockstep keeps that true where its input would make ranks differ:
//   - a forward that starts a sequence (no KV cache or an empty one: training, evaluation, a
//     generation's prefill) asks whether any rank has images; if one has, a rank without runs its
//     vision tower on a minimal dummy input and adds 0 x the output into the graph (InternVL's
//     image_flags idea), so its gather / recompute / reduce-scatter sequence matches and its vision
//     gradients are exactly zero;
//   - cached decoding (lib/generation) goes on until every rank's rows are done (transformers'
//     synced_gpus): a finished rank keeps stepping on one idle row.
// The binding lives outside the model's state (a WeakMap), so nothing is saved with the weights.

/** A collective answer, agreed over the ranks: every rank must call it the same number of times in the same order. */
export interface Lockstep {
  /** Whether `local` is true on any rank. */
  any(local: boolean): boolean;
}

const bound = new WeakMap<object, Lockstep>();

/** Binds `model` (a CausalLM) to `lockstep`, or unbinds it with null. */
export function setLockstep(model: object, lockstep: Lockstep | null): void {
  if (lockstep === null) bound.delete(model);
  else bound.set(model, lockstep);
}

/** The model's lockstep, or null when it runs alone (the default). */
export function lockstepOf(model: object): Lockstep | null {
  return bound.get(model) ?? null;
}
