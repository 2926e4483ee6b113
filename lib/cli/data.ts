// `vlalign data`: MMPR's preference-data pipelines on our models. `dropout-ntp` makes rejected
// answers by letting the model finish a cut answer without the image; `sample` draws N reasoning
// answers per question with an answer, and `pairs` turns them into correct x incorrect pairs. The
// generating commands stream their input, print progress on stderr and resume after a kill
// (rerun the same command); every output is an MMPR jsonl with a meta.json entry beside it.
// `mia-dpo` makes MIA-DPO's multi-image pairs from single-image rows, the rejected answers picked
// by where the model's attention went.
import { type Command, InvalidArgumentError, Option } from 'commander';
import type { DType } from '../torch/index.js';
import { fromPretrained as loadModel } from '../models/pretrained.js';
import { fromPretrained as loadProcessor } from '../processing/index.js';
import { CHECK_MODES, PROMPT_VERSIONS, type CheckMode, type PromptVersion } from '../rewards/mmpr.js';
import { DROPOUT_NTP_DEFAULTS, runDropoutNtp } from '../pipelines/dropout_ntp.js';
import { modelEngine, type GenerationEngine, type SamplingSettings } from '../pipelines/engine.js';
import { runPairs } from '../pipelines/pairs.js';
import { runCorrectnessSampling, SAMPLE_DEFAULTS } from '../pipelines/sample.js';
import { runMiaDpo } from '../pipelines/mia_dpo.js';
import {
  attentionEngine,
  attentionLayers,
  MIA_DPO_DEFAULTS,
  MIA_FORMS,
  type MiaForm,
} from '../pipelines/mia_dpo_select.js';

const positiveInt = (name: string) => (value: string) => {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError(`${name} must be a positive integer, got ${value}`);
  return n;
};

const nonNegativeInt = (name: string) => (value: string) => {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0)
    throw new InvalidArgumentError(`${name} must be a non-negative integer, got ${value}`);
  return n;
};

const number = (name: string, ok: (n: number) => boolean, what: string) => (value: string) => {
  const n = Number(value);
  if (value.trim() === '' || !ok(n)) throw new InvalidArgumentError(`${name} must be ${what}, got ${value}`);
  return n;
};

interface GenerationFlags {
  model: string;
  torchDtype: DType;
  temperature: number;
  topK: number;
  topP: number;
  maxNewTokens: number;
  seed: number;
}

/** The model options both generating commands take, with MMPR's defaults for the command. */
function generationOptions(command: Command, defaults: { maxNewTokens: number }): Command {
  return command
    .requiredOption('--model <dir>', 'the checkpoint folder (HF layout) that generates')
    .addOption(
      new Option('--torch-dtype <dtype>', 'the dtype the model loads in')
        .choices(['float32', 'bfloat16', 'float16'])
        .default('float32'),
    )
    .option(
      '--temperature <t>',
      'sampling temperature (> 0)',
      number('--temperature', (n) => n > 0, 'a positive number'),
      0.7,
    )
    .option('--top-k <k>', 'keep the k most likely tokens (0 = off)', nonNegativeInt('--top-k'), 50)
    .option(
      '--top-p <p>',
      'nucleus mass (1 = off)',
      number('--top-p', (n) => n > 0 && n <= 1, 'in (0, 1]'),
      1.0,
    )
    .option(
      '--max-new-tokens <n>',
      'longest completion in tokens',
      positiveInt('--max-new-tokens'),
      defaults.maxNewTokens,
    )
    .option(
      '--seed <n>',
      'batch b samples with seed + b (a resumed run repeats the same draws)',
      nonNegativeInt('--seed'),
      0,
    )
    .option('--batch-size <n>', 'prompts generated together', positiveInt('--batch-size'), 8)
    .option('--image-root <dir>', 'where image paths resolve (default: the input folder)')
    .option('--quiet', 'no progress lines on stderr');
}

async function engineFor(o: GenerationFlags): Promise<GenerationEngine> {
  const processor = await loadProcessor(o.model);
  const model = await loadModel(o.model, { dtype: o.torchDtype });
  const settings: SamplingSettings = {
    temperature: o.temperature,
    topK: o.topK,
    topP: o.topP,
    maxNewTokens: o.maxNewTokens,
    seed: o.seed,
  };
  return modelEngine(model, processor, settings);
}

const progress = (quiet: boolean | undefined) =>
  quiet ? undefined : (line: string) => process.stderr.write(`${line}\n`);

