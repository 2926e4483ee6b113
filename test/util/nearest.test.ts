import { describe, expect, it } from 'vitest';
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
