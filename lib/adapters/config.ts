// LoraConfig: PEFT's LoraConfig fields in camelCase with PEFT's defaults, checked at entry (the
// __post_init__ checks included), and its adapter_config.json form (PEFT's snake_case keys) both ways.
import { z } from 'zod';
import { camelToSnake, snakeToCamel } from '../util/case.js';
import { parseConfig } from '../util/config_error.js';
import { compilePattern } from './patterns.js';

export const TASK_TYPES = [
  'SEQ_CLS',
  'SEQ_2_SEQ_LM',
  'CAUSAL_LM',
  'TOKEN_CLS',
  'QUESTION_ANS',
  'FEATURE_EXTRACTION',
] as const;

/** The PEFT release whose adapter format we write, used as `peft_version` when the config has none. */
export const PEFT_FORMAT_VERSION = '0.18.0';

const pattern = z.string().refine((p) => compilePattern(p) !== null, { message: 'not a valid regular expression' });
/** A str is a regex matched against the whole module name; a list holds exact names or suffixes. */
const moduleNames = z
  .union([pattern, z.array(z.string())])
  .nullable()
  .default(null);

export const LoraConfigSchema = z
  .strictObject({
    r: z.number().int().positive().default(8),
    loraAlpha: z.number().default(8),
    loraDropout: z.number().min(0).lt(1).default(0),
    bias: z.enum(['none', 'all', 'lora_only']).default('none'),
    useRslora: z.boolean().default(false),
    useDora: z.boolean().default(false),
    /** true: A ~ U(±1/√in), B = 0; 'gaussian': A ~ N(0, 1/r), B = 0; false: A and B random (debugging). */
    initLoraWeights: z
      .union([z.boolean(), z.literal('gaussian')], {
        error: "expected true, false or 'gaussian' (PiSSA, OLoRA, EVA, LoftQ... are not supported)",
      })
      .default(true),
    /** A regex (full match), a list (exact name or suffix after '.'), 'all-linear', or null for the model's default. */
    targetModules: moduleNames,
    excludeModules: moduleNames,
    /** Modules trained in full next to the adapter (suffix of the module name, as PEFT). */
    modulesToSave: z.array(z.string()).nullable().default(null),
    rankPattern: z.record(pattern, z.number().int().positive()).default({}),
    alphaPattern: z.record(pattern, z.number()).default({}),
    layersToTransform: z
      .union([z.number().int().min(0), z.array(z.number().int().min(0))])
      .nullable()
      .default(null),
    layersPattern: z
      .union([z.string(), z.array(z.string())])
      .nullable()
      .default(null),
    fanInFanOut: z.boolean().default(false),
    loraBias: z.boolean().default(false),
    taskType: z.enum(TASK_TYPES).nullable().default(null),
    baseModelNameOrPath: z.string().nullable().default(null),
    revision: z.string().nullable().default(null),
    inferenceMode: z.boolean().default(false),
    peftVersion: z.string().nullable().default(null),
  })
  .superRefine((c, ctx) => {
    const issue = (key: string, message: string): void => ctx.addIssue({ code: 'custom', path: [key], message });
    const regexTargets = typeof c.targetModules === 'string';
    if (regexTargets && c.layersToTransform !== null)
      issue('layersToTransform', 'cannot be used when targetModules is a regex string');
    if (regexTargets && c.layersPattern !== null)
      issue('layersPattern', 'cannot be used when targetModules is a regex string');
    if (c.layersPattern !== null && c.layersToTransform === null) issue('layersPattern', 'needs layersToTransform');
    // Both are for layers that store [in, out] (GPT-2's Conv1D) or LoRA biases, which vlalign has no use for.
    if (c.fanInFanOut) issue('fanInFanOut', 'is only for Conv1D layers; Linear weights are [out, in]');
    if (c.loraBias) issue('loraBias', 'is not supported');
  });

export type LoraConfigInput = z.input<typeof LoraConfigSchema>;
export type LoraConfig = z.output<typeof LoraConfigSchema>;

