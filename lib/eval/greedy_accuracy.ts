// Held-out greedy accuracy in one call: greedy answers to prompt records, each scored by a metric
// against its reference answers (the record's `answers` / `answer` / `ground_truth` / `solution`
// column), averaged.
import type { CausalLM } from '../models/index.js';
import type { Processor } from '../processing/index.js';
import type { PromptRecord } from '../data/records.js';
import { describeSource } from '../data/records.js';
import { greedyAnswers, type GreedyAnswer, type GreedyOptions } from './greedy.js';
import { scorePrediction, type MetricName, type MetricScore } from './metrics.js';
import type { RecordSource } from './record_source.js';

export interface GreedyAccuracyOptions extends GreedyOptions {
  /** How an answer is scored (default 'exact_match': EvalAI-normalised exact match). */
  metric?: MetricName;
  /** Called after each record with the number scored so far. */
  onRecord?: (done: number) => void;
}

export interface ScoredAnswer {
  id: string;
  prediction: string;
  score: number;
}

export interface GreedyAccuracy {
  /** Mean score over the records (NaN for none). */
  accuracy: number;
  count: number;
  /** Per record, in order. */
  answers: ScoredAnswer[];
}

/**
 * Greedy-decodes an answer to every record and returns the mean metric score:
 * `await evaluation.greedyAccuracy(model, processor, records, { metric: 'exact_match', maxNewTokens: 32 })`.
 */
export async function greedyAccuracy(
  model: CausalLM,
  processor: Processor,
  records: RecordSource<PromptRecord>,
  options: GreedyAccuracyOptions = {},
): Promise<GreedyAccuracy> {
  const metric = options.metric ?? 'exact_match';
  const answers: ScoredAnswer[] = [];
  for await (const answer of greedyAnswers(model, processor, records, options)) {
    const { score } = scoreAnswer(answer, metric);
    answers.push({ id: answer.record.id, prediction: answer.text, score });
    options.onRecord?.(answers.length);
  }
  const total = answers.reduce((s, a) => s + a.score, 0);
  return { accuracy: answers.length === 0 ? Number.NaN : total / answers.length, count: answers.length, answers };
}

/** A greedy answer scored against its record's reference (errors name the record's file and line). */
export function scoreAnswer(answer: GreedyAnswer, metric: MetricName): MetricScore {
  const { record, text } = answer;
  return scorePrediction(metric, text, record.columns, describeSource(record.source));
}
