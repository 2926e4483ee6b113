// EpochSampler: each epoch a permutation, deterministic per (seed, epoch), different across epochs;
// the rank split checked against torch DistributedSampler's algorithm written out literally (pad the
// permutation with its start, take rank::worldSize); restore mid-epoch and at an epoch's end.
import { describe, expect, it } from 'vitest';
import { EpochSampler } from '../../lib/data/sampler.js';

const drain = (s: EpochSampler): number[] => {
  const out: number[] = [];
  for (let next = s.next(); next !== undefined; next = s.next()) out.push(next.index);
  return out;
};

const epochOrder = (n: number, seed: number, epoch: number, extra = {}): number[] => {
  const s = new EpochSampler(n, { seed, ...extra });
  s.startEpoch(epoch);
  return drain(s);
};

describe('EpochSampler', () => {
  it('is a deterministic permutation per epoch, with seed + epoch recorded', () => {
    const a = epochOrder(50, 7, 0);
    expect([...a].sort((x, y) => x - y)).toEqual([...Array(50).keys()]);
    expect(epochOrder(50, 7, 0)).toEqual(a);
    expect(epochOrder(50, 7, 1)).not.toEqual(a);
    expect(epochOrder(50, 8, 0)).not.toEqual(a);
    expect(a).not.toEqual([...Array(50).keys()]);
    const s = new EpochSampler(50, { seed: 7 });
    s.startEpoch(3);
    expect(s.position()).toEqual({ epoch: 3, index: 0, seed: 10 });
    expect(s.next()?.position).toEqual({ epoch: 3, index: 1, seed: 10 });
    expect(epochOrder(5, 7, 2, { shuffle: false })).toEqual([0, 1, 2, 3, 4]);
  });

  it('splits ranks as torch DistributedSampler (drop_last=False)', () => {
    for (const [n, world] of [
      [10, 3],
      [2, 5],
      [12, 4],
      [7, 1],
    ] as const) {
      const indices = epochOrder(n, 3, 1); // the one-rank permutation of epoch 1
      const numSamples = Math.ceil(n / world);
      const total = numSamples * world;
      const padded = [...indices];
      const padding = total - n;
      if (padding <= n) padded.push(...indices.slice(0, padding));
      else
        padded.push(
          ...Array(Math.ceil(padding / n))
            .fill(indices)
            .flat()
            .slice(0, padding),
        );
      const all: number[] = [];
      for (let rank = 0; rank < world; rank += 1) {
        const expected = padded.filter((_, j) => j % world === rank);
        const got = epochOrder(n, 3, 1, { rank, worldSize: world });
        expect(got).toEqual(expected);
        expect(got).toHaveLength(numSamples);
        all.push(...got);
      }
      expect(new Set(all).size).toBe(n);
    }
    expect(() => new EpochSampler(4, { seed: 0, rank: 2, worldSize: 2 })).toThrow(/rank < worldSize \(2\)/);
  });

  it('restores mid-epoch and at an epoch end', () => {
    const full = epochOrder(20, 1, 2);
    const s = new EpochSampler(20, { seed: 1 });
    s.startEpoch(2);
    for (let k = 0; k < 7; k += 1) s.next();
    const saved = s.position();
    const resumed = new EpochSampler(20, { seed: 1 });
    resumed.restore(saved);
    expect(drain(resumed)).toEqual(full.slice(7));
    // At the end: nothing left; the next epoch is the uninterrupted run's.
    const end = new EpochSampler(20, { seed: 1 });
    end.restore(resumed.position());
    expect(end.position()).toEqual({ epoch: 2, index: 20, seed: 3 });
    expect(end.next()).toBeUndefined();
    end.startEpoch(3);
    expect(drain(end)).toEqual(epochOrder(20, 1, 3));
    // The saved seed orders the rest of its epoch even under another base seed.
    const other = new EpochSampler(20, { seed: 99 });
    other.restore(saved);
    expect(drain(other)).toEqual(full.slice(7));
    expect(() => other.restore({ epoch: 0, index: 21, seed: 1 })).toThrow(/past the epoch's 20 samples/);
  });
});
