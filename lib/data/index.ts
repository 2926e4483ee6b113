// data: collators from processor batches and generated tokens to the batches the losses take.
export {
  collatePairs, collateUnpaired, joinBatches,
  type ProcessorBatch, type CollatedBatch, type PairBatch, type UnpairedCollated, type CollateOptions,
} from './collators.js';
export { collateRollouts, type RolloutPrompt, type RolloutOptions, type RolloutBatch } from './rollouts.js';
