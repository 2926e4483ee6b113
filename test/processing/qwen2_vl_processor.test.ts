// Qwen2VlProcessor: placeholder expansion, batching, labels (checked token by token against a
// construction from hand-written text pieces), and errors.
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';

import { fromPretrained, Qwen2VlProcessor } from '../../lib/processing/index.js';
import type { ChatMessage } from '../../lib/processing/messages.js';
import { IMAGES, realQwenDir, scratch, tinyDir, writeJson } from './helpers.js';

const IGNORE = -100;
const img70x350 = join(IMAGES, 'img_70x350.png'); // grid [1,24,4] → 24 tokens
const img140 = join(IMAGES, 'img_140x140.png'); // grid [1,10,10] → 25 tokens

const ask = (text: string, images = 1): ChatMessage => ({
  role: 'user',
  content: [...Array.from({ length: images }, () => ({ type: 'image' as const })), { type: 'text' as const, text }],
});

let real: Qwen2VlProcessor;
let tiny: Qwen2VlProcessor;
beforeAll(async () => {
  real = (await fromPretrained(await realQwenDir())) as Qwen2VlProcessor;
  tiny = (await fromPretrained(await tinyDir('qwen2_5_vl', { model_type: 'qwen2_5_vl' }))) as Qwen2VlProcessor;
});

describe('Qwen2VlProcessor with the real Qwen tokenizer', () => {
  it('expands each <|image_pad|> to t·h·w/4 tokens, in image order', async () => {
    const batch = await real.process({ prompt: [ask('Compare.', 2)], images: [img140, img70x350] });
    const ids = batch.inputIds.toArray() as number[][];
    const row = ids[0]!;
    expect(batch.imageGridThw!.toArray()).toEqual([
      [1, 10, 10],
      [1, 24, 4],
    ]);
    expect(batch.pixelValues!.shape).toEqual([100 + 96, 1176]);
    const starts = row.flatMap((id, i) => (id === 151652 ? [i] : []));
    const ends = row.flatMap((id, i) => (id === 151653 ? [i] : []));
    expect(ends.map((e, k) => e - starts[k]! - 1)).toEqual([25, 24]);
    expect(row.filter((id) => id === 151655)).toHaveLength(49);
    expect(row.slice(starts[0]! + 1, ends[0]).every((id) => id === 151655)).toBe(true);
    expect(batch.inputIds.dtype).toBe('int64');
    expect(batch.attentionMask.toArray()).toEqual([row.map(() => 1)]);
    expect((batch.labels.toArray() as number[][])[0]!.every((l) => l === IGNORE)).toBe(true);
    expect(real.tokenizer.decode(row.filter((id) => id !== 151655))).toBe(
      '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n' +
        '<|vision_start|><|vision_end|><|vision_start|><|vision_end|>Compare.<|im_end|>\n<|im_start|>assistant\n',
    );
  });

  it('rejects a placeholder / image count mismatch before any pixel work', async () => {
    await expect(real.process({ prompt: [ask('Two?', 2)], images: [img140] })).rejects.toThrow(
      'samples[0]: the prompt has 2 <|image_pad|> placeholder(s) but 1 image(s) were given',
    );
    await expect(
      real.process([{ prompt: 'no image here' }, { prompt: [ask('x', 0)], images: ['missing.png'] }]),
    ).rejects.toThrow(/samples\[1\]: the prompt has 0 <\|image_pad\|> placeholder\(s\) but 1 image/);
  });

  it('labels assistant answers and <|im_end|>, not headers, newlines, prompts or images', async () => {
    const messages: ChatMessage[] = [
      ask('What is it?'),
      { role: 'assistant', content: 'A cat.' },
      { role: 'user', content: '和狗？' },
      { role: 'assistant', content: '不是 🐶' },
    ];
    const got = real.encode({ messages, images: [img70x350] }, [[1, 24, 4]]);
    // Independent construction: the rendered pieces written out by hand, tokenized one by one.
    const t = (s: string) => real.tokenizer.encode(s, { addSpecialTokens: false });
    const pieces: Array<[number[], boolean]> = [
      [t('<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n<|vision_start|>'), false],
      [Array(24).fill(151655), false],
      [t('<|vision_end|>What is it?<|im_end|>\n<|im_start|>assistant\n'), false],
      [[...t('A cat.'), 151645], true],
      [t('\n<|im_start|>user\n和狗？<|im_end|>\n<|im_start|>assistant\n'), false],
      [[...t('不是 🐶'), 151645], true],
      [t('\n'), false],
    ];
    expect(got.ids).toEqual(pieces.flatMap(([ids]) => ids));
    expect(got.labels).toEqual(pieces.flatMap(([ids, train]) => (train ? ids : ids.map(() => IGNORE))));
  });

  it('labels only the completion of a prompt + completion pair; labelAfterEos adds the newline', async () => {
    const prompt: ChatMessage[] = [
      { role: 'user', content: 'Hi' },
      { role: 'assistant', content: 'Hello' },
      { role: 'user', content: 'Bye' },
    ];
    const sample = { prompt, completion: [{ role: 'assistant', content: 'See you' }] as ChatMessage[] };
    const t = (s: string) => real.tokenizer.encode(s, { addSpecialTokens: false });
    const labelled = (labels: number[]) => labels.filter((l) => l !== IGNORE);
    expect(labelled(real.encode(sample, []).labels)).toEqual([...t('See you'), 151645]);
    const trl = new Qwen2VlProcessor(real.tokenizer, real.chatTemplate, {}, { labelAfterEos: true });
    expect(labelled(trl.encode(sample, []).labels)).toEqual([...t('See you'), 151645, 198]);
    // A rendered prompt with a raw completion: every completion token is labelled.
    const raw = real.encode(
      { prompt: '<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n', completion: 'Yo<|im_end|>' },
      [],
    );
    expect(labelled(raw.labels)).toEqual([...t('Yo'), 151645]);
    expect(raw.ids).toEqual(t('<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nYo<|im_end|>'));
  });
});