/** Adds `data dropout-ntp | sample | pairs` to the program. */
export function registerData(cli: Command): void {
  const data = cli
    .command('data')
    .description(
      "Build preference data with MMPR's pipelines (DropoutNTP, correctness sampling and pairs) and MIA-DPO's",
    );
  generationOptions(
    data
      .command('dropout-ntp')
      .description('Rows {image?, question, chosen} -> + rejected: the model continues the first start-ratio of chosen')
      .requiredOption('--input <file>', 'the input jsonl')
      .requiredOption('--output <file>', 'the output jsonl; a meta.json entry is written beside it; rerun to resume')
      .option(
        '--start-ratio <r>',
        'share of chosen kept as prefix',
        number('--start-ratio', (n) => n >= 0 && n <= 1, 'in [0, 1]'),
        DROPOUT_NTP_DEFAULTS.startRatio,
      )
      .option('--load-image', 'let the model see the image while continuing (default: text only)')
      .option(
        '--num-return-sequences <n>',
        'rejected answers per row',
        positiveInt('--num-return-sequences'),
        DROPOUT_NTP_DEFAULTS.numReturnSequences,
      )
      .option(
        '--max-num <n>',
        'InternVL tiles per image with --load-image',
        positiveInt('--max-num'),
        DROPOUT_NTP_DEFAULTS.maxNum,
      )
      .option('--meta <file>', 'the meta.json to add the entry to (default: beside the output)')
      .option('--name <name>', "the meta.json entry's name (default: the output file name)"),
    { maxNewTokens: DROPOUT_NTP_DEFAULTS.maxNewTokens },
  ).action(async (o) => {
    const summary = await runDropoutNtp({
      input: o.input,
      output: o.output,
      engine: await engineFor(o),
      imageRoot: o.imageRoot,
      startRatio: o.startRatio,
      loadImage: o.loadImage === true,
      numReturnSequences: o.numReturnSequences,
      maxNum: o.maxNum,
      batchSize: o.batchSize,
      metaFile: o.meta,
      name: o.name,
      log: progress(o.quiet),
    });
    process.stdout.write(
      `dropout-ntp: ${summary.rows} rows (${summary.resumed} resumed), ${summary.lines} lines in ${o.output}\n`,
    );
  });
  generationOptions(
    data
      .command('sample')
      .description('Rows {image?, question, answer} -> N sampled reasoning responses each, as MMPR writes them')
      .requiredOption('--input <file>', 'the input jsonl (a name with _zh_ switches to the zh prompt)')
      .requiredOption('--output <file>', 'the output jsonl; rerun to resume')
      .addOption(
        new Option('--prompt-version <v>', "MMPR's prompt").choices([...PROMPT_VERSIONS]).makeOptionMandatory(),
      )
      .option(
        '--num-return-sequences <n>',
        'responses per row',
        positiveInt('--num-return-sequences'),
        SAMPLE_DEFAULTS.numReturnSequences,
      )
      .option('--max-num <n>', 'InternVL tiles per image', positiveInt('--max-num'), SAMPLE_DEFAULTS.maxNum),
    { maxNewTokens: SAMPLE_DEFAULTS.maxNewTokens },
  ).action(async (o) => {
    const summary = await runCorrectnessSampling({
      input: o.input,
      output: o.output,
      engine: await engineFor(o),
      promptVersion: o.promptVersion as PromptVersion,
      imageRoot: o.imageRoot,
      numReturnSequences: o.numReturnSequences,
      maxNum: o.maxNum,
      batchSize: o.batchSize,
      log: progress(o.quiet),
    });
    process.stdout.write(
      `sample: ${summary.rows} rows (${summary.resumed} resumed), ${summary.lines} responses in ${o.output}\n`,
    );
  });
  data
    .command('pairs')
    .description("Sampled responses -> MMPR's correctness and format pairs (raw/, pos_items/, neg_items/, meta.json)")
    .requiredOption('--input <file>', "`data sample`'s output")
    .requiredOption('--out-dir <dir>', 'the save folder')
    .option('--name <name>', 'dataset name (default: the input file name); also picks the check modes')
    .option(
      '--num-pairs-per-key <n>',
      'pairs kept per question (capped at 3 above 500,000 lines)',
      positiveInt('--num-pairs-per-key'),
      15,
    )
    .option('--answer-fix', "rewrite a response's final answer to the ground truth's spelling (en / zh prompts)")
    .option('--use-correctness-cache', "take correctness from each row's is_correct (no substring skip)")
    .option('--max-lines <n>', 'read at most n lines', positiveInt('--max-lines'), 1_000_000)
    .addOption(
      new Option('--modes <modes...>', 'check_answer modes instead of those the dataset name picks').choices([
        ...CHECK_MODES,
      ]),
    )
    .option('--seed <n>', "Python random's seed for the kept pairs", nonNegativeInt('--seed'), 0)
    .option('--image-root <dir>', 'the root written to meta.json (default: the input folder)')
    .action(async (o) => {
      const summary = await runPairs({
        input: o.input,
        outDir: o.outDir,
        name: o.name,
        numPairsPerKey: o.numPairsPerKey,
        answerFix: o.answerFix === true,
        useCorrectnessCache: o.useCorrectnessCache === true,
        maxLines: o.maxLines,
        modes: o.modes as CheckMode[] | undefined,
        seed: o.seed,
        imageRoot: o.imageRoot,
        log: (line) => process.stderr.write(`${line}\n`),
      });
      process.stdout.write(`${JSON.stringify(summary)}\n`);
    });
  registerMiaDpo(data);
}

