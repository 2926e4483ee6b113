// Preference accuracy on unpaired rows (KTO, APO-zero unpaired, BCO): each row is one completion with
// a desirable / undesirable label, so there is no chosen-rejected pair per row. A pair exists where
// one prompt (the same messages and the same images) has both a desirable and an undesirable
// completion, as in a preference set unpaired by TRL's unpair_preference_dataset. Every
// (desirable, undesirable) combination of one prompt is a pair, scored as preference.ts scores one:
// 1 when the desirable completion's implicit reward β·(log π − log π_ref) is higher, 0.5 on a tie,
// else 0. Rows whose prompt has completions of one label only take part in no pair.
import { createHash } from 'node:crypto';
import type { UnpairedRecord } from '../data/records.js';

/** One row with its implicit reward β·(log π − log π_ref). */
export interface UnpairedReward {
  record: UnpairedRecord;
  reward: number;
}

export interface UnpairedPreferenceAccuracy {
  /** Mean over the pairs (ties 0.5); NaN when there is no pair. */
  accuracy: number;
  /** (desirable, undesirable) combinations compared. */
  pairs: number;
  /** Prompts with both labels. */
  prompts: number;
}

/** The accuracy over the (desirable, undesirable) pairs of each prompt of `rows`. */
export function unpairedPreferenceAccuracy(rows: readonly UnpairedReward[]): UnpairedPreferenceAccuracy {
  const byPrompt = new Map<string, { good: number[]; bad: number[] }>();
  for (const { record, reward } of rows) {
    const key = promptKey(record);
    const group = byPrompt.get(key) ?? { good: [], bad: [] };
    (record.label ? group.good : group.bad).push(reward);
    byPrompt.set(key, group);
  }
  let [correct, pairs, prompts] = [0, 0, 0];
  for (const { good, bad } of byPrompt.values()) {
    if (good.length === 0 || bad.length === 0) continue;
    prompts += 1;
    for (const g of good) {
      for (const b of bad) correct += g > b ? 1 : g === b ? 0.5 : 0;
    }
    pairs += good.length * bad.length;
  }
  return { accuracy: pairs === 0 ? Number.NaN : correct / pairs, pairs, prompts };
}

// What identifies a prompt: its messages (or text) and its images (a path as written, bytes by digest).
function promptKey(record: UnpairedRecord): string {
  const hash = createHash('sha256');
  hash.update(JSON.stringify(record.prompt));
  for (const image of record.images) {
    if (typeof image === 'string') hash.update(`path:${image}`);
    else if (image instanceof Uint8Array) hash.update('bytes:').update(image);
    else hash.update(`rgb:${image.width}x${image.height}:`).update(image.data);
  }
  return hash.digest('hex');
}