describe('Qwen2VlProcessor batching and errors (tiny tokenizer)', () => {
  it('pads right by default and left on request, with <|endoftext|>', async () => {
    const samples = [{ prompt: 'a' }, { prompt: 'a longer prompt here', completion: ' ok' }];
    const right = await tiny.process(samples);
    const short = tiny.tokenizer.encode('a');
    const long = (right.inputIds.toArray() as number[][])[1]!;
    expect((right.inputIds.toArray() as number[][])[0]).toEqual([
      ...short,
      ...Array(long.length - short.length).fill(481),
    ]);
    expect((right.attentionMask.toArray() as number[][])[0]).toEqual(long.map((_, i) => (i < short.length ? 1 : 0)));
    const left = new Qwen2VlProcessor(tiny.tokenizer, tiny.chatTemplate, {}, { paddingSide: 'left' });
    const l = await left.process(samples);
    expect((l.inputIds.toArray() as number[][])[0]).toEqual([...Array(long.length - short.length).fill(481), ...short]);
    expect((l.labels.toArray() as number[][])[0]!.every((x) => x === IGNORE)).toBe(true);
    expect(l.pixelValues).toBeNull();
    expect(l.imageGridThw).toBeNull();
  });

  it('validates samples and names what is missing', async () => {
    await expect(tiny.process([{ prompt: 'x', messages: [] } as never])).rejects.toThrow(
      /samples\[0\]: give either messages/,
    );
    const numberContent = [{ messages: [{ role: 'user', content: 3 }] } as never];
    await expect(tiny.process(numberContent)).rejects.toThrow(/samples\[0\]\.messages\[0\]\.content: /);
    const noTemplate = new Qwen2VlProcessor(tiny.tokenizer, null, {});
    expect(() => noTemplate.encode({ prompt: [ask('x', 0)] }, [])).toThrow(
      /samples\[0\]: the checkpoint has no chat template/,
    );
    await expect(tiny.process({ prompt: '<|vision_start|><|video_pad|><|vision_end|>' })).rejects.toThrow(
      /videos are not supported/,
    );
  });

  it('fromPretrained reports missing files and unknown model types', async () => {
    const empty = await scratch();
    await expect(fromPretrained(empty)).rejects.toThrow(`${join(empty, 'config.json')} not found`);
    await writeJson(empty, 'config.json', { model_type: 'qwen2_vl' });
    await expect(fromPretrained(empty)).rejects.toThrow(/tokenizer\.json not found/);
    await writeJson(empty, 'config.json', { model_type: 'llava' });
    const supported = '\\(supported: qwen2_vl, qwen2_5_vl, internvl_chat, internvl\\)';
    await expect(fromPretrained(empty)).rejects.toThrow(new RegExp(`model_type 'llava' has no processor ${supported}`));
  });
});
