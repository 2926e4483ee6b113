// Hostile chat templates (issue #17): each reproducer fails with an error naming the file and the
// limit, within a bounded time, and the process keeps rendering afterwards.
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

import { ChatTemplate, loadChatTemplate } from '../../lib/processing/chat_template.js';
import * as processing from '../../lib/processing/index.js';
import { parseMessages } from '../../lib/processing/messages.js';
import type { TemplateLimits } from '../../lib/processing/template_sandbox.js';
import { TextTokenizer } from '../../lib/processing/tokenizer.js';
import { IMAGES, QWEN2_VL_TEMPLATE, realQwenDir, tinyDir } from './helpers.js';

const messages = parseMessages([{ role: 'user', content: [{ type: 'text', text: 'hi' }] }], 'messages');
const EXPECTED_QWEN = '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n';

// The render is the time measured; rendering a harmless template afterwards must still work.
function expectRejected(source: string, limits: TemplateLimits, pattern: RegExp, withinMs: number): void {
  const template = new ChatTemplate(source, 'hostile/chat_template.jinja', {}, limits);
  const start = performance.now();
  expect(() => template.render(messages)).toThrow(pattern);
  expect(performance.now() - start).toBeLessThan(withinMs);
  expect(new ChatTemplate(QWEN2_VL_TEMPLATE, 'spec').render(messages)).toBe(EXPECTED_QWEN);
}

describe('rendering hostile chat templates', () => {
  it('refuses range(1000000000) at once instead of materialising it', () => {
    const source = '{% for i in range(1000000000) %}{% endfor %}x';
    expectRejected(source, {}, /hostile\/chat_template\.jinja.*1000000000 items.*limit: maxRangeItems 1000000/, 1000);
  });

  it('refuses range(10000000) with an empty body', () => {
    expectRejected('{% for i in range(10000000) %}{% endfor %}', {}, /maxRangeItems 1000000\)/, 1000);
  });

  it('stops nested range(100000) loops at the wall-clock limit', () => {
    const source = '{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}';
    const pattern = /hostile\/chat_template\.jinja failed: did not finish within 500 ms.*limit: timeoutMs 500/;
    expectRejected(source, { timeoutMs: 500 }, pattern, 500 + 1500);
  });

  it('stops a render whose memory grows past the worker heap, without harming the process', () => {
    // A range bound above the heap: only the heap limit and the deadline stand in the way.
    const source = '{% for i in range(1000000000) %}{% endfor %}';
    const limits = { maxRangeItems: 1e10, maxHeapMb: 32, timeoutMs: 3000 };
    expectRejected(source, limits, /did not finish within 3000 ms \(or ran past the 32 MB heap\)/, 3000 + 3000);
  });

  it('refuses output longer than maxOutputChars', () => {
    const source = '{% for i in range(1000) %}0123456789{% endfor %}';
    expectRejected(source, { maxOutputChars: 5000 }, /10000 characters \(limit: maxOutputChars 5000\)/, 1000);
    const fits = new ChatTemplate(source, 'fits', {}, { maxOutputChars: 10000 });
    expect(fits.render(messages)).toBe('0123456789'.repeat(1000));
  });

  it('keeps range() semantics within the limit', () => {
    const source = '{{ range(3) | join(",") }};{{ range(2, 8, 3) | join(",") }};{{ range(5, 0, -2) | join(",") }}';
    expect(new ChatTemplate(source, 'range').render(messages)).toBe('0,1,2;2,5;5,3,1');
    expect(() => new ChatTemplate('{{ range(1, 2, 0) }}', 'zero').render(messages)).toThrow(/step must not be zero/);
  });

  it('gives templates no JS globals', () => {
    const source = '[{{ process }}][{{ globalThis }}][{{ require }}]';
    expect(new ChatTemplate(source, 'globals').render(messages)).toBe('[][][]');
  });

  it('names the checkpoint file when loaded from a directory', async () => {
    const dir = await tinyDir('internvl', { model_type: 'internvl' });
    await writeFile(join(dir, 'chat_template.jinja'), '{% for i in range(1000000000) %}{% endfor %}x');
    const tokenizer = await TextTokenizer.fromPretrained(dir);
    const template = (await loadChatTemplate(dir, tokenizer))!;
    const file = join(dir, 'chat_template.jinja').replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
    expect(() => template.render(messages)).toThrow(new RegExp(`${file} failed: .*maxRangeItems`));
  });

  it('takes templateLimits from processing.fromPretrained, and process() recovers after a failure', async () => {
    const dir = await tinyDir('qwen2_vl', { model_type: 'qwen2_vl' });
    const source = '{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}';
    await writeFile(join(dir, 'chat_template.jinja'), `{% if messages[0].content == 'loop' %}${source}{% endif %}ok`);
    const processor = await processing.fromPretrained(dir, { templateLimits: { timeoutMs: 300 } });
    const chat = (text: string) => ({
      messages: [
        { role: 'user', content: text },
        { role: 'assistant', content: 'a' },
      ],
    });
    const start = performance.now();
    const pattern = /chat_template\.jinja failed: .*limit: timeoutMs 300/;
    await expect(processor.process(chat('loop'))).rejects.toThrow(pattern);
    expect(performance.now() - start).toBeLessThan(300 + 1500);
    expect(processor.applyChatTemplate(parseMessages(chat('fine').messages, 'messages'))).toBe('ok');
  });

  it('rejects a non-positive limit by name', () => {
    const template = new ChatTemplate('x', 'bad limits', {}, { timeoutMs: 0 });
    expect(() => template.render(messages)).toThrow(/templateLimits\.timeoutMs but received 0/);
  });
});

