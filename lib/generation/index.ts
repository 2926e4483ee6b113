// generation: batched decoding with a KV cache and the sampling rules of transformers.
export { generate, type GenerateOptions, type GenerateResult, type FinishReason } from './generate.js';
export { chooseNext, type SamplingOptions, type Choice } from './sampling.js';
export { rollout, nonSampledTokenIds, logprobsTensor, type RolloutOptions, type RolloutResult } from './rollout.js';
export { repeatPrompts, repeatedIndex } from './repeat_prompts.js';
export {
  generateContinuous,
  type ContinuousOptions,
  type ContinuousPrompt,
  type ContinuousResult,
} from './continuous.js';
export { streamUniform } from './row_random.js';
