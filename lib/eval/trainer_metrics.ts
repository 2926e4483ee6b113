// What a trainer's evaluate() can add to its eval_ metrics (TRL names them eval_<name>): generation
// metrics on held-out prompts, and preference accuracy with ties counted 0.5. Both return plain
// name -> value maps without the eval_ prefix, overall and per data_source (`<name>/<source>`).
import type { CausalLM } from '../models/index.js';
import type { Processor } from '../processing/index.js';
import type { PreferenceRecord, PromptRecord } from '../data/records.js';
import { greedyAnswers, type GreedyOptions } from './greedy.js';
import { scoreAnswer } from './greedy_accuracy.js';
import type { MetricName } from './metrics.js';
import { preferenceAccuracy, type PreferenceAccuracyOptions } from './preference.js';
import type { RecordSource } from './record_source.js';

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
  const sums = new Map<string, [number, number]>();
  const add = (name: string, value: number) => {
    const [sum, count] = sums.get(name) ?? [0, 0];
    sums.set(name, [sum + value, count + 1]);
  };
  for await (const answer of greedyAnswers(model, processor, records, options)) {
    const { score } = scoreAnswer(answer, options.metric);
    add(options.metric, score);
    const source = answer.record.columns.data_source;
    if (typeof source === 'string') add(`${options.metric}/${source}`, score);
  }
  return Object.fromEntries([...sums].map(([name, [sum, count]]) => [name, sum / count]));
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
