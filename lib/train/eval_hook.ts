// What the eval hook adds to the method's eval loss: lib/eval's generation metrics on a prompt set
// (greedy answers scored by eval_metric, and with eval_save_predictions each answer in a jsonl file
// per step) and, for DPO / MPO and the KTO family, preference accuracy on the eval set against the
// reference (ties 0.5). createTrainer builds the hook from the config once, checking what it needs
// (a dataset, a reference), so a bad recipe fails before the first step; the trainer's evaluate()
// calls it with the step and the method and prefixes eval_ to the names it returns.
//
// The reference is the one the loss reads: with precompute_ref_log_probs the cached log-probs (the
// precompute pass covers eval_dataset too, as TRL precomputes its eval dataset), else the separate
// model or the policy with its adapters disabled.
import path from 'node:path';
import * as torch from '../torch/index.js';
import type { LoraModel } from '../adapters/index.js';
import { decodeRecordImages, type DecodedRecord } from '../data/images.js';
import type { DataRecord, PreferenceRecord, PromptRecord, RecordDataset, UnpairedRecord } from '../data/records.js';
import type { CausalLM } from '../models/index.js';
import type { Processor } from '../processing/index.js';
import { isMetricName, METRICS } from '../eval/metrics.js';
import { writePredictions } from '../eval/predictions_log.js';
import type { ReferenceLogps } from '../eval/preference.js';
import { inBatches, requireKind, streamRecords, type RecordSource } from '../eval/record_source.js';
import { answerEvaluation, preferenceMetrics } from '../eval/trainer_metrics.js';
import { unpairedPreferenceAccuracy, type UnpairedReward } from '../eval/unpaired_preference.js';
import { DpoMethod } from './methods/dpo.js';
import { KtoMethod } from './methods/kto.js';
import type { TrainingMethod } from './methods/method.js';

/** What evaluate() tells the hook: the step evaluated, the run's method, whether this process writes files. */
export interface EvalContext {
  step: number;
  method: TrainingMethod;
  /** Rank 0 (or the only process): the predictions file is written here alone. */
  isMain: boolean;
}

/** The metrics of one evaluation (names without eval_): `exact_match`, `exact_match/<source>`, `preference_accuracy`. */
export type EvalHook = (context: EvalContext) => Promise<Record<string, number>>;

