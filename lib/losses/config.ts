// Loss configurations: zod schemas with TRL's names and defaults (DPOConfig, KTOConfig,
// GRPOConfig); checks that span fields happen in one place, with both values in the message.
import { z } from 'zod';

import { DPO_LOSSES } from './dpo.js';

const DPO_TYPES = [...Object.keys(DPO_LOSSES), 'sft'] as const;
// Names TRL <= 0.28 used for a type.
const LEGACY_NAMES: Record<string, string> = { aot_pair: 'aot_unpaired' };

const engine = {
  /** 'fused' (chunked kernels, the default) or 'eager' (materialised logits, the reference). */
  implementation: z.enum(['fused', 'eager']).default('fused'),
  /**
   * Tokens per chunk of the fused kernels; chunks always hold whole pairs or sequences, so a chunk
   * can be larger. Peak extra memory is about chunk x vocab x 4 bytes plus the weight gradient.
   */
  chunkSize: z.number().int().positive().default(256),
  ignoreIndex: z.number().int().default(-100),
  /** Skip negligible vocabulary tiles in the backward GEMMs (see HeadOptions.gradFilter). */
  gradFilter: z.union([z.literal('auto'), z.number().min(0)]).default('auto'),
};

/**
 * The preference loss fields before normalisation: trainer configs spread `.shape` into their own
 * object and pipe through normalizePreferenceLoss, so no field is declared twice.
 */
export const PreferenceLossFields = z.object({
  /** One type or several (a list, or InternVL's comma-separated string), mixed by lossWeights. */
  lossType: z.union([z.string(), z.array(z.string())]).default(['sigmoid']),
  lossWeights: z.array(z.number()).nullable().default(null),
  beta: z.number().positive().default(0.1),
  /**
   * 'current' (TRL >= 0.29, the default) or 'legacy' (TRL <= 0.28, which InternVL's MPO trainers
   * subclass): legacy smooths sigmoid by labelSmoothing (cDPO; current ignores it there), gives
   * exo_pair 1e-3 for a labelSmoothing of 0, shifts bco_pair by the running mean reward, and
   * reads fAlphaDivergenceCoef as its own alpha (1 - the current one; default 1.0).
   */
  trlVersion: z.enum(['current', 'legacy']).default('current'),
  labelSmoothing: z.number().min(0).max(1).default(0),
  fDivergenceType: z.enum(['reverse_kl', 'forward_kl', 'js_divergence', 'alpha_divergence']).default('reverse_kl'),
  /** Default: 0.5 (current), 1.0 (legacy). */
  fAlphaDivergenceCoef: z.number().nullable().default(null),
  discopopTau: z.number().positive().default(0.05),
  /** bco_pair's running-mean reward shift (TRL <= 0.28, InternVL MPO); default: on under 'legacy'. */
  bcoRunningMean: z.boolean().nullable().default(null),
  /** InternVL / RPO: adds rpoAlpha x NLL of the chosen completions. */
  rpoAlpha: z.number().min(0).nullable().default(null),
  ...engine,
});

type PreferenceLossRaw = z.output<typeof PreferenceLossFields>;

/** lossType string → list (legacy names renamed, each checked), weights defaulted and counted. */
export function normalizePreferenceLoss<C extends PreferenceLossRaw>(c: C, ctx: z.RefinementCtx) {
  const names = (typeof c.lossType === 'string' ? c.lossType.split(',') : c.lossType).map((t) => t.trim());
  const types = names.map((t) => LEGACY_NAMES[t] ?? t);
  for (const t of types) {
    if (!(DPO_TYPES as readonly string[]).includes(t)) {
      const message = `unknown loss type '${t}'; expected one of ${DPO_TYPES.join(', ')}`;
      ctx.addIssue({ code: 'custom', path: ['lossType'], message });
    }
  }
  const weights = c.lossWeights ?? types.map(() => 1);
  if (weights.length !== types.length) {
    ctx.addIssue({
      code: 'custom',
      path: ['lossWeights'],
      message: `lossWeights has ${weights.length} entries but lossType has ${types.length}`,
    });
  }
  const legacy = c.trlVersion === 'legacy';
  return {
    ...c,
    lossType: types,
    lossWeights: weights,
    fAlphaDivergenceCoef: c.fAlphaDivergenceCoef ?? (legacy ? 1 : 0.5),
    bcoRunningMean: c.bcoRunningMean ?? legacy,
  };
}

