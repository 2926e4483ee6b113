// get_rope_index against the worked examples of the spec (vlm_arch.md §1.6, golden README trap 3).
import { describe, expect, it } from 'vitest';
import { ropeIndex } from '../../lib/models/index.js';

const tokens = { imageTokenId: 9, videoTokenId: 8, visionStartTokenId: 7, spatialMergeSize: 2 };
const text = (n: number, id = 1): number[] => Array(n).fill(id);

describe('ropeIndex', () => {
  it('a 32x32-patch image after k tokens: 256 tokens at (k, k+r, k+c), then <|vision_end|> at k+16', () => {
    const k = 5; // prefix up to and including <|vision_start|>
    const ids = [...text(k - 1), 7, ...text(256, 9), 2, ...text(3)];
    const { positions, deltas } = ropeIndex([ids], null, [[1, 32, 32]], tokens);
    const [t, h, w] = positions.map((axis) => [...axis[0]!]);
    for (let i = 0; i < k; i++) expect([t![i], h![i], w![i]]).toEqual([i, i, i]);
    for (let j = 0; j < 256; j++) {
      const [r, c] = [Math.floor(j / 16), j % 16];
      expect([t![k + j], h![k + j], w![k + j]]).toEqual([k, k + r, k + c]);
    }
    expect([t![k + 256], h![k + 256], w![k + 256]]).toEqual([k + 16, k + 16, k + 16]);
    expect(deltas).toEqual([k + 16 + 4 - ids.length]);
  });

  it('golden one_image: 24 image tokens at 10..33 → t = 10, h = 10..21, w = 10..11; text resumes at 22; delta −12', () => {
    const ids = [...text(9), 7, ...text(24, 9), 2, ...text(9)];
    const { positions, deltas } = ropeIndex([ids], null, [[1, 24, 4]], tokens);
    const [t, h, w] = positions.map((axis) => [...axis[0]!]);
    expect(new Set(t!.slice(10, 34))).toEqual(new Set([10]));
    expect(Math.min(...h!.slice(10, 34))).toBe(10);
    expect(Math.max(...h!.slice(10, 34))).toBe(21);
    expect(new Set(w!.slice(10, 34))).toEqual(new Set([10, 11]));
    expect(t![34]).toBe(22);
    expect(deltas).toEqual([-12]);
  });

  it('padding gets position 1 and does not count; image grids are consumed across the batch', () => {
    const row = [7, ...text(4, 9), 2];
    const padded = [0, 0, ...row];
    const { positions, deltas } = ropeIndex(
      [padded, row],
      [
        [0, 0, 1, 1, 1, 1, 1, 1],
        [1, 1, 1, 1, 1, 1],
      ],
      [
        [1, 4, 4],
        [1, 4, 4],
      ],
      tokens,
    );
    expect([...positions[0]![0]!].slice(0, 2)).toEqual([1, 1]);
    expect([...positions[1]![0]!].slice(2)).toEqual([...positions[1]![1]!]);
    expect(deltas).toEqual([3 + 1 - 8, 3 + 1 - 6]);
    expect(() => ropeIndex([[7, 9, 9, 9]], null, [[1, 4, 4]], tokens)).toThrow(/needs 4 image tokens/);
  });
});
