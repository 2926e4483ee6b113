// What a trainer's evaluate() can add to its eval_ metrics (TRL names them eval_<name>): generation
// metrics on held-out prompts, and preference accuracy with ties counted 0.5. Both return plain
// name -> value maps without the eval_ prefix, overall and per data_source (`<name>/<source>`).
import type { CausalLM } from '../models/index.js';
import type { Processor } from '../processing/index.js';
import { describeSource, type PreferenceRecord, type PromptRecord } from '../data/records.js';
import { greedyAnswers, type GreedyOptions } from './greedy.js';
import { referenceOf, type MetricName } from './metrics.js';
import type { PredictionLine } from './predictions_log.js';
import { preferenceAccuracy, type PreferenceAccuracyOptions } from './preference.js';
import type { RecordSource } from './record_source.js';
import { answerLine } from './run.js';

/** A generation evaluation: its metrics and each answer's line (the predictions files' lines). */
export interface AnswerEvaluation {
  /** `{ <metric>: mean, '<metric>/<data_source>': mean per source }`. */
  metrics: Record<string, number>;
  /** Per record, in order: answerLine's fields and the reference it was scored against. */
  lines: PredictionLine[];
}

/**
 * Greedy answers to `records`, each scored by `options.metric`: the mean overall and per
 * `data_source` column value, and the per-record lines.
 */
export async function answerEvaluation(
  model: CausalLM,
  processor: Processor,
  records: RecordSource<PromptRecord>,
  options: GreedyOptions & { metric: MetricName },
): Promise<AnswerEvaluation> {
  const sums = new Map<string, [number, number]>();
  const add = (name: string, value: number) => {
    const [sum, count] = sums.get(name) ?? [0, 0];
    sums.set(name, [sum + value, count + 1]);
  };
  const lines: PredictionLine[] = [];
  for await (const answer of greedyAnswers(model, processor, records, options)) {
    const line = answerLine(answer, options.metric);
    const where = describeSource(answer.record.source);
    lines.push({ ...line, reference: referenceOf(options.metric, answer.record.columns, where) });
    add(options.metric, line.score);
    if (line.data_source !== undefined) add(`${options.metric}/${line.data_source}`, line.score);
  }
  const metrics = Object.fromEntries([...sums].map(([name, [sum, count]]) => [name, sum / count]));
  return { metrics, lines };
}

/**
 * `{ <metric>: mean, '<metric>/<data_source>': mean per source }` over greedy answers to `records`
 * (each record's `data_source` column groups it).
 */
export async function answerMetrics(
  model: CausalLM,
  processor: Processor,
  records: RecordSource<PromptRecord>,
  options: GreedyOptions & { metric: MetricName },
): Promise<Record<string, number>> {
  return (await answerEvaluation(model, processor, records, options)).metrics;
}

/** `{ preference_accuracy }` (ties 0.5, unlike rewards/accuracies) of the policy against its reference. */
export async function preferenceMetrics(
  policy: CausalLM,
  processor: Processor,
  records: RecordSource<PreferenceRecord>,
  options: PreferenceAccuracyOptions,
): Promise<Record<string, number>> {
  const result = await preferenceAccuracy(policy, processor, records, options);
  return { preference_accuracy: result.accuracy };
}
