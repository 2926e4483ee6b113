// Reward functions by name, so that a recipe can list them (`reward_funcs: [virft_accuracy_iou,
// virft_format]`) and users can add their own. An entry is a factory of options (validated, unknown
// keys named with the nearest valid one) or a ready function, which takes no options.
import { z } from 'zod';
import { toCamelKeys } from '../util/case.js';
import { parseConfig } from '../util/config_error.js';
import { didYouMean } from '../util/nearest.js';
import { geo3k, geo3kComputeScore } from './geo3k.js';
import { GROUNDING_REWARD_TYPES, groundingComputeScore, internvlGrounding, refcocoGrounding } from './grounding.js';
import { CHECK_MODES, mmprComputeScore, mmprCorrectness, PROMPT_VERSIONS } from './mmpr.js';
import { exactMatch, regexFormat } from './text.js';
import type { NamedReward, RewardFunction } from './types.js';
import { dispatchOnDataSource, fromComputeScore, type ComputeScore } from './verl.js';
import {
  lisaGrounding,
  THINK_ANSWER_FORMAT,
  virftClassification,
  virftDetectionConfidence,
  virftDetectionIou,
  virftFormat,
} from './virft.js';
import { THINK_BOXED_FORMAT } from './geo3k.js';

export type RewardOptions = Readonly<Record<string, unknown>>;
export type RewardFactory = (options: RewardOptions) => RewardFunction;

const NAME = /^[A-Za-z][\w.:/-]*$/;

export class RewardRegistry {
  private readonly factories = new Map<string, RewardFactory>();

  /** Adds a ready reward function under `name`; `replace` allows taking over an existing name. */
  register(name: string, fn: RewardFunction, options: { replace?: boolean } = {}): this {
    return this.registerFactory(
      name,
      (given) => {
        const keys = Object.keys(given);
        if (keys.length > 0) throw new TypeError(`reward '${name}' takes no options, received ${keys.join(', ')}`);
        return fn;
      },
      options,
    );
  }

  /** Adds a reward built from options (camelCase keys; snake_case ones from YAML are converted). */
  registerFactory(name: string, factory: RewardFactory, options: { replace?: boolean } = {}): this {
    if (!NAME.test(name)) {
      throw new TypeError(`Expected a reward name of letters, digits and _ . : / - but received '${name}'`);
    }
    if (typeof factory !== 'function') throw new TypeError(`reward '${name}': expected a function`);
    if (this.factories.has(name) && !options.replace) {
      throw new TypeError(`reward '${name}' is already registered (pass { replace: true } to replace it)`);
    }
    this.factories.set(name, factory);
    return this;
  }

  has(name: string): boolean {
    return this.factories.has(name);
  }

  names(): string[] {
    return [...this.factories.keys()].sort();
  }

  /** The named reward with its options; an unknown name lists the nearest registered one. */
  create(name: string, options: RewardOptions = {}): NamedReward {
    const factory = this.factories.get(name);
    if (factory === undefined) {
      throw new TypeError(
        `unknown reward function '${name}'${didYouMean(name, this.factories.keys())} (registered: ${this.names().join(', ')})`,
      );
    }
    return { name, fn: factory(toCamelKeys(options) as RewardOptions) };
  }
}

/** A reward given by name, by name with options, or as a function (named after it). */
export type RewardSpec = string | { name: string; options?: RewardOptions } | NamedReward | RewardFunction;

/** Resolves recipe entries and functions into named rewards (a function is named by its `name`, else reward_<i>). */
export function resolveRewards(specs: readonly RewardSpec[], registry: RewardRegistry = rewardRegistry): NamedReward[] {
  return specs.map((spec, i) => {
    if (typeof spec === 'string') return registry.create(spec);
    if (typeof spec === 'function') return { name: spec.name || `reward_${i}`, fn: spec };
    if ('fn' in spec) return spec;
    return registry.create(spec.name, spec.options);
  });
}

// ---- built-ins ----

const parse = <S extends z.ZodType>(schema: S, options: RewardOptions, name: string): z.output<S> =>
  parseConfig(schema, options, `reward '${name}' options`, { keyCase: 'snake' });

const Empty = z.strictObject({});
// A built-in without options: any option given is an error naming it.
const plain =
  (name: string, make: () => RewardFunction): RewardFactory =>
  (options) => {
    parse(Empty, options, name);
    return make();
  };
