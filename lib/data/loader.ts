// The loader a trainer iterates: batches of records with their images decoded, read in the
// sampler's order with a bounded number of records in flight ahead of the consumer, so the model
// never waits on decoding and memory stays flat. Each batch carries the cursor after it: a run
// resumed from that cursor yields exactly the batches the uninterrupted run yielded next.
import type { RgbImage } from '../processing/image/decode.js';
import { decodeRecordImages, type DecodedRecord } from './images.js';
import { DataError, countBadRow, type DataRecord, type RecordDataset } from './records.js';
import { SeededRandom } from './rng.js';
import { EpochSampler, type DataPosition, type SampledIndex } from './sampler.js';

export interface LoaderOptions {
  batchSize: number;
  /** The sampler's base seed (epoch e shuffles with seed + e). */
  seed: number;
  /** Default true. */
  shuffle?: boolean;
  /** Drop the epoch's last, short batch (default false). */
  dropLast?: boolean;
  /** Records read and decoded ahead of the consumer (default 2 * batchSize). */
  prefetch?: number;
  /** Seeds the JPEG augmentation of records that ask for it (default `seed`). */
  augmentSeed?: number;
  rank?: number;
  worldSize?: number;
}

export interface LoadedBatch<T extends DataRecord> {
  records: DecodedRecord<T>[];
  /** The cursor after this batch: saving it and resuming continues with the next batch. */
  position: DataPosition;
}

interface Loaded<T extends DataRecord> {
  item: DecodedRecord<T>;
  position: DataPosition;
}

export class DataLoader<T extends DataRecord> {
  readonly batchSize: number;
  readonly dropLast: boolean;
  readonly prefetch: number;
  readonly augmentSeed: number;

  constructor(
    readonly dataset: RecordDataset<T>,
    readonly options: LoaderOptions,
  ) {
    this.batchSize = positiveInteger('batchSize', options.batchSize);
    this.prefetch = positiveInteger('prefetch', options.prefetch ?? 2 * this.batchSize);
    this.dropLast = options.dropLast ?? false;
    this.augmentSeed = options.augmentSeed ?? options.seed;
    this.sampler(0); // checks seed, rank and worldSize now rather than at the first epoch
  }

  /** Samples one epoch gives this rank (before bad rows are skipped). */
  get samplesPerEpoch(): number {
    return this.sampler(0).length;
  }

  /** Batches per epoch when no row is bad; skipped rows can only make an epoch shorter. */
  get batchesPerEpoch(): number {
    const samples = this.samplesPerEpoch;
    return this.dropLast ? Math.floor(samples / this.batchSize) : Math.ceil(samples / this.batchSize);
  }

  /**
   * The batches of epoch `epoch`, from its start or from a saved `from` cursor. Bad rows (with the
   * dataset's skipBadRows) are counted in `dataset.badRows` and the batch is filled from the
   * samples that follow; without skipBadRows their DataError propagates.
   */
  async *epoch(epoch: number, from?: DataPosition): AsyncGenerator<LoadedBatch<T>> {
    const sampler = this.sampler(epoch);
    if (from !== undefined) {
      if (from.epoch !== epoch)
        throw new RangeError(
          `DataLoader.epoch: expected a position in epoch ${epoch} but received epoch ${from.epoch}`,
        );
      sampler.restore(from);
    }
    let batch: DecodedRecord<T>[] = [];
    for await (const { item, position } of this.decodedAhead(sampler)) {
      batch.push(item);
      if (batch.length === this.batchSize) {
        yield { records: batch, position };
        batch = [];
      }
    }
    if (batch.length > 0 && !this.dropLast) yield { records: batch, position: sampler.position() };
  }

  private sampler(epoch: number): EpochSampler {
    const { seed, shuffle, rank, worldSize } = this.options;
    const sampler = new EpochSampler(this.dataset.length, { seed, shuffle, rank, worldSize });
    sampler.startEpoch(epoch);
    return sampler;
  }

  /** The sampler's records, decoded, in order, with at most `prefetch` of them in flight. */
  private async *decodedAhead(sampler: EpochSampler): AsyncGenerator<Loaded<T>> {
    const pending: Promise<Loaded<T> | undefined>[] = [];
    const fill = () => {
      while (pending.length < this.prefetch) {
        const next = sampler.next();
        if (next === undefined) return;
        const promise = this.load(next);
        promise.catch(() => undefined); // awaited in order below; this only stops an unhandled rejection meanwhile
        pending.push(promise);
      }
    };
    fill();
    while (pending.length > 0) {
      const loaded = await (pending.shift() as Promise<Loaded<T> | undefined>);
      fill();
      if (loaded !== undefined) yield loaded;
    }
  }

  private async load(sampled: SampledIndex): Promise<Loaded<T> | undefined> {
    const record = await this.dataset.get(sampled.index);
    if (record === undefined) return undefined; // skipped and counted by the dataset
    let pixels: RgbImage[];
    try {
      pixels = await decodeRecordImages(record, this.augmentation(record, sampled));
    } catch (error) {
      if (!(error instanceof DataError) || !this.dataset.skipBadRows) throw error;
      countBadRow(this.dataset.badRows, error);
      return undefined;
    }
    return { item: { index: sampled.index, record, pixels }, position: sampled.position };
  }

  // One generator per (augmentSeed, epoch, sample), not one stream: the qualities a record draws do
  // not depend on which records were read before it, so a resumed run draws the same ones.
  private augmentation(record: T, sampled: SampledIndex): SeededRandom | undefined {
    if (record.augment !== true) return undefined;
    return new SeededRandom(mixSeeds(this.augmentSeed, sampled.position.epoch, sampled.index));
  }
}

/** A 32-bit seed from several integers (MurmurHash3's finaliser over each 32-bit word in turn). */
export function mixSeeds(...parts: number[]): number {
  let h = 0x9e3779b9;
  for (const part of parts) {
    for (const word of [part >>> 0, Math.floor(part / 2 ** 32) >>> 0]) {
      h = Math.imul(h ^ word, 0x85ebca6b);
      h ^= h >>> 13;
      h = Math.imul(h, 0xc2b2ae35);
      h ^= h >>> 16;
    }
  }
  return h >>> 0;
}

function positiveInteger(name: string, value: number): number {
  if (!Number.isSafeInteger(value) || value < 1)
    throw new RangeError(`DataLoader: expected a positive integer for ${name} but received ${value}`);
  return value;
}