/** Parses a config (camelCase keys); the ConfigError (a TypeError) names every offending key. */
export function loraConfig(input: LoraConfigInput = {}): LoraConfig {
  return parseConfig(LoraConfigSchema, input ?? {}, 'LoraConfig');
}

const FIELDS = new Set(Object.keys(LoraConfigSchema.shape));

// PEFT keys for features vlalign does not have: accepted while they hold their inert defaults.
const INERT_PEFT_KEYS: Record<string, (v: unknown) => boolean> = {
  auto_mapping: () => true,
  runtime_config: () => true,
  megatron_core: () => true,
  qalora_group_size: () => true,
  loftq_config: (v) => isEmpty(v),
};
const isEmpty = (v: unknown): boolean =>
  v === null ||
  v === false ||
  (Array.isArray(v) && v.length === 0) ||
  (typeof v === 'object' && v !== null && Object.keys(v).length === 0);

/**
 * A config from adapter_config.json's content. Keys PEFT has and vlalign does not (eva_config,
 * use_qalora, ...) are ignored while inert (null, false, {} or []); set, they are an error.
 */
export function fromPeftJson(json: Record<string, unknown>, where = 'adapter_config.json'): LoraConfig {
  if (json.peft_type !== undefined && json.peft_type !== 'LORA') {
    throw new TypeError(`${where}: peft_type is '${String(json.peft_type)}'; only LORA adapters are supported`);
  }
  const input: Record<string, unknown> = {};
  const unsupported: string[] = [];
  for (const [key, value] of Object.entries(json)) {
    if (key === 'peft_type') continue;
    const camel = snakeToCamel(key);
    if (FIELDS.has(camel) && camelToSnake(camel) === key) input[camel] = value;
    else if (!(INERT_PEFT_KEYS[key]?.(value) ?? isEmpty(value))) unsupported.push(`${key} = ${JSON.stringify(value)}`);
  }
  if (unsupported.length > 0) throw new TypeError(`${where}: unsupported PEFT settings: ${unsupported.join('; ')}`);
  return parseConfig(LoraConfigSchema, input, where, { keyCase: 'snake' });
}

/** adapter_config.json's content: PEFT's keys, sets (target/exclude module lists) sorted and deduplicated. */
export function toPeftJson(config: LoraConfig): Record<string, unknown> {
  const json: Record<string, unknown> = { peft_type: 'LORA' };
  for (const [key, value] of Object.entries(config)) json[camelToSnake(key)] = value;
  for (const key of ['target_modules', 'exclude_modules']) {
    if (Array.isArray(json[key])) json[key] = [...new Set(json[key] as string[])].sort();
  }
  json.peft_version = config.peftVersion ?? PEFT_FORMAT_VERSION;
  return json;
}

// Keys PEFT types as float: Python writes them with a decimal point (0.0, not 0).
const FLOAT_KEYS = new Set(['lora_dropout']);

/** Python's json.dumps(value, indent=2, sort_keys=True) for JSON-like values (ASCII escapes included). */
export function peftJsonText(value: unknown, indent = '', key = ''): string {
  const inner = `${indent}  `;
  if (Array.isArray(value)) {
    if (value.length === 0) return '[]';
    return `[\n${value.map((v) => inner + peftJsonText(v, inner)).join(',\n')}\n${indent}]`;
  }
  if (typeof value === 'object' && value !== null) {
    const keys = Object.keys(value).sort();
    if (keys.length === 0) return '{}';
    const entries = keys.map(
      (k) => `${inner}${ascii(JSON.stringify(k))}: ${peftJsonText((value as Record<string, unknown>)[k], inner, k)}`,
    );
    return `{\n${entries.join(',\n')}\n${indent}}`;
  }
  if (typeof value === 'number' && FLOAT_KEYS.has(key) && Number.isInteger(value)) return value.toFixed(1);
  return ascii(JSON.stringify(value ?? null));
}

const ascii = (text: string): string =>
  text.replace(/[\u007f-\uffff]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