export const PreferenceLossConfigSchema = PreferenceLossFields.transform(normalizePreferenceLoss);

export type PreferenceLossConfigInput = z.input<typeof PreferenceLossConfigSchema>;
export type PreferenceLossConfig = z.output<typeof PreferenceLossConfigSchema>;

/**
 * InternVL's MPO recipe (InternVL3.5 on TRL 0.21, as TRL's docs give it): sigmoid 0.8 + bco_pair 0.2
 * + sft 1.0 in TRL's legacy form, so bco_pair is shifted by the running mean reward (whose state
 * goes in checkpoints). `{ ...MPO, trlVersion: 'current' }` is the same mix without the shift.
 */
export const MPO: PreferenceLossConfigInput = {
  lossType: ['sigmoid', 'bco_pair', 'sft'],
  lossWeights: [0.8, 0.2, 1.0],
  trlVersion: 'legacy',
};

export const KtoLossConfigSchema = z.object({
  lossType: z.enum(['kto', 'apo_zero_unpaired', 'bco']).default('kto'),
  beta: z.number().positive().default(0.1),
  desirableWeight: z.number().min(0).default(1),
  undesirableWeight: z.number().min(0).default(1),
  ...engine,
});

export type KtoLossConfigInput = z.input<typeof KtoLossConfigSchema>;
export type KtoLossConfig = z.output<typeof KtoLossConfigSchema>;

/** SFTTrainer's loss: the token-mean NLL through the same LM-head engine. */
export const SftLossConfigSchema = z.object({ ...engine });

export type SftLossConfigInput = z.input<typeof SftLossConfigSchema>;
export type SftLossConfig = z.output<typeof SftLossConfigSchema>;

export const GrpoLossConfigSchema = z
  .object({
    lossType: z.enum(['grpo', 'bnpo', 'dr_grpo', 'dapo']).default('dapo'),
    beta: z.number().min(0).default(0),
    epsilon: z.number().positive().default(0.2),
    /** Upper clip; defaults to epsilon (DAPO uses 0.28). */
    epsilonHigh: z.number().positive().nullable().default(null),
    /** Two-sided GRPO: caps the unclipped ratio (INTELLECT-2); null disables. */
    delta: z.number().positive().nullable().default(null),
    importanceSamplingLevel: z.enum(['token', 'sequence']).default('token'),
    temperature: z.number().positive().default(1),
    /** dr_grpo's constant normaliser. */
    maxCompletionLength: z.number().int().positive().default(512),
    ...engine,
  })
  .transform((c, ctx) => {
    if (c.delta !== null && c.delta <= 1 + (c.epsilonHigh ?? c.epsilon)) {
      const message = `delta (${c.delta}) must exceed 1 + epsilonHigh (${1 + (c.epsilonHigh ?? c.epsilon)})`;
      ctx.addIssue({ code: 'custom', path: ['delta'], message });
    }
    return { ...c, epsilonHigh: c.epsilonHigh ?? c.epsilon };
  });

export type GrpoLossConfigInput = z.input<typeof GrpoLossConfigSchema>;
export type GrpoLossConfig = z.output<typeof GrpoLossConfigSchema>;

/** Parses a config, turning zod's issues into one readable TypeError naming the fields. */
export function parseConfig<S extends z.ZodType>(schema: S, input: unknown, what: string): z.output<S> {
  const result = schema.safeParse(input ?? {});
  if (result.success) return result.data;
  const issues = result.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`).join('; ');
  throw new TypeError(`invalid ${what}: ${issues}`);
}
