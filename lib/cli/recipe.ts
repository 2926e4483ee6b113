// Recipes: one YAML file (snake_case, flat training arguments beside the model / data / peft blocks)
// mapped onto the existing schemas, command-line overrides on top, then the trainer built from it.
import fs from 'node:fs';
import path from 'node:path';
import { isMap, LineCounter, parseDocument, parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { LoraConfigSchema, type LoraConfig } from '../adapters/config.js';
import { CONFIG_FIELDS, CONFIG_SCHEMAS, type DpoConfig, type KtoConfig, type SftConfig } from '../train/config.js';
import { GrpoConfigSchema, GrpoFields, type GrpoConfig } from '../train/grpo/config.js';
import { camelToSnake, snakeToCamel, toCamelKeys } from '../util/case.js';
import { parseDatasetSpec } from '../data/open.js';
import { parsePromptSetSpec } from '../eval/prompt_set.js';
import { ConfigError, parseConfig, type ConfigProblem } from '../util/config_error.js';
import { didYouMean } from '../util/nearest.js';
import { fromVerlNames } from './verl_names.js';

/** BitsAndBytesConfig's names and defaults (fp4, no double quantisation; QLoRA recipes set nf4 + double). */
export const QuantizationBlockSchema = z.strictObject({
  loadIn_4bit: z.literal(true, { error: 'only load_in_4bit: true is supported (no 8-bit)' }),
  bnb_4bitQuantType: z.enum(['nf4', 'fp4']).default('fp4'),
  bnb_4bitUseDoubleQuant: z.boolean().default(false),
  bnb_4bitComputeDtype: z.enum(['float32', 'bfloat16']).default('float32'),
  llmInt8SkipModules: z.array(z.string()).nullable().default(null),
});

/** Processor options by their Hugging Face names; absent: the checkpoint's files decide. */
export const ProcessorBlockSchema = z.strictObject({
  paddingSide: z.enum(['left', 'right']).optional(),
  /** Qwen2-VL image processor. */
  minPixels: z.number().int().positive().optional(),
  maxPixels: z.number().int().positive().optional(),
  addVisionId: z.boolean().optional(),
  /** InternVL tiling. */
  maxDynamicPatch: z.number().int().positive().optional(),
  minDynamicPatch: z.number().int().positive().optional(),
  useThumbnail: z.boolean().optional(),
  systemMessage: z.string().optional(),
  chatTemplateName: z.string().optional(),
});

// The recipe's own keys; every other top-level key belongs to the trainer's config.
const RECIPE_FIELDS = {
  trainer: z.enum(['sft', 'dpo', 'kto', 'grpo']),
  modelNameOrPath: z.string().min(1),
  refModelNameOrPath: z.string().nullable().default(null),
  torchDtype: z.enum(['float32', 'bfloat16', 'float64']).default('float32'),
  /** The dataset block (lib/data/open.ts DatasetSpec); checked by openDataset. */
  dataset: z.looseObject({ format: z.string() }),
  evalDataset: z.looseObject({ format: z.string() }).nullable().default(null),
  /** The prompts eval_metric scores greedy answers to at each evaluation (lib/eval/prompt_set.ts). */
  evalGenerationDataset: z.looseObject({ format: z.string() }).nullable().default(null),
  /** PEFT LoraConfig names; absent: full fine-tune. */
  peft: LoraConfigSchema.nullable().default(null),
  quantization: QuantizationBlockSchema.nullable().default(null),
  processor: ProcessorBlockSchema.default({}),
};

const RecipeHead = z.looseObject({ trainer: RECIPE_FIELDS.trainer });

/** The trainers a recipe can name. */
export type RecipeTrainer = z.output<typeof RECIPE_FIELDS.trainer>;
export const RECIPE_TRAINERS: readonly RecipeTrainer[] = RECIPE_FIELDS.trainer.options;

const FIELDS = { ...CONFIG_FIELDS, grpo: GrpoFields };
const SCHEMAS = { ...CONFIG_SCHEMAS, grpo: GrpoConfigSchema };

/** The full schema of a recipe for one method: the recipe keys and the method's config keys, flat. */
export function recipeSchema(method: RecipeTrainer) {
  return z.strictObject({ ...RECIPE_FIELDS, ...FIELDS[method].shape });
}

export interface Recipe {
  file: string;
  trainer: RecipeTrainer;
  modelNameOrPath: string;
  refModelNameOrPath: string | null;
  torchDtype: 'float32' | 'bfloat16' | 'float64';
  dataset: Record<string, unknown>;
  evalDataset: Record<string, unknown> | null;
  evalGenerationDataset: Record<string, unknown> | null;
  peft: LoraConfig | null;
  quantization: z.output<typeof QuantizationBlockSchema> | null;
  processor: z.output<typeof ProcessorBlockSchema>;
  args: SftConfig | DpoConfig | KtoConfig | GrpoConfig;
  /** The snake_case keys a --flag set, so a later error names the flag rather than the file's key. */
  flagKeys?: readonly string[];
}

const RECIPE_KEYS = new Set(Object.keys(RECIPE_FIELDS));
// Blocks whose keys are data (PEFT patterns keyed by module name) keep their spelling.
const VERBATIM = ['rank_pattern', 'alpha_pattern', 'dataset', 'eval_dataset', 'eval_generation_dataset'];

/** Reads `file`, applies `overrides` (['--key', 'value', ...] or ['--key=value']), checks it all. */
export function loadRecipe(file: string, overrides: readonly string[] = []): Recipe {
  const raw = withVerlNames(readYaml(file), file);
  const method = RecipeHead.safeParse({ ...raw, ...pairsOf(overrides, file) });
  if (!method.success) {
    const names = RECIPE_TRAINERS.map((t) => `'${t}'`).join(', ');
    throw new ConfigError(file, [{ path: 'trainer', message: `expected one of ${names}` }]);
  }
  const schema = recipeSchema(method.data.trainer);
  const known = Object.keys(schema.shape).map(camelToSnake);
  const merged: Record<string, unknown> = { ...raw };
  for (const [key, value] of Object.entries(pairsOf(overrides, file))) {
    if (!known.includes(key)) {
      throw new ConfigError(file, [{ path: `--${key}`, message: `unknown option${didYouMean(key, known)}` }]);
    }
    merged[key] = value;
  }
  checkSnakeCase(merged, file);
  const camel = toCamelKeys(merged, { verbatim: VERBATIM }) as Record<string, unknown>;
  const parsed = parseConfig(schema, camel, file, { keyCase: 'snake' });
  const base = path.dirname(path.resolve(file));
  // The dataset blocks checked now (H3's DatasetSpec), so a typo fails before any model loads.
  const dataset = withoutNulls(parsed.dataset);
  const evalDataset = parsed.evalDataset === null ? null : withoutNulls(parsed.evalDataset);
  parseDatasetSpec(dataset, { source: file, root: 'dataset' });
  if (evalDataset !== null) parseDatasetSpec(evalDataset, { source: file, root: 'eval_dataset' });
  const evalGenerationDataset =
    parsed.evalGenerationDataset === null ? null : withoutNulls(parsed.evalGenerationDataset);
  if (evalGenerationDataset !== null) {
    parsePromptSetSpec(evalGenerationDataset, { source: file, root: 'eval_generation_dataset' });
  }
  const args = parseConfig(SCHEMAS[method.data.trainer], pick(camel, false), file, { keyCase: 'snake' });
  checkEvalKeys(args, evalDataset !== null, evalGenerationDataset !== null, file);
  return {
    file,
    trainer: parsed.trainer,
    modelNameOrPath: path.resolve(base, parsed.modelNameOrPath),
    refModelNameOrPath: parsed.refModelNameOrPath === null ? null : path.resolve(base, parsed.refModelNameOrPath),
    torchDtype: parsed.torchDtype,
    dataset,
    evalDataset,
    evalGenerationDataset,
    peft: parsed.peft,
    quantization: parsed.quantization,
    processor: parsed.processor,
    flagKeys: Object.keys(pairsOf(overrides, file)),
    args: {
      ...args,
      outputDir: path.resolve(base, args.outputDir),
      // Paths in a recipe are the recipe folder's, wherever the command runs.
      loggingDir: args.loggingDir === null ? null : path.resolve(base, args.loggingDir),
      resumeFromCheckpoint:
        typeof args.resumeFromCheckpoint === 'string'
          ? path.resolve(base, args.resumeFromCheckpoint)
          : args.resumeFromCheckpoint,
    },
  };
}

// The evaluation keys and the datasets they read, checked before any model loads.
function checkEvalKeys(args: Recipe['args'], evalDataset: boolean, generationDataset: boolean, file: string): void {
  const problems: ConfigProblem[] = [];
  if (args.evalMetric !== null && !generationDataset) {
    const message = `eval_metric ${args.evalMetric} scores answers to a prompt set: give the eval_generation_dataset block`;
    problems.push({ path: 'eval_generation_dataset', message });
  }
  if (args.evalMetric === null && generationDataset) {
    problems.push({ path: 'eval_metric', message: 'eval_generation_dataset is given: name the metric that scores it' });
  }
  if ((args as Partial<DpoConfig>).evalPreferenceAccuracy === true && !evalDataset) {
    problems.push({ path: 'eval_dataset', message: 'eval_preference_accuracy reads the pairs of eval_dataset' });
  }
  if (problems.length > 0) throw new ConfigError(file, problems);
}

// A grpo recipe's `verl:` block becomes the TRL keys it means; a key set both ways is an error.
function withVerlNames(raw: Record<string, unknown>, file: string): Record<string, unknown> {
  if (!('verl' in raw)) return raw;
  const { verl, ...rest } = raw;
  if (rest.trainer !== 'grpo') {
    throw new ConfigError(file, [{ path: 'verl', message: 'verl settings map onto trainer: grpo only' }]);
  }
  const mapped = fromVerlNames(verl, file);
  const both = Object.keys(mapped).filter((key) => key in rest);
  if (both.length > 0) {
    throw new ConfigError(
      file,
      both.map((key) => ({ path: key, message: 'set both here and through the verl block; keep one' })),
    );
  }
  return { ...rest, ...mapped };
}

// In a dataset block `image_root: null` (the recipe layout's placeholder) means the key is absent.
const withoutNulls = (block: Record<string, unknown>): Record<string, unknown> =>
  Object.fromEntries(Object.entries(block).filter(([, v]) => v !== null));

// The recipe keys (true) or the trainer-config keys (false) of a camelCase recipe.
function pick(recipe: Record<string, unknown>, own: boolean): Record<string, unknown> {
  return Object.fromEntries(Object.entries(recipe).filter(([k]) => RECIPE_KEYS.has(k) === own));
}

function readYaml(file: string): Record<string, unknown> {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (error) {
    throw new ConfigError(file, [{ path: '(root)', message: `cannot read the recipe: ${(error as Error).message}` }]);
  }
  checkYamlBounds(text, file, '(root)');
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines });
  if (doc.errors.length > 0) {
    const problems: ConfigProblem[] = doc.errors.map((e) => {
      const at = lines.linePos(e.pos[0]);
      return { path: `line ${at.line}:${at.col}`, message: e.message.split('\n')[0]! };
    });
    throw new ConfigError(file, problems);
  }
  if (!isMap(doc.contents)) throw new ConfigError(file, [{ path: '(root)', message: 'expected a mapping of keys' }]);
  try {
    return doc.toJS() as Record<string, unknown>; // refuses alias bombs (yaml's maxAliasCount)
  } catch (error) {
    throw new ConfigError(file, [{ path: '(root)', message: (error as Error).message }]);
  }
}

