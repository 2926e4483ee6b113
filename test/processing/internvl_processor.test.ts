// InternVLProcessor: remote-code prompts (§2.5), `<img><IMG_CONTEXT>×256·tiles</img>` expansion,
// MPO labels (§2.9) built independently, the transformers-native mode and config-derived counts.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';

import { fromPretrained, InternVLProcessor, INTERNVL2_5_SYSTEM_MESSAGE } from '../../lib/processing/index.js';
import { GOLDEN, IMAGES, tinyDir } from './helpers.js';

const IGNORE = -100;
const [IMG, IMG_END, CTX] = [503, 504, 505];
const goldenConfig = JSON.parse(readFileSync(join(GOLDEN, 'internvl/config.json'), 'utf8')) as Record<string, unknown>;
const img320 = join(IMAGES, 'img_320x240.png');
const SYS = `<|im_start|>system\n${INTERNVL2_5_SYSTEM_MESSAGE}<|im_end|>\n`;

let remote: InternVLProcessor;
beforeAll(async () => {
  remote = (await fromPretrained(await tinyDir('internvl', goldenConfig))) as InternVLProcessor;
});

describe('InternVLProcessor, remote code (internvl_chat)', () => {
  it('reads 256 tokens per tile and the tiling from config.json', () => {
    expect(remote.settings).toMatchObject({ mode: 'remote', tokensPerTile: 256, systemMessage: null });
    expect(remote.settings.tiling).toEqual({ minNum: 1, maxNum: 12, imageSize: 448, useThumbnail: true });
  });

  it("writes chat()'s prompt exactly", () => {
    expect(
      remote.applyChatTemplate([{ role: 'user', content: 'Describe.' }], { addGenerationPrompt: true, images: 1 }),
    ).toBe(`${SYS}<|im_start|>user\n<image>\nDescribe.<|im_end|>\n<|im_start|>assistant\n`);
    expect(remote.applyChatTemplate([{ role: 'user', content: 'Q' }], { images: 2 })).toBe(
      `${SYS}<|im_start|>user\nImage-1: <image>\nImage-2: <image>\nQ<|im_end|>\n`,
    );
  });

  it('expands the image to <img> + 256·tiles <IMG_CONTEXT> + </img> with pixel values and flags', async () => {
    const one = new InternVLProcessor(remote.tokenizer, remote.settings, null, { tiling: { maxNum: 1 } });
    const batch = await one.process({ prompt: [{ role: 'user', content: 'Describe.' }], images: [img320] });
    const row = (batch.inputIds.toArray() as number[][])[0]!;
    const t = (s: string) => remote.tokenizer.encode(s, { addSpecialTokens: false });
    expect(row).toEqual([
      ...t(`${SYS}<|im_start|>user\n`),
      IMG,
      ...Array(256).fill(CTX),
      IMG_END,
      ...t('\nDescribe.<|im_end|>\n<|im_start|>assistant\n'),
    ]);
    expect(batch.pixelValues!.shape).toEqual([1, 3, 448, 448]);
    expect(batch.imageFlags!.shape).toEqual([1, 1]);
    expect(batch.imageFlags!.dtype).toBe('int64');
    expect(batch.tilesPerImage).toEqual([1]);
    // img_320x240 with max 12: (4,3) + thumbnail = 13 tiles (golden table).
    const full = await remote.process({ prompt: [{ role: 'user', content: 'x' }], images: [img320] });
    expect(full.tilesPerImage).toEqual([13]);
    expect((full.inputIds.toArray() as number[][])[0]!.filter((id) => id === CTX)).toHaveLength(13 * 256);
    expect(full.imageFlags!.toArray()).toEqual(Array(13).fill([1]));
  });

  it('builds MPO labels as preprocess_internvl2_5 does', () => {
    const sample = {
      prompt: [{ role: 'user', content: 'What?' }],
      completion: [{ role: 'assistant', content: 'A dog.' }],
      images: [img320],
    };
    const got = remote.encode(sample, [2]);
    // §2.9: segments tokenized separately; assistant: header tokens and the final token -100.
    const t = (s: string) => remote.tokenizer.encode(s, { addSpecialTokens: false });
    const block = `<img>${'<IMG_CONTEXT>'.repeat(512)}</img>`;
    const system = t(SYS);
    const user = t(`<|im_start|>user\n${block}\nWhat?<|im_end|>\n`);
    const answer = t('<|im_start|>assistant\nA dog.<|im_end|>\n');
    const header = t('<|im_start|>assistant\n').length;
    expect(header).toBe(2 + t('assistant').length);
    expect(got.ids).toEqual([...system, ...user, ...answer]);
    const answerLabels = answer.map((id, i) => (i < header || i === answer.length - 1 ? IGNORE : id));
    expect(got.labels).toEqual([...system.map(() => IGNORE), ...user.map(() => IGNORE), ...answerLabels]);
    expect(answerLabels.filter((l) => l !== IGNORE).at(-1)).toBe(483);
  });

  it('uses a conversation system message and the systemMessage option', () => {
    const custom = new InternVLProcessor(remote.tokenizer, remote.settings, null, { systemMessage: 'Be brief.' });
    expect(custom.applyChatTemplate([{ role: 'user', content: 'Q' }])).toBe(
      '<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nQ<|im_end|>\n',
    );
    expect(
      remote.applyChatTemplate([
        { role: 'system', content: 'S' },
        { role: 'user', content: 'Q' },
      ]),
    ).toBe('<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nQ<|im_end|>\n');
  });

  it('rejects a mismatch between <image> placeholders and images', async () => {
    await expect(
      remote.process({ prompt: [{ role: 'user', content: '<image> and <image>' }], images: [img320] }),
    ).rejects.toThrow('samples[0]: the prompt has 2 <IMG_CONTEXT> placeholder(s) but 1 image(s) were given');
  });

  it('derives tokens per tile from force_image_size, patch size and downsample ratio', async () => {
    const small = (await fromPretrained(
      await tinyDir('internvl', { ...goldenConfig, force_image_size: 224 }),
    )) as InternVLProcessor;
    expect(small.settings.tokensPerTile).toBe(64);
    expect(small.settings.tiling.imageSize).toBe(224);
    await expect(fromPretrained(await tinyDir('internvl', { ...goldenConfig, template: 'phi3-chat' }))).rejects.toThrow(
      /template 'phi3-chat' is not supported \(supported: internvl2_5\)/,
    );
  });
});

