// `vlalign eval`: a model on a question set (greedy answers scored by a metric) or on a preference
// set (preference accuracy against a reference model), resumable in its output folder. Every user
// error ends as one line naming the option, or the file and row of a bad record.
import path from 'node:path';
import { type Command, InvalidArgumentError, Option } from 'commander';
import type { Device, DType } from '../torch/index.js';
import { DATASET_FORMATS, openDataset } from '../data/open.js';
import type { PreferenceRecord, PromptRecord, RecordDataset } from '../data/records.js';
import { METRICS, isMetricName } from '../eval/metrics.js';
import { openQuestions, QUESTION_FORMATS, type QuestionFormat } from '../eval/question_data.js';
import type { EvalResults } from '../eval/results.js';
import { evaluateAnswers, evaluatePreferences } from '../eval/run.js';
import { fromPretrained as loadModel } from '../models/pretrained.js';
import { fromPretrained as loadProcessor } from '../processing/index.js';

const PREFERENCE_METRIC = 'preference_accuracy';
const QUESTION_DATA = [...QUESTION_FORMATS, 'trl_prompt', 'verl', 'hf_disk'] as const;
const PREFERENCE_DATA = ['trl', 'mmpr', 'plain_dpo'] as const;
const FORMATS = [...QUESTION_DATA, ...PREFERENCE_DATA];

interface EvalOptions {
  model: string;
  dataset: string;
  format: string;
  metric: string;
  outputDir: string;
  batchSize: number;
  maxNewTokens: number;
  split?: string;
  imageRoot?: string;
  skipBadRows?: boolean;
  keepSpecialTokens?: boolean;
  refModel?: string;
  beta: number;
  maxLength?: number;
  torchDtype: DType;
  maxTiles?: number;
  device: string;
}

const positiveInt = (name: string) => (value: string) => {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError(`${name} must be a positive integer, got ${value}`);
  return n;
};

const positiveNumber = (name: string) => (value: string) => {
  const n = Number(value);
  if (!(n > 0) || !Number.isFinite(n))
    throw new InvalidArgumentError(`${name} must be a positive number, got ${value}`);
  return n;
};

const deviceName = (value: string): string => {
  if (!/^(cpu|cuda|cuda:\d+)$/.test(value))
    throw new InvalidArgumentError(`--device must be cpu, cuda or cuda:N, got ${value}`);
  return value;
};

/** Adds `eval` to the program. */
export function registerEval(cli: Command): void {
  cli
    .command('eval')
    .description('Evaluate a model: greedy answers scored by a metric, or preference accuracy on pairs')
    .requiredOption('--model <dir>', 'the checkpoint folder (HF layout)')
    .requiredOption('--dataset <path>', 'the data file or folder')
    .requiredOption('--output-dir <dir>', 'predictions.jsonl, results.json and results.md go here; a rerun resumes')
    .addOption(new Option('--format <format>', 'the data format').choices(FORMATS).default('vqa'))
    .addOption(
      new Option('--metric <metric>', 'how an answer is scored')
        .choices([...METRICS, PREFERENCE_METRIC])
        .default('exact_match'),
    )
    .option('--batch-size <n>', 'prompts (or pairs) per forward', positiveInt('--batch-size'), 8)
    .option('--max-new-tokens <n>', 'the longest answer, in tokens', positiveInt('--max-new-tokens'), 128)
    .option('--split <split>', 'trl / trl_prompt / hf_disk: train, test[:10%], ...')
    .option('--image-root <dir>', 'where image paths resolve (default: the data folder)')
    .option('--skip-bad-rows', 'leave malformed rows out (counted) instead of stopping at the first')
    .option('--keep-special-tokens', 'keep special tokens in the answers (InternVL <box>)')
    .option(
      '--max-tiles <n>',
      "vqa / refcoco on InternVL: the most tiles per image (InternVL's --max-num)",
      positiveInt('--max-tiles'),
    )
    .option('--ref-model <dir>', 'preference_accuracy: the reference checkpoint')
    .option('--beta <beta>', 'preference_accuracy: DPO beta (scales the rewards)', positiveNumber('--beta'), 0.1)
    .option('--max-length <n>', 'preference_accuracy: keep the first n tokens of each row', positiveInt('--max-length'))
    .addOption(
      new Option('--torch-dtype <dtype>', 'the dtype the model loads in')
        .choices(['float32', 'bfloat16', 'float16'])
        .default('float32'),
    )
    .option('--device <device>', 'cpu, cuda or cuda:N', deviceName, 'cpu')
    .addHelpText(
      'after',
      `
Formats: ${QUESTION_DATA.join(', ')} (questions); ${PREFERENCE_DATA.join(', ')} (pairs, with --metric ${PREFERENCE_METRIC}).
  vqa: jsonl rows {image?, question, answer | answers, data_source?, question_type?}
  refcoco: InternVL's refcoco jsonl {image, sent, bbox, width, height}, asked with InternVL's prompt
Metrics: ${METRICS.join(', ')}, ${PREFERENCE_METRIC}. See docs/eval.md.`,
    )
    .action(async (options: EvalOptions) => {
      const results = await runEval(options);
      process.stdout.write(summary(results, options.outputDir));
    });
}

