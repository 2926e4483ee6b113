// Decoding a record's images ahead of the step: InternVL's `data_augment` (a JPEG re-encode at a
// random quality in [75, 100], of the RGB image, before tiling) and a bounded prefetcher that keeps
// the next records read and decoded while the model works on the current one.
import sharp from 'sharp';
import { loadImage, type RgbImage } from '../processing/image/decode.js';
import type { ImageInput } from '../processing/sample.js';
import { DataError, countBadRow, type DataRecord, type RecordDataset } from './records.js';
import type { SeededRandom } from './rng.js';

export const JPEG_QUALITY_RANGE = [75, 100] as const;

/** The image re-encoded as JPEG at a quality drawn from `random` (inclusive range, as randint). */
export async function jpegReencode(
  image: RgbImage,
  random: SeededRandom,
): Promise<{ bytes: Uint8Array; quality: number }> {
  const [low, high] = JPEG_QUALITY_RANGE;
  const quality = low + random.int(high - low + 1);
  const raw = { width: image.width, height: image.height, channels: 3 as const };
  const bytes = await sharp(image.data, { raw }).jpeg({ quality }).toBuffer();
  return { bytes: new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.length), quality };
}

/**
 * The record's images as RGB, augmented when the record asks for it and `random` is given; an
 * unreadable image is a DataError naming the record's file and line/row.
 */
export async function decodeRecordImages(record: DataRecord, random?: SeededRandom): Promise<RgbImage[]> {
  const decoded: RgbImage[] = [];
  for (const [k, image] of record.images.entries()) {
    let rgb = await decodeOne(image, k, record);
    if (record.augment === true && random !== undefined)
      rgb = await decodeOne((await jpegReencode(rgb, random)).bytes, k, record);
    decoded.push(rgb);
  }
  return decoded;
}

async function decodeOne(image: ImageInput, k: number, record: DataRecord): Promise<RgbImage> {
  if (typeof image !== 'string' && !(image instanceof Uint8Array)) return image;
  try {
    return await loadImage(image);
  } catch (error) {
    const name = typeof image === 'string' ? image : `${image.length} bytes`;
    throw new DataError(record.source, `image ${k} (${name}) is unreadable: ${(error as Error).message}`, {
      cause: error,
    });
  }
}

export interface DecodedRecord<T extends DataRecord> {
  index: number;
  record: T;
  pixels: RgbImage[];
}

export interface PrefetchOptions {
  /** Records read and decoded ahead of the consumer (default 4). */
  depth?: number;
  /** Drives the JPEG augmentation; without it records are not augmented. */
  random?: SeededRandom;
}

/**
 * Records of `dataset` in `order` with their images decoded, `depth` of them in flight ahead of the
 * consumer, in order. Rows the dataset skips (skipBadRows) are left out and counted by the dataset;
 * an unreadable image counts as a bad row there too.
 */
export async function* prefetchDecoded<T extends DataRecord>(
  dataset: RecordDataset<T>,
  order: Iterable<number>,
  options: PrefetchOptions = {},
): AsyncGenerator<DecodedRecord<T>> {
  const depth = options.depth ?? 4;
  if (!Number.isInteger(depth) || depth < 1)
    throw new RangeError(`prefetchDecoded: expected a positive integer for depth but received ${depth}`);
  const load = async (index: number): Promise<DecodedRecord<T> | undefined> => {
    const record = await dataset.get(index);
    if (record === undefined) return undefined;
    try {
      return { index, record, pixels: await decodeRecordImages(record, options.random) };
    } catch (error) {
      if (!(error instanceof DataError) || !dataset.skipBadRows) throw error;
      countBadRow(dataset.badRows, error);
      return undefined;
    }
  };
  const pending: Promise<DecodedRecord<T> | undefined>[] = [];
  const iterator = order[Symbol.iterator]();
  const fill = () => {
    while (pending.length < depth) {
      const next = iterator.next();
      if (next.done === true) return;
      const promise = load(next.value);
      promise.catch(() => undefined); // awaited in order below; this only stops an unhandled rejection meanwhile
      pending.push(promise);
    }
  };
  fill();
  while (pending.length > 0) {
    const result = await (pending.shift() as Promise<DecodedRecord<T> | undefined>);
    fill();
    if (result !== undefined) yield result;
  }
}