describe('InternVLProcessor, transformers-native (internvl)', () => {
  it('renders the file template without a system message and expands <IMG_CONTEXT>', async () => {
    const hf = (await fromPretrained(
      await tinyDir('internvl', { model_type: 'internvl', image_seq_length: 256 }),
    )) as InternVLProcessor;
    expect(hf.settings.mode).toBe('hf');
    const messages = [{ role: 'user', content: [{ type: 'image' as const }, { type: 'text' as const, text: 'Q' }] }];
    expect(hf.applyChatTemplate(messages, { addGenerationPrompt: true })).toBe(
      '<|im_start|>user\n<IMG_CONTEXT>\nQ<|im_end|>\n<|im_start|>assistant\n',
    );
    const got = hf.encode({ messages: [...messages, { role: 'assistant', content: 'A' }], images: [img320] }, [1]);
    const t = (s: string) => hf.tokenizer.encode(s, { addSpecialTokens: false });
    const head = t('<|im_start|>user\n');
    expect(got.ids).toEqual([
      ...head,
      IMG,
      ...Array(256).fill(CTX),
      IMG_END,
      ...t('\nQ<|im_end|>\n<|im_start|>assistant\nA<|im_end|>\n'),
    ]);
    expect(got.labels.filter((l) => l !== IGNORE)).toEqual([...t('A'), 483]);
  });
});