async function runEval(o: EvalOptions): Promise<EvalResults> {
  const preference = o.metric === PREFERENCE_METRIC;
  const pairData = (PREFERENCE_DATA as readonly string[]).includes(o.format);
  if (preference !== pairData) {
    throw new Error(
      preference
        ? `--metric ${PREFERENCE_METRIC} reads pairs: --format one of ${PREFERENCE_DATA.join(', ')}, not ${o.format}`
        : `--format ${o.format} holds pairs: use --metric ${PREFERENCE_METRIC}`,
    );
  }
  if (preference && o.refModel === undefined) throw new Error(`--metric ${PREFERENCE_METRIC} needs --ref-model <dir>`);
  const dataset = await openData(o);
  const processor = await loadProcessor(o.model);
  const load = { dtype: o.torchDtype, device: o.device as Device };
  const model = await loadModel(o.model, load);
  const progress = progressReporter();
  const common = {
    outputDir: o.outputDir,
    batchSize: o.batchSize,
    onProgress: progress,
    settings: {
      model: path.resolve(o.model),
      dataset: path.resolve(o.dataset),
      format: o.format,
      ...(o.split === undefined ? {} : { split: o.split }),
      ...(o.maxTiles === undefined ? {} : { max_tiles: o.maxTiles }),
    },
  };
  try {
    if (!preference) {
      if (!isMetricName(o.metric)) throw new Error(`unknown --metric ${o.metric}`);
      const settings = {
        ...common.settings,
        max_new_tokens: o.maxNewTokens,
        keep_special_tokens: o.keepSpecialTokens === true,
      };
      return await evaluateAnswers(model, processor, dataset as RecordDataset<PromptRecord>, {
        ...common,
        settings,
        metric: o.metric,
        maxNewTokens: o.maxNewTokens,
        keepSpecialTokens: o.keepSpecialTokens === true,
      });
    }
    const reference = await loadModel(o.refModel!, load);
    try {
      const settings = {
        ...common.settings,
        ref_model: path.resolve(o.refModel!),
        beta: o.beta,
        max_length: o.maxLength ?? null,
      };
      return await evaluatePreferences(model, processor, dataset as RecordDataset<PreferenceRecord>, {
        ...common,
        settings,
        reference,
        beta: o.beta,
        maxLength: o.maxLength ?? null,
      });
    } finally {
      reference.dispose();
    }
  } finally {
    model.dispose();
  }
}

async function openData(o: EvalOptions): Promise<RecordDataset> {
  const skipBadRows = o.skipBadRows === true;
  if ((QUESTION_FORMATS as readonly string[]).includes(o.format)) {
    return openQuestions(path.resolve(o.dataset), o.format as QuestionFormat, {
      imageRoot: o.imageRoot === undefined ? undefined : path.resolve(o.imageRoot),
      skipBadRows,
      maxTiles: o.maxTiles,
    });
  }
  const spec: Record<string, unknown> = { format: o.format, path: o.dataset, skipBadRows };
  if (o.split !== undefined) spec.split = o.split;
  if (o.imageRoot !== undefined) spec.imageRoot = o.imageRoot;
  if (o.format === 'trl') spec.kind = 'preference';
  if (!(DATASET_FORMATS as readonly string[]).includes(o.format)) throw new Error(`unknown --format ${o.format}`);
  return openDataset(spec, { source: '--dataset', root: 'dataset' });
}

// Progress on stderr: one updating line on a terminal, else a line at most every 10 s and at the end.
function progressReporter(): (done: number, total: number | null) => void {
  const tty = process.stderr.isTTY === true;
  const started = Date.now();
  let last = 0;
  return (done, total) => {
    const now = Date.now();
    const finished = total !== null && done >= total;
    if (!tty && !finished && now - last < 10_000) return;
    last = now;
    const rate = done / Math.max((now - started) / 1000, 1e-3);
    const text = `eval: ${done}${total === null ? '' : `/${total}`} records (${rate.toFixed(2)}/s)`;
    process.stderr.write(tty ? `\r${text}${finished ? '\n' : ''}` : `${text}\n`);
  };
}

function summary(results: EvalResults, outputDir: string): string {
  const { overall, metric } = results;
  const score = Number.isNaN(overall.score) ? 'n/a' : overall.score.toFixed(4);
  return `${metric}: ${score} over ${overall.count} records; ${path.join(outputDir, 'results.json')}, results.md\n`;
}
