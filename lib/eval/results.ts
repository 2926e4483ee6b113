// An evaluation's results: the aggregate score (and parts) over all records and per data_source /
// question_type, the per-record predictions in dataset order, as JSON and as a markdown table, both
// written atomically. Nothing time-dependent goes in, so a resumed run writes the same bytes.
import path from 'node:path';
import { writeAtomic } from '../util/atomic_write.js';
import type { PredictionLine } from './predictions_log.js';

export interface Aggregate {
  count: number;
  /** Mean score (NaN written as null for no records). */
  score: number;
  /** Means of the score's parts. */
  parts: Record<string, number>;
}

export interface EvalResults {
  /** What was evaluated and how (model, dataset, metric, max_new_tokens, ...). */
  settings: Record<string, unknown>;
  metric: string;
  overall: Aggregate;
  by_data_source: Record<string, Aggregate>;
  by_question_type: Record<string, Aggregate>;
  predictions: PredictionLine[];
}

export const RESULTS_JSON = 'results.json';
export const RESULTS_MARKDOWN = 'results.md';

/** Aggregates the per-record lines (in dataset order) into the results. */
export function buildResults(
  settings: Record<string, unknown>,
  metric: string,
  lines: readonly PredictionLine[],
): EvalResults {
  return {
    settings,
    metric,
    overall: aggregate(lines),
    by_data_source: groupedBy(lines, (l) => l.data_source),
    by_question_type: groupedBy(lines, (l) => l.question_type),
    predictions: [...lines],
  };
}

/** Count, mean score and mean parts of `lines`. */
export function aggregate(lines: readonly PredictionLine[]): Aggregate {
  const mean = (values: number[]) =>
    values.length === 0 ? Number.NaN : values.reduce((a, b) => a + b, 0) / values.length;
  const names = [...new Set(lines.flatMap((l) => Object.keys(l.parts ?? {})))].sort();
  const parts = Object.fromEntries(names.map((n) => [n, mean(lines.map((l) => l.parts?.[n] ?? Number.NaN))]));
  return { count: lines.length, score: mean(lines.map((l) => l.score)), parts };
}

function groupedBy(
  lines: readonly PredictionLine[],
  key: (l: PredictionLine) => string | undefined,
): Record<string, Aggregate> {
  const groups = new Map<string, PredictionLine[]>();
  for (const line of lines) {
    const name = key(line);
    if (name === undefined) continue;
    groups.set(name, [...(groups.get(name) ?? []), line]);
  }
  return Object.fromEntries([...groups.keys()].sort().map((name) => [name, aggregate(groups.get(name)!)]));
}

/** A markdown table: one row for all records, then one per data_source and per question_type. */
export function resultsMarkdown(results: EvalResults): string {
  const partNames = Object.keys(results.overall.parts);
  const header = ['group', 'count', results.metric, ...partNames];
  const row = (name: string, a: Aggregate) => [
    name,
    String(a.count),
    fixed(a.score),
    ...partNames.map((p) => fixed(a.parts[p])),
  ];
  const rows = [
    row('all', results.overall),
    ...Object.entries(results.by_data_source).map(([name, a]) => row(`data_source: ${name}`, a)),
    ...Object.entries(results.by_question_type).map(([name, a]) => row(`question_type: ${name}`, a)),
  ];
  const line = (cells: string[]) => `| ${cells.map((c) => c.replaceAll('|', '\\|')).join(' | ')} |`;
  const settings = Object.entries(results.settings).map(
    ([k, v]) => `- ${k}: ${typeof v === 'string' ? v : JSON.stringify(v)}`,
  );
  return [
    `# ${results.metric}`,
    '',
    ...settings,
    '',
    line(header),
    line(header.map(() => '---')),
    ...rows.map(line),
    '',
  ].join('\n');
}

const fixed = (value: number | undefined): string =>
  value === undefined || Number.isNaN(value) ? 'n/a' : value.toFixed(4);

/** Writes results.json and results.md into `dir`, each atomically. */
export function writeResults(dir: string, results: EvalResults): void {
  writeAtomic(path.join(dir, RESULTS_JSON), `${JSON.stringify(results, null, 2)}\n`);
  writeAtomic(path.join(dir, RESULTS_MARKDOWN), resultsMarkdown(results));
}
