// Records → processor samples: chat prompts and completions pass as messages; TRL's standard text
// format gets EOS appended once (TRL's add_eos); the decoded pixels go on both sides of a pair; the
// results are valid processor samples (parseSample).
import { describe, expect, it } from 'vitest';
import type { DecodedRecord } from '../../lib/data/images.js';
import type { PreferenceRecord, SftRecord, UnpairedRecord } from '../../lib/data/records.js';
import { preferenceSamples, sftSample, unpairedSample } from '../../lib/data/samples.js';
import { parseSample } from '../../lib/processing/sample.js';

const pixels = [{ width: 1, height: 1, data: new Uint8Array([1, 2, 3]) }];
const source = { file: 'd.jsonl', line: 4 };
const decoded = <T extends PreferenceRecord | UnpairedRecord | SftRecord>(record: T): DecodedRecord<T> => ({
  index: 0,
  record,
  pixels,
});
const user = [{ role: 'user', content: [{ type: 'image' as const }, { type: 'text' as const, text: 'q' }] }];

describe('samples', () => {
  it('pairs: chat messages as they are, images on both sides', () => {
    const record: PreferenceRecord = {
      kind: 'preference',
      id: 'x',
      prompt: user,
      chosen: [{ role: 'assistant', content: 'yes' }],
      rejected: [{ role: 'assistant', content: 'no' }],
      images: ['a.png'],
      source,
    };
    const { chosen, rejected } = preferenceSamples(decoded(record));
    expect(chosen).toEqual({ prompt: user, completion: [{ role: 'assistant', content: 'yes' }], images: pixels });
    expect(rejected).toEqual({ prompt: user, completion: [{ role: 'assistant', content: 'no' }], images: pixels });
    expect(parseSample(chosen, 0)).toMatchObject({ prompt: user, images: pixels });
  });

  it('pairs: standard text gets EOS once; without eosToken the record is named', () => {
    const record: PreferenceRecord = {
      kind: 'preference',
      id: 'x',
      prompt: 'Q: ',
      chosen: 'yes',
      rejected: 'no</s>',
      images: [],
      source,
    };
    const { chosen, rejected } = preferenceSamples(decoded(record), { eosToken: '</s>' });
    expect([chosen.prompt, chosen.completion, rejected.completion]).toEqual(['Q: ', 'yes</s>', 'no</s>']);
    expect(() => preferenceSamples(decoded(record))).toThrow(
      /^d\.jsonl:4: a text completion needs the tokenizer's EOS/,
    );
  });

  it('unpaired and SFT', () => {
    const kto: UnpairedRecord = {
      kind: 'unpaired',
      id: 'k',
      prompt: 'P',
      completion: 'C',
      label: false,
      images: [],
      source,
    };
    expect(unpairedSample(decoded(kto), { eosToken: '<|im_end|>' })).toEqual({
      prompt: 'P',
      completion: 'C<|im_end|>',
      images: pixels,
    });
    const messages = [...user, { role: 'assistant', content: 'a' }];
    const sft: SftRecord = { kind: 'sft', id: 's', messages, images: [], source };
    expect(sftSample(decoded(sft))).toEqual({ messages, images: pixels });
    expect(parseSample(sftSample(decoded(sft)), 0).messages).toEqual(messages);
  });

  it("carries the record's InternVL tile budget onto every sample", () => {
    const pair: PreferenceRecord = {
      kind: 'preference',
      id: 'x',
      prompt: user,
      chosen: [{ role: 'assistant', content: 'yes' }],
      rejected: [{ role: 'assistant', content: 'no' }],
      images: ['a.png'],
      maxTiles: 3,
      source,
    };
    const { chosen, rejected } = preferenceSamples(decoded(pair));
    expect([chosen.maxTiles, rejected.maxTiles]).toEqual([3, 3]);
    const kto: UnpairedRecord = { ...pair, kind: 'unpaired', completion: pair.chosen, label: true, maxTiles: 2 };
    expect(unpairedSample(decoded(kto)).maxTiles).toBe(2);
    const sft: SftRecord = { kind: 'sft', id: 's', messages: user, images: ['a.png'], maxTiles: 6, source };
    expect(sftSample(decoded(sft)).maxTiles).toBe(6);
    expect(parseSample(sftSample(decoded(sft)), 0).maxTiles).toBe(6);
    expect(() => parseSample({ ...sftSample(decoded(sft)), maxTiles: 0 }, 2)).toThrow(/samples\[2\]\.maxTiles/);
  });
});
