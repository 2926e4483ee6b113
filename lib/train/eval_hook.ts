// What the eval hook adds to the method's eval loss: lib/eval's generation metrics on a prompt set
// (greedy answers scored by eval_metric) and, for DPO / MPO, preference accuracy on the eval set
// against the reference (ties 0.5). createTrainer builds the hook from the config once, checking
// what it needs (a dataset, a reference), so a bad recipe fails before the first step; the trainer's
// evaluate() calls it and prefixes eval_ to the names it returns.
import type { LoraModel } from '../adapters/index.js';
import type { PreferenceRecord, PromptRecord, RecordDataset } from '../data/records.js';
import type { CausalLM } from '../models/index.js';
import type { Processor } from '../processing/index.js';
import { isMetricName, METRICS } from '../eval/metrics.js';
import type { RecordSource } from '../eval/record_source.js';
import { answerMetrics, preferenceMetrics } from '../eval/trainer_metrics.js';

/** The metrics of one evaluation (names without eval_): `exact_match`, `exact_match/<source>`, `preference_accuracy`. */
export type EvalHook = () => Promise<Record<string, number>>;

/** The config fields the hook reads (config.ts: every method's generation fields, DPO's evalPreferenceAccuracy). */
export interface EvalHookArgs {
  perDeviceEvalBatchSize: number;
  /** DPO's max_length (GRPO has none). */
  maxLength?: number | null;
  evalMetric?: string | null;
  evalMaxNewTokens?: number;
  evalGenerationBatchSize?: number | null;
  evalKeepSpecialTokens?: boolean;
  evalPreferenceAccuracy?: boolean;
  beta?: number;
}

export interface EvalHookInit {
  method: string;
  args: EvalHookArgs;
  model: CausalLM;
  processor: Processor;
  adapter?: LoraModel;
  refModel?: CausalLM | null;
  evalDataset?: RecordDataset | null;
  /** The prompts the generation metric answers (a recipe's eval_generation_dataset). */
  evalGenerationDataset?: RecordSource<PromptRecord> | null;
}

/** The hook the config asks for, or null when it asks for none; throws naming the key a setting lacks. */
export function evalHookOf(init: EvalHookInit): EvalHook | null {
  const parts = [generationPart(init), preferencePart(init)].filter((p): p is EvalHook => p !== null);
  if (parts.length === 0) return null;
  return async () => {
    const metrics: Record<string, number> = {};
    for (const part of parts) Object.assign(metrics, await part());
    return metrics;
  };
}

// Greedy answers to every prompt of the set with the policy as it is now (adapters active).
function generationPart(init: EvalHookInit): EvalHook | null {
  const { args, model, processor } = init;
  const metric = args.evalMetric ?? null;
  const records = init.evalGenerationDataset ?? null;
  if (metric === null) {
    if (records === null) return null;
    throw new TypeError(
      'evalGenerationDataset: given, but evalMetric (eval_metric) is null; name the metric that scores the answers',
    );
  }
  if (!isMetricName(metric)) {
    throw new RangeError(`evalMetric: expected one of ${METRICS.join(', ')} but received ${JSON.stringify(metric)}`);
  }
  if (records === null) {
    throw new TypeError(
      `evalMetric: '${metric}' scores answers to a prompt set; give evalGenerationDataset (eval_generation_dataset in a recipe)`,
    );
  }
  const options = {
    metric,
    maxNewTokens: args.evalMaxNewTokens ?? 128,
    batchSize: args.evalGenerationBatchSize ?? args.perDeviceEvalBatchSize,
    keepSpecialTokens: args.evalKeepSpecialTokens === true,
  };
  return () => answerMetrics(model, processor, records, options);
}

// The policy's implicit rewards against the reference the DPO loss uses: a separate model, else the
// policy with its adapters disabled.
function preferencePart(init: EvalHookInit): EvalHook | null {
  const { args, model, processor } = init;
  if (args.evalPreferenceAccuracy !== true) return null;
  if (init.method !== 'dpo') {
    throw new TypeError(`evalPreferenceAccuracy: for dpo (its pairs and reference), not ${init.method}`);
  }
  const records = init.evalDataset ?? null;
  if (records === null) {
    throw new TypeError('evalPreferenceAccuracy: needs an evalDataset of preference pairs (eval_dataset in a recipe)');
  }
  const reference = init.refModel ?? init.adapter ?? null;
  if (reference === null) {
    throw new TypeError(
      'evalPreferenceAccuracy: needs the reference in memory: a refModel (ref_model_name_or_path) or adapters ' +
        '(peft); a full fine-tune with precompute_ref_log_probs keeps only its cached log-probs',
    );
  }
  const options = {
    reference,
    beta: args.beta ?? 0.1,
    batchSize: args.perDeviceEvalBatchSize,
    maxLength: args.maxLength ?? null,
  };
  return () => preferenceMetrics(model, processor, records as RecordDataset<PreferenceRecord>, options);
}
