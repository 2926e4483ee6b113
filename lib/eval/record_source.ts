// What the evaluation functions read records from: an opened dataset (lazily, row by row; rows a
// skipBadRows dataset drops are left out), a list, or any (async) iterable, in order.
import { describeSource, type DataRecord, type RecordDataset } from '../data/records.js';

export type RecordSource<T extends DataRecord> = RecordDataset<T> | Iterable<T> | AsyncIterable<T>;

const isDataset = <T extends DataRecord>(source: RecordSource<T>): source is RecordDataset<T> =>
  typeof (source as RecordDataset<T>).get === 'function' && typeof (source as RecordDataset<T>).length === 'number';

/** The records of `source` in order, one at a time. */
export async function* streamRecords<T extends DataRecord>(source: RecordSource<T>): AsyncGenerator<T> {
  if (!isDataset(source)) {
    yield* source;
    return;
  }
  for (let i = 0; i < source.length; i++) {
    const record = await source.get(i);
    if (record !== undefined) yield record;
  }
}

/** Groups of up to `size` items, in order (the last may be shorter). */
export async function* inBatches<T>(items: AsyncIterable<T>, size: number): AsyncGenerator<T[]> {
  if (!Number.isInteger(size) || size < 1) {
    throw new RangeError(`Expected a positive integer for batchSize but received ${size}`);
  }
  let batch: T[] = [];
  for await (const item of items) {
    batch.push(item);
    if (batch.length === size) {
      yield batch;
      batch = [];
    }
  }
  if (batch.length > 0) yield batch;
}

/** The kind check every evaluation does on its records, naming the record's file and line. */
export function requireKind<K extends DataRecord['kind']>(
  record: DataRecord,
  kind: K,
  what: string,
): asserts record is Extract<DataRecord, { kind: K }> {
  if (record.kind !== kind) {
    throw new TypeError(`${describeSource(record.source)}: ${what} takes ${kind} records, this one is ${record.kind}`);
  }
}

/**
 * Runs the processor pass `fn` over `records`; an error it reports for `samples[i]` is rethrown
 * with record i's file and line in front, so a bad record in a batch is named where it lives.
 */
export async function namingRecords<R>(records: readonly DataRecord[], fn: () => Promise<R>): Promise<R> {
  try {
    return await fn();
  } catch (error) {
    const index = /samples\[(\d+)\]/.exec((error as Error)?.message ?? '')?.[1];
    const record = index === undefined ? undefined : records[Number(index)];
    if (record === undefined) throw error;
    throw new TypeError(`${describeSource(record.source)}: ${(error as Error).message}`, { cause: error });
  }
}
