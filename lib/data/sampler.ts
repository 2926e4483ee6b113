// The order a trainer reads a dataset in, and the cursor a checkpoint saves. Epoch e is a seeded
// permutation with seed `seed + e` (Hugging Face's RandomSampler / torch's DistributedSampler seed
// their generator the same way), so any process computes the same order from (seed, epoch). With
// several ranks each takes every worldSize-th sample of that permutation, padded by repeating its
// start so every rank gets ceil(N / worldSize) samples (DistributedSampler with drop_last=False).
import { SeededRandom } from './rng.js';

/** Where a run is in its data: what a checkpoint saves and a resumed run restores. */
export interface DataPosition {
  epoch: number;
  /** Samples of this epoch (on this rank) already consumed. */
  index: number;
  /** The seed of this epoch's shuffle. */
  seed: number;
}

export interface SamplerOptions {
  /** Base seed; epoch e shuffles with `seed + e`. */
  seed: number;
  /** Default true; false reads the dataset in order (the seed is still recorded). */
  shuffle?: boolean;
  /** This process's rank among `worldSize` (default 0 of 1). */
  rank?: number;
  worldSize?: number;
}

/** One sample drawn: its dataset index and the cursor after it. */
export interface SampledIndex {
  index: number;
  position: DataPosition;
}

export class EpochSampler {
  /** Samples per epoch on this rank: ceil(datasetLength / worldSize). */
  readonly length: number;
  readonly seed: number;
  readonly shuffle: boolean;
  readonly rank: number;
  readonly worldSize: number;
  private cursor: DataPosition;
  private permutation: { seed: number; order: Uint32Array } | null = null;

  constructor(
    readonly datasetLength: number,
    options: SamplerOptions,
  ) {
    checkInteger('datasetLength', datasetLength, 0);
    checkInteger('seed', options.seed);
    this.seed = options.seed;
    this.shuffle = options.shuffle ?? true;
    this.worldSize = options.worldSize ?? 1;
    checkInteger('worldSize', this.worldSize, 1);
    this.rank = options.rank ?? 0;
    checkInteger('rank', this.rank, 0);
    if (this.rank >= this.worldSize)
      throw new RangeError(`EpochSampler: expected rank < worldSize (${this.worldSize}) but received ${this.rank}`);
    this.length = Math.ceil(datasetLength / this.worldSize);
    this.cursor = { epoch: 0, index: 0, seed: this.epochSeed(0) };
  }

  /** The shuffle seed of epoch `epoch`. */
  epochSeed(epoch: number): number {
    return this.seed + epoch;
  }

  /** A copy of the cursor. */
  position(): DataPosition {
    return { ...this.cursor };
  }

  /** Begins epoch `epoch` at its first sample. */
  startEpoch(epoch: number): void {
    checkInteger('epoch', epoch, 0);
    this.cursor = { epoch, index: 0, seed: this.epochSeed(epoch) };
  }

  /**
   * Continues from a saved cursor. Its seed orders the rest of its epoch, so the saved epoch
   * resumes exactly even if the base seed changed since; later epochs use `seed + epoch` again.
   */
  restore(position: DataPosition): void {
    checkInteger('position.epoch', position.epoch, 0);
    checkInteger('position.seed', position.seed);
    checkInteger('position.index', position.index, 0);
    if (position.index > this.length) {
      throw new RangeError(
        `EpochSampler: position.index ${position.index} is past the epoch's ${this.length} samples ` +
          `(dataset of ${this.datasetLength} over ${this.worldSize} rank(s)); was the position saved for another dataset?`,
      );
    }
    this.cursor = { epoch: position.epoch, index: position.index, seed: position.seed };
  }

  /** The next sample of the epoch, or undefined at its end (`startEpoch` begins the next). */
  next(): SampledIndex | undefined {
    if (this.cursor.index >= this.length) return undefined;
    const index = this.at(this.cursor.index);
    this.cursor = { ...this.cursor, index: this.cursor.index + 1 };
    return { index, position: this.position() };
  }

  /** This rank's k-th sample of the current epoch: element rank + k·worldSize of the padded permutation. */
  at(k: number): number {
    checkInteger('k', k, 0);
    if (k >= this.length) throw new RangeError(`EpochSampler: sample ${k} out of range [0, ${this.length})`);
    // torch pads the permutation with its own start (repeated when the padding exceeds it), so
    // padded element j is permutation element j mod N.
    const j = (this.rank + k * this.worldSize) % this.datasetLength;
    return this.shuffle ? (this.order()[j] as number) : j;
  }

  private order(): Uint32Array {
    const seed = this.cursor.seed;
    if (this.permutation?.seed !== seed) {
      const order = new Uint32Array(this.datasetLength);
      for (let i = 0; i < order.length; i += 1) order[i] = i;
      this.permutation = { seed, order: new SeededRandom(seed).shuffle(order) };
    }
    return this.permutation.order;
  }
}

function checkInteger(name: string, value: number, min?: number): void {
  if (!Number.isSafeInteger(value) || (min !== undefined && value < min)) {
    const expected = min === undefined ? 'an integer' : `an integer >= ${min}`;
    throw new RangeError(`EpochSampler: expected ${expected} for ${name} but received ${value}`);
  }
}