const formList = (value: string): MiaForm[] => {
  const forms = value.split(',').map((f) => f.trim());
  const bad = forms.filter((f) => !MIA_FORMS.includes(f as MiaForm));
  if (bad.length > 0 || forms.length === 0 || new Set(forms).size !== forms.length)
    throw new InvalidArgumentError(`--forms takes distinct ones of ${MIA_FORMS.join(',')}, got ${value}`);
  return forms as MiaForm[];
};

/** `data mia-dpo`: greedy answers and attention on our models (MIA-DPO's selection settings). */
function registerMiaDpo(data: Command): void {
  data
    .command('mia-dpo')
    .description(
      "Single-image rows {image, question, chosen} -> MIA-DPO's sequence / grid / pic-in-pic pairs, rejected answers chosen by attention",
    )
    .requiredOption('--input <file>', 'the input jsonl (companion images come from its own images)')
    .requiredOption('--out <dir>', 'the output folder; rerun the same command to resume')
    .requiredOption('--model <dir>', 'the checkpoint folder (HF layout) that answers: a Qwen2-VL or InternVL')
    .addOption(
      new Option('--torch-dtype <dtype>', 'the dtype the model loads in')
        .choices(['float32', 'bfloat16', 'float16'])
        .default('float32'),
    )
    .option('--pool <file>', "image paths companions come from, one a line (default: the input's images)")
    .option('--forms <list>', 'comma-separated forms to make', formList, [...MIA_FORMS])
    .option(
      '--layer <n>',
      "the decoder layer whose attention is read (default: the middle one, MIA-DPO's 16 of 32)",
      nonNegativeInt('--layer'),
    )
    .option(
      '--max-new-tokens <n>',
      'longest greedy answer',
      positiveInt('--max-new-tokens'),
      MIA_DPO_DEFAULTS.maxNewTokens,
    )
    .option('--seed <n>', "seeds each row's companions, positions and noise", nonNegativeInt('--seed'), 0)
    .option('--no-noise', 'show the model the clean pictures (MIA-DPO adds noise to grid and pic-in-pic)')
    .option('--batch-size <n>', 'rows answered together', positiveInt('--batch-size'), 8)
    .option('--image-root <dir>', 'where image paths resolve (default: the input folder)')
    .option('--quiet', 'no progress lines on stderr')
    .action(async (o) => {
      const processor = await loadProcessor(o.model);
      const model = await loadModel(o.model, { dtype: o.torchDtype as DType });
      const layer = o.layer ?? Math.floor(attentionLayers(model).length / 2);
      const summary = await runMiaDpo({
        input: o.input,
        outDir: o.out,
        engine: attentionEngine(model, processor, { layer, maxNewTokens: o.maxNewTokens }),
        imageRoot: o.imageRoot,
        poolFile: o.pool,
        forms: o.forms,
        seed: o.seed,
        noise: o.noise !== false,
        batchSize: o.batchSize,
        log: progress(o.quiet),
      });
      const kept = Object.entries(summary.kept)
        .map(([form, n]) => `${form} ${n}`)
        .join(', ');
      process.stdout.write(
        `mia-dpo: ${summary.rows} rows (${summary.resumed} resumed), ${summary.lines} candidates; kept ${kept} in ${o.out}\n`,
      );
    });
}