// Fuzz run 3 (docs/fuzz.md): a template that renders the prompt without its image placeholder, and
// a preprocessor_config.json whose patch_size × merge_size exceeds the image, were refused without
// naming the file at fault.
describe('errors caused by a checkpoint file name it', () => {
  const img140 = join(IMAGES, 'img_140x140.png');
  const withImage = {
    prompt: [{ role: 'user' as const, content: [{ type: 'image' as const }, { type: 'text' as const, text: 'hi' }] }],
    images: [img140],
  };
  const escaped = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

  it('a template that drops the image parts is named as what rendered the prompt', async () => {
    const dir = await realQwenDir();
    await writeFile(join(dir, 'chat_template.jinja'), '{{ messages[-99].content }}{{ messages[0].role }}');
    const processor = (await processing.fromPretrained(dir)) as processing.Qwen2VlProcessor;
    const file = escaped(join(dir, 'chat_template.jinja'));
    const pattern = new RegExp(
      `^samples\\[0\\]: the prompt has 0 <\\|image_pad\\|> placeholder\\(s\\) but 1 image\\(s\\) were given \\(the prompt as ${file} rendered it\\)$`,
    );
    await expect(processor.process(withImage)).rejects.toThrow(pattern);
    expect(() => processor.encode(withImage, [[1, 10, 10]])).toThrow(pattern);
    // A prompt string is the caller's text: no template to blame.
    await expect(processor.process({ prompt: 'hi', images: [img140] })).rejects.toThrow(/were given$/);
  });

  it('an image smaller than patch_size × merge_size names preprocessor_config.json and its sizes', async () => {
    const dir = await realQwenDir();
    await writeFile(join(dir, 'preprocessor_config.json'), JSON.stringify({ merge_size: 11 }));
    const processor = (await processing.fromPretrained(dir)) as processing.Qwen2VlProcessor;
    const file = escaped(join(dir, 'preprocessor_config.json'));
    // 14 × 11 = 154 > 140: smartResize refuses the image (as transformers' smart_resize does).
    await expect(processor.process(withImage)).rejects.toThrow(
      new RegExp(`at least factor 154 \\(settings from ${file}: patch_size 14, merge_size 11,`),
    );
  });
});
