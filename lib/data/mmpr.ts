// MMPR / InternVL MPO data: a meta.json naming jsonl annotation files, each row
// `{image?, question, chosen, rejected}`, with InternVL's rules (internvl_chat_mpo.py):
// repeat_time < 1 samples int(n * r) rows, > 1 repeats the rows int(r) times, then each dataset is
// shuffled with its index as seed; `<image>\n` is prepended to a one-image question without one;
// several images share the tile budget as max(1, max_dynamic_patch // n). The subsets and orders
// are deterministic per seed but not Python's `random` / numpy streams (the spec fixes the counts
// and the seeding, not the exact subsets).
import { dirname, resolve } from 'node:path';
import { z } from 'zod';
import { parseConfig } from '../util/config_error.js';
import { readJsonFile } from '../util/json_file.js';
import { IMAGE_PLACEHOLDER } from '../processing/internvl_template.js';
import { JsonlIndex } from './jsonl_index.js';
import {
  BadRowPolicy,
  DataError,
  assistantMessage,
  resolveInsideRoot,
  userMessage,
  type PreferenceRecord,
  type RecordDataset,
  type RecordSource,
} from './records.js';
import { SeededRandom } from './rng.js';

const MetaEntry = z
  .object({
    root: z.string(),
    annotation: z.string().endsWith('.jsonl', 'InternVL reads annotation files as jsonl'),
    data_augment: z.boolean().default(false),
    repeat_time: z.number().positive().default(1),
    max_dynamic_patch: z.number().int().positive().optional(),
    length: z.number().optional(),
  })
  .loose();

const Meta = z.record(z.string(), MetaEntry);

export interface MmprOptions {
  /** InternVL's CLI default is 12; a dataset's own `max_dynamic_patch` wins. */
  maxDynamicPatch?: number;
  /** Added to each dataset's index to seed its sampling and shuffle (InternVL: the index alone). */
  seed?: number;
  skipBadRows?: boolean;
}

interface MmprPart {
  name: string;
  root: string;
  augment: boolean;
  maxDynamicPatch: number;
  index: JsonlIndex;
  /** Row order after repeat_time and the shuffle. */
  order: Uint32Array;
}

/** The number of rows and their order for one dataset, by InternVL's repeat_time rule. */
export function repeatedOrder(rows: number, repeatTime: number, seed: number): Uint32Array {
  const random = new SeededRandom(seed);
  let order: Uint32Array;
  if (repeatTime < 1) order = random.sample(rows, Math.floor(rows * repeatTime));
  else {
    const times = Math.floor(repeatTime);
    order = new Uint32Array(rows * times);
    for (let i = 0; i < order.length; i += 1) order[i] = i % rows;
  }
  return random.shuffle(order);
}

/** Opens the datasets of an MMPR meta.json (annotation and root paths relative to its folder). */
export async function openMmpr(metaFile: string, options: MmprOptions = {}): Promise<RecordDataset<PreferenceRecord>> {
  const meta = parseConfig(Meta, readJsonFile(metaFile), metaFile);
  const base = dirname(metaFile);
  const parts: MmprPart[] = [];
  for (const [k, [name, entry]] of Object.entries(meta).entries()) {
    const index = await JsonlIndex.build(resolve(base, entry.annotation));
    parts.push({
      name,
      root: resolve(base, entry.root),
      augment: entry.data_augment,
      maxDynamicPatch: entry.max_dynamic_patch ?? options.maxDynamicPatch ?? 12,
      index,
      order: repeatedOrder(index.length, entry.repeat_time, (options.seed ?? 0) + k),
    });
  }
  return new MmprDataset(parts, new BadRowPolicy(options.skipBadRows ?? false));
}

class MmprDataset implements RecordDataset<PreferenceRecord> {
  private readonly ends: number[] = [];

  constructor(
    private readonly parts: MmprPart[],
    private readonly policy: BadRowPolicy,
  ) {
    let total = 0;
    for (const part of parts) {
      total += part.order.length;
      this.ends.push(total);
    }
  }

  get length(): number {
    return this.ends.at(-1) ?? 0;
  }

  get badRows() {
    return this.policy.report;
  }

  get skipBadRows(): boolean {
    return this.policy.skipBadRows;
  }

  get(i: number): Promise<PreferenceRecord | undefined> {
    if (!Number.isInteger(i) || i < 0 || i >= this.length)
      throw new RangeError(`MMPR record ${i} out of range [0, ${this.length})`);
    const p = this.ends.findIndex((end) => i < end);
    const part = this.parts[p] as MmprPart;
    const row = part.order[i - (p === 0 ? 0 : (this.ends[p - 1] as number))] as number;
    return this.policy.guard(async () => mmprRecord(await part.index.object(row), part, row));
  }
}

function mmprRecord(row: Record<string, unknown>, part: MmprPart, rowIndex: number): PreferenceRecord {
  const source: RecordSource = { file: part.index.file, line: part.index.lineNumber(rowIndex) };
  const text = (key: string): string => {
    const value = row[key];
    if (typeof value !== 'string') throw new DataError(source, `missing or non-string "${key}"`);
    return value;
  };
  const [question, chosen, rejected] = [text('question'), text('chosen'), text('rejected')];
  const paths = imagePaths(row.image, source);
  const images = paths.map((path) => resolveInsideRoot(part.root, path, source));
  return {
    kind: 'preference',
    id: `${part.name}:${source.line}`,
    prompt: [userMessage(placeImages(question, images.length, source))],
    chosen: [assistantMessage(chosen)],
    rejected: [assistantMessage(rejected)],
    images,
    maxTiles: images.length === 0 ? 1 : Math.max(1, Math.floor(part.maxDynamicPatch / images.length)),
    augment: part.augment,
    source,
  };
}

/** `image` as InternVL takes it: absent or empty (text only), one path, or a list of paths. */
function imagePaths(value: unknown, source: RecordSource): string[] {
  if (value === undefined || value === null || value === '') return [];
  if (typeof value === 'string') return [value];
  if (Array.isArray(value) && value.every((v) => typeof v === 'string' && v !== '')) return value as string[];
  throw new DataError(source, '"image" must be a path or a list of paths');
}

/** One `<image>` per image: prepended for a single image, required in the text for several. */
function placeImages(question: string, images: number, source: RecordSource): string {
  const present = question.split(IMAGE_PLACEHOLDER).length - 1;
  if (images === 1 && present === 0) return `${IMAGE_PLACEHOLDER}\n${question}`;
  if (present !== images)
    throw new DataError(source, `question has ${present} ${IMAGE_PLACEHOLDER} for ${images} image(s)`);
  return question;
}