/** The config fields the hook reads (config.ts: every method's generation fields, DPO / KTO's evalPreferenceAccuracy). */
export interface EvalHookArgs {
  outputDir?: string;
  perDeviceEvalBatchSize: number;
  perDeviceTrainBatchSize?: number;
  /** DPO's max_length (GRPO has none). */
  maxLength?: number | null;
  evalMetric?: string | null;
  evalMaxNewTokens?: number;
  evalGenerationBatchSize?: number | null;
  evalKeepSpecialTokens?: boolean;
  evalSavePredictions?: boolean;
  evalPreferenceAccuracy?: boolean;
  beta?: number;
  precomputeRefLogProbs?: boolean;
  precomputeRefBatchSize?: number | null;
  lossType?: string | readonly string[];
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

/** The predictions file of the evaluation at `step`, beside metrics.jsonl. */
export const predictionsFile = (outputDir: string, step: number): string =>
  path.join(outputDir, `eval_predictions-${step}.jsonl`);

/** The hook the config asks for, or null when it asks for none; throws naming the key a setting lacks. */
export function evalHookOf(init: EvalHookInit): EvalHook | null {
  checkKtoEvalKl(init);
  const parts = [generationPart(init), preferencePart(init)].filter((p): p is EvalHook => p !== null);
  if (parts.length === 0) return null;
  return async (context) => {
    const metrics: Record<string, number> = {};
    for (const part of parts) Object.assign(metrics, await part(context));
    return metrics;
  };
}

// Greedy answers to every prompt of the set with the policy as it is now (adapters active).
function generationPart(init: EvalHookInit): EvalHook | null {
  const { args, model, processor } = init;
  const metric = args.evalMetric ?? null;
  const records = init.evalGenerationDataset ?? null;
  if (metric === null) {
    if (args.evalSavePredictions === true) {
      throw new TypeError(
        'evalSavePredictions (eval_save_predictions): writes the answers eval_metric scores; set evalMetric and evalGenerationDataset',
      );
    }
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
  const save = args.evalSavePredictions === true;
  const outputDir = args.outputDir ?? null;
  if (save && outputDir === null) {
    throw new TypeError('evalSavePredictions: the predictions files go to outputDir (output_dir), which is not set');
  }
  const options = {
    metric,
    maxNewTokens: args.evalMaxNewTokens ?? 128,
    batchSize: args.evalGenerationBatchSize ?? args.perDeviceEvalBatchSize,
    keepSpecialTokens: args.evalKeepSpecialTokens === true,
  };
  return async ({ step, isMain }) => {
    const { metrics, lines } = await answerEvaluation(model, processor, records, options);
    if (save && isMain) writePredictions(predictionsFile(outputDir!, step), lines);
    return metrics;
  };
}

// The policy's implicit rewards against the reference the loss uses.
function preferencePart(init: EvalHookInit): EvalHook | null {
  const { args } = init;
  if (args.evalPreferenceAccuracy !== true) return null;
  if (init.method !== 'dpo' && init.method !== 'kto') {
    throw new TypeError(`evalPreferenceAccuracy: for dpo and kto (their reference), not ${init.method}`);
  }
  const records = init.evalDataset ?? null;
  if (records === null) {
    const rows = init.method === 'dpo' ? 'preference pairs' : 'unpaired rows';
    throw new TypeError(`evalPreferenceAccuracy: needs an evalDataset of ${rows} (eval_dataset in a recipe)`);
  }
  const cached = args.precomputeRefLogProbs === true;
  const live = init.refModel ?? init.adapter ?? null;
  if (!cached && live === null) {
    throw new TypeError(
      'evalPreferenceAccuracy: needs a reference: a refModel (ref_model_name_or_path), adapters (peft), or ' +
        'precomputeRefLogProbs (precompute_ref_log_probs)',
    );
  }
  return init.method === 'dpo' ? pairedPart(init, records, cached ? null : live!) : unpairedPart(init, records);
}

// DPO / MPO: pairs scored by lib/eval against the live reference, or against the cache the method's
// precompute pass filled (looked up by the method's own pair keys, so the values are the loss's).
function pairedPart(init: EvalHookInit, records: RecordDataset, live: CausalLM | LoraModel | null): EvalHook {
  const { args, model, processor } = init;
  const options = { beta: args.beta ?? 0.1, batchSize: args.perDeviceEvalBatchSize, maxLength: args.maxLength ?? null };
  return ({ method }) => {
    const reference = live ?? cachedPairLogps(method);
    return preferenceMetrics(model, processor, records as RecordDataset<PreferenceRecord>, { ...options, reference });
  };
}

function cachedPairLogps(method: TrainingMethod): ReferenceLogps {
  if (!(method instanceof DpoMethod) || method.options.cache === null) {
    throw new Error(
      'evalPreferenceAccuracy: precompute_ref_log_probs is set but the dpo method has no reference cache',
    );
  }
  const cache = method.options.cache;
  return async (records) => {
    const batch = await method.collate(await decoded(records));
    try {
      return torch.tidy(() => {
        const values = cache.lookup(batch.referenceKeys!, 2, batch.ids);
        const column = (k: number) => Array.from(values.select(1, k).contiguous().data() as Float64Array);
        return [...column(0), ...column(1)];
      });
    } finally {
      batch.dispose();
    }
  };
}

// KTO, APO-zero, BCO: each eval row's reward β·(log π − log π_ref) (the method's forward and its
// reference or cache), then the (desirable, undesirable) pairs of each prompt (unpaired_preference.ts).
function unpairedPart(init: EvalHookInit, records: RecordDataset): EvalHook {
  const beta = init.args.beta ?? 0.1;
  const batchSize = init.args.perDeviceEvalBatchSize;
  return async ({ method }) => {
    if (!(method instanceof KtoMethod)) throw new Error('evalPreferenceAccuracy: the kto hook runs with a kto method');
    const rows: UnpairedReward[] = [];
    for await (const group of inBatches(streamRecords(records as RecordDataset<UnpairedRecord>), batchSize)) {
      for (const record of group) requireKind(record, 'unpaired', 'kto preference accuracy');
      const batch = await method.collate(await decoded(group));
      try {
        const { policy, reference } = method.rowLogps(batch);
        group.forEach((record, i) => rows.push({ record, reward: beta * (policy[i]! - reference[i]!) }));
      } finally {
        batch.dispose();
      }
    }
    const result = unpairedPreferenceAccuracy(rows);
    if (result.pairs === 0) {
      const file = rows.length > 0 ? ` (${rows[0]!.record.source.file})` : '';
      throw new Error(
        `evalPreferenceAccuracy: eval_dataset${file} has no prompt with both a desirable and an undesirable ` +
          "completion; KTO's rows are unpaired and the accuracy compares the completions of one prompt",
      );
    }
    return { preference_accuracy: result.accuracy };
  };
}

// KTO's eval KL term with precomputed reference log-probs: each row's cached KL value was computed
// for the mismatched pair of the precompute pass (completions rolled within its batches, in dataset
// order), and the eval loop rolls within its own batches; they pair the same rows only when the two
// batch sizes are equal.
function checkKtoEvalKl(init: EvalHookInit): void {
  const { args } = init;
  if (init.method !== 'kto' || args.precomputeRefLogProbs !== true || !init.evalDataset) return;
  if (args.lossType !== undefined && args.lossType !== 'kto') return;
  const precompute = args.precomputeRefBatchSize ?? args.perDeviceTrainBatchSize;
  if (precompute === undefined || precompute === args.perDeviceEvalBatchSize) return;
  throw new TypeError(
    `perDeviceEvalBatchSize: kto's eval KL term reads reference values precomputed for the mismatched pairs of ` +
      `batches of ${precompute} (precompute_ref_batch_size, else per_device_train_batch_size), but the eval batches ` +
      `hold ${args.perDeviceEvalBatchSize}; set per_device_eval_batch_size (or precompute_ref_batch_size) so they match`,
  );
}

// Images decoded as the loader decodes them for a method (no augmentation: precomputed runs refuse it).
function decoded<T extends DataRecord>(records: readonly T[]): Promise<Array<DecodedRecord<T>>> {
  return Promise.all(
    records.map(async (record, index) => ({ index, record, pixels: await decodeRecordImages(record) })),
  );
}