// A recipe is a few KB of shallow YAML. The yaml parser's time grows faster than linearly with
// flow nesting ('[[[[...' 100,000 deep: 12 s, and 30 s+ closed again), so size and depth are
// bounded before it runs.
const MAX_RECIPE_CHARS = 1 << 20;
const MAX_FLOW_DEPTH = 64;

function checkYamlBounds(text: string, file: string, where: string): void {
  if (text.length > MAX_RECIPE_CHARS) {
    const message = `${text.length} characters is too long for a recipe (limit ${MAX_RECIPE_CHARS})`;
    throw new ConfigError(file, [{ path: where, message }]);
  }
  const depth = flowDepth(text);
  if (depth.max > MAX_FLOW_DEPTH) {
    const message = `[ ] / { } nested ${depth.max} deep (limit ${MAX_FLOW_DEPTH})`;
    throw new ConfigError(file, [{ path: where === '(root)' ? `line ${depth.line}` : where, message }]);
  }
}

/**
 * The deepest nesting of flow brackets, and the line where it first passes the limit. Quotes are not
 * skipped: a bracket in a string counts too, so no quoting can hide a deep nest from the check.
 */
function flowDepth(text: string): { max: number; line: number } {
  let [depth, max, line, at] = [0, 0, 1, 0];
  for (const c of text) {
    if (c === '\n') line++;
    else if (c === '[' || c === '{') {
      depth++;
      max = Math.max(max, depth);
      if (depth > MAX_FLOW_DEPTH && at === 0) at = line;
    } else if ((c === ']' || c === '}') && depth > 0) depth--;
  }
  return { max, line: at };
}

