import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { type ConfigError, knownKeysAt, parseConfig } from '../../lib/util/config_error.js';
import { didYouMean, editDistance, nearestName } from '../../lib/util/nearest.js';

// Levenshtein straight from its recursive definition (no swaps, memoised), an independent bound:
// the optimal-string-alignment distance is never above it and differs only where a swap helps.
function levenshtein(a: string, b: string, memo = new Map<string, number>()): number {
  if (a === '') return b.length;
  if (b === '') return a.length;
  const key = `${a.length},${b.length}`;
  const hit = memo.get(key);
  if (hit !== undefined) return hit;
  const cost = a[0] === b[0] ? 0 : 1;
  const d = Math.min(
    levenshtein(a.slice(1), b, memo) + 1,
    levenshtein(a, b.slice(1), memo) + 1,
    levenshtein(a.slice(1), b.slice(1), memo) + cost,
  );
  memo.set(key, d);
  return d;
}

describe('editDistance', () => {
  it('equals Levenshtein where no swap helps, and counts a swap as one edit', () => {
    for (const [a, b] of [
      ['kitten', 'sitting'],
      ['', 'abc'],
      ['beta', 'beta'],
      ['seed', 'sed'],
      ['warmup_ratio', 'warmup_steps'],
    ] as const) {
      expect(editDistance(a, b)).toBe(levenshtein(a, b));
    }
    expect(levenshtein('lerning', 'lenring')).toBe(2);
    expect(editDistance('lerning', 'lenring')).toBe(1);
    expect(editDistance('ab', 'ba')).toBe(1);
  });
});

describe('nearestName', () => {
  const keys = ['learning_rate', 'lr_scheduler_type', 'warmup_ratio', 'warmup_steps', 'seed', 'beta'];
  it('suggests the closest name within the cut-off', () => {
    expect(nearestName('learning_rat', keys)).toBe('learning_rate');
    expect(nearestName('warmup_ration', keys)).toBe('warmup_ratio');
    expect(nearestName('sede', keys)).toBe('seed');
    expect(nearestName('Learning_Rate', keys)).toBe('learning_rate');
  });
  it('offers nothing for an unrelated name, and a prefix when the name is long enough', () => {
    expect(nearestName('zzz', keys)).toBeUndefined();
    expect(nearestName('gamma', keys)).toBeUndefined();
    expect(nearestName('learning', keys)).toBe('learning_rate');
    expect(didYouMean('learning_rat', new Set(keys))).toBe(" (did you mean 'learning_rate'?)");
    expect(didYouMean('zzz', keys)).toBe('');
  });
});

describe('parseConfig suggestions', () => {
  const Schema = z.strictObject({
    learningRate: z.number().default(1),
    peft: z.strictObject({ loraAlpha: z.number() }).nullable().default(null),
    groups: z.array(z.strictObject({ weightDecay: z.number() })).default([]),
  });
  const Piped = Schema.transform((c) => ({ ...c, extra: true }));

  const problems = (schema: z.ZodType, value: unknown, snake = false): string[] => {
    try {
      parseConfig(schema, value, 'r.yaml', snake ? { keyCase: 'snake' } : {});
    } catch (error) {
      return (error as ConfigError).problems.map((p) => `${p.path}: ${p.message}`);
    }
    throw new Error('expected a throw');
  };

  it('names the nearest key of the object at the path, through pipes, nullables and arrays', () => {
    expect(problems(Piped, { learningRat: 1 })).toEqual(["learningRat: unknown key (did you mean 'learningRate'?)"]);
    expect(problems(Schema, { peft: { loraAlpha: 1, loraAlhpa: 1 } })).toEqual([
      "peft.loraAlhpa: unknown key (did you mean 'loraAlpha'?)",
    ]);
    expect(problems(Schema, { groups: [{ weightDecay: 1 }, { weightDecay: 2, weight_decay: 1 }] })).toEqual([
      "groups[1].weight_decay: unknown key (did you mean 'weightDecay'?)",
    ]);
    expect(problems(Schema, { zzz: 1 })).toEqual(['zzz: unknown key']);
  });

  it('suggests snake_case names for snake_case files', () => {
    expect(problems(Schema, { learning_rat: 1 }, true)).toEqual([
      "learning_rat: unknown key (did you mean 'learning_rate'?)",
    ]);
    expect(knownKeysAt(Piped, ['peft'])).toEqual(['loraAlpha']);
    expect(knownKeysAt(Piped, [])).toEqual(['learningRate', 'peft', 'groups']);
  });
});
