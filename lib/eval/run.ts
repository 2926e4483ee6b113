// A resumable evaluation run in an output folder, the engine of `vlalign eval`:
//   eval_config.json  the settings, written first; a rerun with other settings is refused;
//   predictions.jsonl one line per scored record, appended and fsynced batch by batch;
//   results.json, results.md  written atomically once every record is scored.
// Records stream in order; those already in predictions.jsonl are skipped, the rest are scored in
// batches. The results list the records in dataset order, so a run killed at any point and rerun
// writes the same files as a run never stopped (batched greedy decoding answers a prompt as it
// would alone, so the batches' new boundaries do not change an answer).
import fs from 'node:fs';
import path from 'node:path';
import type { CausalLM } from '../models/index.js';
import type { Processor } from '../processing/index.js';
import type { LoraModel } from '../adapters/index.js';
import { describeSource, type DataRecord, type PreferenceRecord, type PromptRecord } from '../data/records.js';
import { writeAtomic } from '../util/atomic_write.js';
import { answerBatch, type GreedyAnswer, type GreedyOptions } from './greedy.js';
import { scoreAnswer } from './greedy_accuracy.js';
import type { MetricName } from './metrics.js';
import { PredictionsLog, type PredictionLine } from './predictions_log.js';
import { pairRewards } from './preference.js';
import { inBatches, streamRecords, type RecordSource } from './record_source.js';
import { buildResults, writeResults, type EvalResults } from './results.js';

export const PREDICTIONS_FILE = 'predictions.jsonl';
export const CONFIG_FILE = 'eval_config.json';

export interface RunOptions {
  outputDir: string;
  /** What identifies the run (model, dataset, metric, ...): stored, compared on resume, echoed in the results. */
  settings: Record<string, unknown>;
  batchSize?: number;
  /** Called after each batch: records done (resumed ones included) and the total when known. */
  onProgress?: (done: number, total: number | null) => void;
}

/**
 * Scores every record of `records` with `scoreBatch` (resuming from the folder's log) and writes
 * the results; `metric` names the score in them.
 */
export async function runEvaluation<T extends DataRecord>(
  records: RecordSource<T>,
  metric: string,
  scoreBatch: (batch: T[]) => Promise<PredictionLine[]>,
  options: RunOptions,
): Promise<EvalResults> {
  const { outputDir } = options;
  fs.mkdirSync(outputDir, { recursive: true });
  checkSettings(path.join(outputDir, CONFIG_FILE), { metric, ...options.settings });
  const log = PredictionsLog.open(path.join(outputDir, PREDICTIONS_FILE));
  const total =
    typeof (records as { length?: unknown }).length === 'number' ? (records as { length: number }).length : null;
  const order: string[] = [];
  const seen = new Map<string, string>();
  let done = 0;
  // The records not yet in the log, in order; every record's id is noted (and checked unique) on the way.
  async function* pending(): AsyncGenerator<T> {
    for await (const record of streamRecords(records)) {
      const first = seen.get(record.id);
      if (first !== undefined) {
        throw new Error(
          `${describeSource(record.source)}: record id ${JSON.stringify(record.id)} repeats ${first}; ids key the resume log`,
        );
      }
      seen.set(record.id, describeSource(record.source));
      order.push(record.id);
      if (log.has(record.id)) done += 1;
      else yield record;
    }
  }
  for await (const batch of inBatches(pending(), options.batchSize ?? 8)) {
    log.append(await scoreBatch(batch));
    done += batch.length;
    options.onProgress?.(done, total);
  }
  const results = buildResults(
    { metric, ...options.settings },
    metric,
    order.map((id) => log.get(id)!),
  );
  writeResults(outputDir, results);
  return results;
}

// The stored settings must equal these (a resumed run continues the same evaluation).
function checkSettings(file: string, settings: Record<string, unknown>): void {
  const text = `${JSON.stringify(settings, null, 2)}\n`;
  if (!fs.existsSync(file)) {
    writeAtomic(file, text);
    return;
  }
  const stored = JSON.parse(fs.readFileSync(file, 'utf8')) as Record<string, unknown>;
  const keys = [...new Set([...Object.keys(stored), ...Object.keys(settings)])];
  const differ = keys.filter((k) => JSON.stringify(stored[k]) !== JSON.stringify(settings[k]));
  if (differ.length > 0) {
    const what = differ.map((k) => `${k}: ${JSON.stringify(stored[k])} there, ${JSON.stringify(settings[k])} now`);
    throw new Error(
      `${file} belongs to another evaluation (${what.join('; ')}); use another output folder or remove it`,
    );
  }
}

/** The groups a record's columns name (verl's data_source, VQA's question_type). */
function groupsOf(record: PromptRecord | PreferenceRecord): Pick<PredictionLine, 'data_source' | 'question_type'> {
  const columns = record.kind === 'prompt' ? record.columns : {};
  const pick = (key: string) => (typeof columns[key] === 'string' ? { [key]: columns[key] as string } : {});
  return { ...pick('data_source'), ...pick('question_type') };
}

export interface AnswerRunOptions extends RunOptions, Omit<GreedyOptions, 'batchSize'> {
  metric: MetricName;
}

/** Greedy answers scored by `options.metric`, resumable in `options.outputDir`. */
export function evaluateAnswers(
  model: CausalLM,
  processor: Processor,
  records: RecordSource<PromptRecord>,
  options: AnswerRunOptions,
): Promise<EvalResults> {
  const score = async (batch: PromptRecord[]): Promise<PredictionLine[]> => {
    const answers = await answerBatch(model, processor, batch, options);
    return answers.map((answer) => answerLine(answer, options.metric));
  };
  return runEvaluation(records, options.metric, score, options);
}

/** One greedy answer scored by `metric`, as the predictions files hold it. */
export function answerLine(answer: GreedyAnswer, metric: MetricName): PredictionLine {
  const { record, text, finishReason } = answer;
  const { score, parts } = scoreAnswer(answer, metric);
  const line: PredictionLine = {
    id: record.id,
    prediction: text,
    score,
    ...groupsOf(record),
    finish_reason: finishReason,
  };
  return parts === undefined ? line : { ...line, parts };
}

export interface PreferenceRunOptions extends RunOptions {
  reference: CausalLM | LoraModel;
  beta?: number;
  maxLength?: number | null;
}

/**
 * Preference accuracy (ties 0.5), resumable in `options.outputDir`; each pair's parts are its
 * rewards (β·(log π − log π_ref) of chosen and rejected) and their margin.
 */
export function evaluatePreferences(
  policy: CausalLM,
  processor: Processor,
  records: RecordSource<PreferenceRecord>,
  options: PreferenceRunOptions,
): Promise<EvalResults> {
  const score = async (batch: PreferenceRecord[]): Promise<PredictionLine[]> => {
    const rewards = await pairRewards(policy, processor, batch, options);
    return rewards.map((r) => ({
      id: r.id,
      prediction: '',
      score: r.correct,
      parts: { chosen_reward: r.chosen, rejected_reward: r.rejected, margin: r.chosen - r.rejected },
    }));
  };
  return runEvaluation(records, 'preference_accuracy', score, options);
}
