// The shards the trainer's loader gives each rank (lib/data/sampler.ts with rank / worldSize) against
// torch's DistributedSampler(drop_last=False) written out here: the epoch's permutation padded by
// wrapping to a multiple of the world size, rank r taking every worldSize-th element from r.
import { describe, expect, it } from 'vitest';
import { EpochSampler } from '../../lib/data/sampler.js';

describe('the sampler shards (torch DistributedSampler, drop_last false)', () => {
  it.each([
    [8, 2],
    [7, 2],
    [10, 3],
    [2, 3],
  ])('%i samples on %i ranks: equal shards covering the epoch, padded by wrapping around', (n, world) => {
    const shards = Array.from({ length: world }, (_, rank) => {
      const sampler = new EpochSampler(n, { seed: 5, rank, worldSize: world });
      sampler.startEpoch(3);
      const out: number[] = [];
      for (let s = sampler.next(); s !== undefined; s = sampler.next()) out.push(s.index);
      return out;
    });
    const whole = new EpochSampler(n, { seed: 5 });
    whole.startEpoch(3);
    const order: number[] = [];
    for (let s = whole.next(); s !== undefined; s = whole.next()) order.push(s.index);
    const per = Math.ceil(n / world);
    // torch: indices += indices[:padding]; rank r takes indices[r::world].
    const padded = Array.from({ length: per * world }, (_, j) => order[j % n]!);
    shards.forEach((shard, r) => {
      expect(shard).toEqual(padded.filter((_, j) => j % world === r));
    });
    expect(new Set(shards.flat()).size).toBe(n);
  });
});
