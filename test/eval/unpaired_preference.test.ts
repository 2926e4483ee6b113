// unpairedPreferenceAccuracy against counts done by hand, and the predictions files' writer against
// the resumable log's reader (the same lines both ways).
import fs from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { UnpairedRecord } from '../../lib/data/records.js';
import { PredictionsLog, writePredictions, type PredictionLine } from '../../lib/eval/predictions_log.js';
import { unpairedPreferenceAccuracy } from '../../lib/eval/unpaired_preference.js';

const row = (prompt: string, label: boolean, images: UnpairedRecord['images'] = []): UnpairedRecord => ({
  kind: 'unpaired',
  id: `${prompt}-${label}`,
  prompt: [{ role: 'user', content: prompt }],
  completion: [{ role: 'assistant', content: 'x' }],
  label,
  images,
  source: { file: 'rows.jsonl', line: 1 },
});

describe('unpairedPreferenceAccuracy', () => {
  it('compares every (desirable, undesirable) combination of one prompt; ties count 0.5', () => {
    const result = unpairedPreferenceAccuracy([
      // prompt a: desirable 2 and 0 against undesirable 1: pairs (2 > 1) = 1, (0 < 1) = 0
      { record: row('a', true), reward: 2 },
      { record: row('a', true), reward: 0 },
      { record: row('a', false), reward: 1 },
      // prompt b: a tie = 0.5
      { record: row('b', true), reward: 3 },
      { record: row('b', false), reward: 3 },
      // prompt c: desirable only, prompt d: undesirable only: no pair
      { record: row('c', true), reward: -5 },
      { record: row('d', false), reward: 9 },
    ]);
    expect(result).toEqual({ accuracy: (1 + 0 + 0.5) / 3, pairs: 3, prompts: 2 });
  });

  it('the same text with other images is another prompt', () => {
    const a = new Uint8Array([1, 2, 3]);
    const b = new Uint8Array([1, 2, 4]);
    const rows = [
      { record: row('q', true, [a]), reward: 1 },
      { record: row('q', false, [b]), reward: 0 },
    ];
    expect(unpairedPreferenceAccuracy(rows).pairs).toBe(0);
    expect(Number.isNaN(unpairedPreferenceAccuracy(rows).accuracy)).toBe(true);
    const same = [rows[0]!, { record: row('q', false, [Uint8Array.from(a)]), reward: 0 }];
    expect(unpairedPreferenceAccuracy(same)).toEqual({ accuracy: 1, pairs: 1, prompts: 1 });
    const paths = [
      { record: row('q', true, ['img/1.png']), reward: 0 },
      { record: row('q', false, ['img/2.png']), reward: 1 },
      { record: row('q', false, ['img/1.png']), reward: 1 },
    ];
    expect(unpairedPreferenceAccuracy(paths)).toEqual({ accuracy: 0, pairs: 1, prompts: 1 });
  });
});

describe('writePredictions', () => {
  const dir = fs.mkdtempSync(path.join(tmpdir(), 'vlalign-predictions-'));
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('writes whole files the resumable log reads back line for line, replacing an older one', () => {
    const file = path.join(dir, 'eval_predictions-3.jsonl');
    const lines: PredictionLine[] = [
      { id: 'q.jsonl:1', prediction: 'a cat', score: 1, data_source: 'x', finish_reason: 'stop', reference: ['cat'] },
      { id: 'q.jsonl:2', prediction: 'é "quoted"\nnewline', score: 0, parts: { iou: 0.25 }, reference: { box: [1] } },
    ];
    writePredictions(file, [{ id: 'old', prediction: '', score: 0 }]);
    writePredictions(file, lines);
    const log = PredictionsLog.open(file);
    expect(log.size).toBe(2);
    expect(lines.map((l) => log.get(l.id))).toEqual(lines);
    expect(fs.readFileSync(file, 'utf8')).toBe(lines.map((l) => `${JSON.stringify(l)}\n`).join(''));
    expect(fs.readdirSync(dir)).toEqual(['eval_predictions-3.jsonl']);
  });
});
