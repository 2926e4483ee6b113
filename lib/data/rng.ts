// A small seeded generator (mulberry32) for the data layer's subset sampling, shuffles and JPEG
// qualities: deterministic per seed, independent of Math.random.
export class SeededRandom {
  private state: number;

  constructor(seed: number) {
    this.state = seed >>> 0;
  }

  /** Uniform in [0, 1). */
  next(): number {
    this.state = (this.state + 0x6d2b79f5) >>> 0;
    let t = this.state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  /** Uniform integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.next() * n);
  }

  /** Fisher-Yates, in place. */
  shuffle<T extends { length: number; [k: number]: unknown }>(items: T): T {
    for (let i = items.length - 1; i > 0; i -= 1) {
      const j = this.int(i + 1);
      [items[i], items[j]] = [items[j], items[i]];
    }
    return items;
  }

  /** `k` distinct integers from [0, n), in sampling order. */
  sample(n: number, k: number): Uint32Array {
    const all = new Uint32Array(n);
    for (let i = 0; i < n; i += 1) all[i] = i;
    for (let i = 0; i < k; i += 1) {
      const j = i + this.int(n - i);
      [all[i], all[j]] = [all[j] as number, all[i] as number];
    }
    return all.slice(0, k);
  }
}