const ExactMatchSchema = z.strictObject({
  extract: z.enum(['all', 'answer', 'boxed']).optional(),
  ignoreCase: z.boolean().optional(),
});
const RegexSchema = z.strictObject({
  pattern: z.string().min(1),
  fullMatch: z.boolean().optional(),
  flags: z
    .string()
    .regex(/^[imsu]*$/)
    .optional(),
});
const Geo3kSchema = z.strictObject({
  formatScore: z.number().min(0).max(1).optional(),
  useBoxed: z.boolean().optional(),
});
// The fork leaves all three required; these defaults are its recipe's (shell/grounding_internvl3_5_1b.sh).
const GroundingSchema = z.strictObject({
  rewardType: z.enum(GROUNDING_REWARD_TYPES).default('mix'),
  alpha: z.number().min(0).max(1).default(0.5),
  threshold: z.number().default(0.5),
});
const RefcocoSchema = z.strictObject({
  groundTruthUnits: z.enum(['thousandths', 'pixels']).optional(),
  threshold: z.number().optional(),
});
const MmprSchema = z.strictObject({
  modes: z.array(z.enum(CHECK_MODES)).optional(),
  promptVersion: z.enum(PROMPT_VERSIONS).optional(),
});
const VerlDefaultSchema = z.strictObject({
  fallback: z.enum(['geo3k', 'mmpr_correctness', 'none']).default('geo3k'),
  grounding: GroundingSchema.optional(),
});

// verl's `default_compute_score` for the multimodal sources, with a fallback instead of NotImplementedError.
function verlDefault(options: z.output<typeof VerlDefaultSchema>): RewardFunction {
  const fallbacks: Record<string, ComputeScore | undefined> = {
    geo3k: geo3kComputeScore(),
    mmpr_correctness: mmprComputeScore(),
    none: undefined,
  };
  const fallback = fallbacks[options.fallback];
  return fromComputeScore(
    dispatchOnDataSource({
      scorers: {
        'hiyouga/geometry3k': geo3kComputeScore(),
        grounding: groundingComputeScore(options.grounding ?? GroundingSchema.parse({})),
      },
      ...(fallback === undefined ? {} : { fallback }),
      onUnknownSource: (_source, message) => console.warn(`vlalign rewards: ${message}`),
    }),
  );
}

/** Registers the built-in rewards (docs/rewards.md lists each rule and its source). */
export function registerBuiltinRewards(registry: RewardRegistry): RewardRegistry {
  const entries: Record<string, RewardFactory> = {
    virft_accuracy_iou: plain('virft_accuracy_iou', () => virftDetectionIou()),
    virft_accuracy_confidence: plain('virft_accuracy_confidence', () => virftDetectionConfidence()),
    virft_classification: plain('virft_classification', () => virftClassification()),
    virft_format: plain('virft_format', () => virftFormat),
    lisa_giou: plain('lisa_giou', () => lisaGrounding()),
    think_answer_format: plain('think_answer_format', () => regexFormat(THINK_ANSWER_FORMAT)),
    think_boxed_format: plain('think_boxed_format', () => regexFormat(THINK_BOXED_FORMAT)),
    geo3k: (o) => geo3k(parse(Geo3kSchema, o, 'geo3k')),
    mmpr_correctness: (o) => mmprCorrectness(parse(MmprSchema, o, 'mmpr_correctness')),
    internvl_grounding: (o) => internvlGrounding(parse(GroundingSchema, o, 'internvl_grounding')),
    refcoco_grounding: (o) => refcocoGrounding(parse(RefcocoSchema, o, 'refcoco_grounding')),
    exact_match: (o) => exactMatch(parse(ExactMatchSchema, o, 'exact_match')),
    regex_format: (o) => {
      const { pattern, ...rest } = parse(RegexSchema, o, 'regex_format');
      return regexFormat(pattern, rest);
    },
    verl_default: (o) => verlDefault(parse(VerlDefaultSchema, o, 'verl_default')),
  };
  for (const [name, factory] of Object.entries(entries)) registry.registerFactory(name, factory);
  return registry;
}

/** The shared registry recipes resolve names in: the built-ins plus whatever users register. */
export const rewardRegistry: RewardRegistry = registerBuiltinRewards(new RewardRegistry());

/** Adds a user reward to the shared registry. */
export function registerReward(name: string, fn: RewardFunction, options: { replace?: boolean } = {}): void {
  rewardRegistry.register(name, fn, options);
}
