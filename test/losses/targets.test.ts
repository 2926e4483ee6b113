// targetsFromLabels against the shift written on plain arrays: targets[r][t] = labels[r][t + 1].
import { describe, expect, it } from 'vitest';
import { losses, torch } from '../../lib/index.js';
import { IGNORE, long, rng } from './helpers.js';

const shifted = (rows: number[][], ignore: number): number[][] => rows.map((row) => [...row.slice(1), ignore]);

describe('targetsFromLabels', () => {
  it('each position gets the next label; the last column is ignoreIndex', () => {
    const next = rng(7);
    const rows = [...Array(3)].map(() => [...Array(6)].map(() => (next() < 0.4 ? IGNORE : Math.floor(next() * 512))));
    const got = losses.targetsFromLabels(long(rows.flat(), [3, 6]));
    expect(got.dtype).toBe('int64');
    expect(got.toArray()).toEqual(shifted(rows, IGNORE));
  });

  it('takes another ignoreIndex, one column, and no column', () => {
    expect(losses.targetsFromLabels(long([5, 6, 7, 8], [2, 2]), 0).toArray()).toEqual([
      [6, 0],
      [8, 0],
    ]);
    expect(losses.targetsFromLabels(long([5, 6], [2, 1])).toArray()).toEqual([[IGNORE], [IGNORE]]);
    expect(losses.targetsFromLabels(long([], [2, 0])).shape).toEqual([2, 0]);
  });

  it('rejects what is not int64 [rows, tokens]', () => {
    expect(() => losses.targetsFromLabels(torch.zeros([2, 3]))).toThrow(/int64 \[rows, tokens\].*float32 \[2,3\]/);
    expect(() => losses.targetsFromLabels(long([1, 2, 3], [3]))).toThrow(TypeError);
    expect(() => losses.targetsFromLabels(long([1, 2], [1, 2]), 0.5)).toThrow(/ignoreIndex/);
  });
});