// YAML and flags use the Python spelling; a camelCase key would silently work otherwise.
function checkSnakeCase(recipe: Record<string, unknown>, file: string): void {
  const problems: ConfigProblem[] = [];
  for (const key of Object.keys(recipe)) {
    const snake = camelToSnake(snakeToCamel(key));
    if (snake !== key) problems.push({ path: key, message: `write it in snake_case: '${snake}'` });
  }
  if (problems.length > 0) throw new ConfigError(file, problems);
}

/** ['--a', '1', '--b=x'] → { a: 1, b: 'x' }, each value read as a YAML scalar or flow list. */
export function pairsOf(overrides: readonly string[], file = 'command line'): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (let i = 0; i < overrides.length; i++) {
    const flag = overrides[i]!;
    if (!flag.startsWith('--')) {
      throw new ConfigError(file, [{ path: flag, message: 'expected --key value' }]);
    }
    const eq = flag.indexOf('=');
    const key = (eq < 0 ? flag.slice(2) : flag.slice(2, eq)).replaceAll('-', '_');
    let value: string;
    if (eq >= 0) value = flag.slice(eq + 1);
    else if (i + 1 < overrides.length) value = overrides[++i]!;
    else throw new ConfigError(file, [{ path: `--${key}`, message: 'has no value' }]);
    checkYamlBounds(value, file, `--${key}`);
    try {
      out[key] = parseYaml(value);
    } catch (error) {
      throw new ConfigError(file, [
        {
          path: `--${key}`,
          message: `cannot parse ${JSON.stringify(value)}: ${(error as Error).message.split('\n')[0]}`,
        },
      ]);
    }
  }
  return out;
}
