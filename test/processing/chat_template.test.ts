// Chat templates: where they are found, and renderings equal to the spec's strings exactly.
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

import { ChatTemplate, loadChatTemplate, selectNamedTemplate } from '../../lib/processing/chat_template.js';
import { parseMessages } from '../../lib/processing/messages.js';
import { TextTokenizer } from '../../lib/processing/tokenizer.js';
import {
  InternVL25Template,
  INTERNVL2_5_SYSTEM_MESSAGE,
  withImagePlaceholders,
} from '../../lib/processing/internvl_template.js';
import { QWEN2_VL_TEMPLATE, scratch, tinyDir, writeJson } from './helpers.js';
import { writeFile } from 'node:fs/promises';

const qwen = new ChatTemplate(QWEN2_VL_TEMPLATE, 'spec §1.3', { eos_token: '<|im_end|>', pad_token: '<|endoftext|>' });
const SYSTEM = '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n';

describe('the Qwen2-VL chat template', () => {
  it('renders one image + text as the spec shows', () => {
    const messages = parseMessages(
      [{ role: 'user', content: [{ type: 'image' }, { type: 'text', text: 'TEXT' }] }],
      'messages',
    );
    expect(qwen.render(messages, { addGenerationPrompt: true })).toBe(
      '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>TEXT<|im_end|>\n<|im_start|>assistant\n',
    );
  });

  it('numbers media with add_vision_id and keeps a given system message', () => {
    const messages = parseMessages(
      [
        { role: 'system', content: 'Be brief.' },
        {
          role: 'user',
          content: [{ type: 'image', image: 'a.png' }, { type: 'text', text: 'and' }, { type: 'image_url' }],
        },
        { role: 'assistant', content: 'Two cats.' },
      ],
      'messages',
    );
    expect(qwen.render(messages, { addVisionId: true })).toBe(
      '<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nPicture 1: <|vision_start|><|image_pad|><|vision_end|>and' +
        'Picture 2: <|vision_start|><|image_pad|><|vision_end|><|im_end|>\n<|im_start|>assistant\nTwo cats.<|im_end|>\n',
    );
  });

  it('renders multi-turn string content without a generation prompt', () => {
    const messages = parseMessages(
      [
        { role: 'user', content: 'Hi' },
        { role: 'assistant', content: 'Hello!' },
        { role: 'user', content: '你好 😀' },
      ],
      'messages',
    );
    expect(qwen.render(messages)).toBe(
      `${SYSTEM}<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello!<|im_end|>\n<|im_start|>user\n你好 😀<|im_end|>\n`,
    );
  });

  it('passes special tokens and raise_exception to templates', () => {
    const t = new ChatTemplate(
      "{{ eos_token }}{% if messages|length == 0 %}{{ raise_exception('no messages') }}{% endif %}",
      'test',
      { eos_token: '</s>' },
    );
    expect(t.render([{ role: 'user', content: 'x' }])).toBe('</s>');
    expect(() => t.render([])).toThrow(/rendering the chat template of test failed: .*no messages/);
  });

  it('rejects malformed messages, naming the element', () => {
    const noText = [{ role: 'user', content: [{ type: 'text' }] }];
    expect(() => parseMessages(noText, 'messages')).toThrow(/invalid messages\[0\]\.content: /);
    expect(() => new ChatTemplate('{% if %}', 'broken.jinja')).toThrow(
      /cannot parse the chat template of broken\.jinja/,
    );
  });
});

describe('chat template lookup', () => {
  async function dirWith(files: Record<string, string | object>): Promise<{ dir: string; tokenizer: TextTokenizer }> {
    const dir = await tinyDir('internvl', { model_type: 'internvl' });
    for (const [name, value] of Object.entries(files)) {
      if (typeof value === 'string') await writeFile(join(dir, name), value);
      else await writeJson(dir, name, value);
    }
    return { dir, tokenizer: await TextTokenizer.fromPretrained(dir) };
  }

  it('prefers chat_template.jinja, then chat_template.json, then tokenizer_config.json', async () => {
    let { dir, tokenizer } = await dirWith({
      'chat_template.jinja': 'J',
      'chat_template.json': { chat_template: 'JSON' },
    });
    expect((await loadChatTemplate(dir, tokenizer))!.source).toBe('J');
    ({ dir, tokenizer } = await dirWith({ 'chat_template.json': { chat_template: 'JSON' } }));
    expect((await loadChatTemplate(dir, tokenizer))!.origin).toBe(join(dir, 'chat_template.json'));
    ({ dir, tokenizer } = await dirWith({}));
    const fromConfig = (await loadChatTemplate(dir, tokenizer))!;
    expect(fromConfig.origin).toBe(join(dir, 'tokenizer_config.json'));
    expect(
      fromConfig.render([{ role: 'user', content: [{ type: 'image' }, { type: 'text', text: 'Q' }] }], {
        addGenerationPrompt: true,
      }),
    ).toBe('<|im_start|>user\n<IMG_CONTEXT>\nQ<|im_end|>\n<|im_start|>assistant\n');
  });

  it('reads the list-of-named-templates form', () => {
    const list = [
      { name: 'default', template: 'D' },
      { name: 'tool_use', template: 'T' },
    ];
    expect(selectNamedTemplate(list, 'f')).toBe('D');
    expect(selectNamedTemplate(list, 'f', 'tool_use')).toBe('T');
    expect(() => selectNamedTemplate(list, 'f', 'rag')).toThrow(
      /f has no chat template named 'rag' \(it has: default, tool_use\)/,
    );
    expect(selectNamedTemplate(undefined, 'f')).toBeNull();
  });

  it('returns null when a checkpoint has no template', async () => {
    const dir = await scratch();
    await writeJson(dir, 'tokenizer.json', (await import('../../lib/tiny/tokenizer.js')).tinyTokenizerJson());
    const tokenizer = await TextTokenizer.fromPretrained(dir);
    expect(await loadChatTemplate(dir, tokenizer)).toBeNull();
  });
});

describe('the InternVL internvl2_5 template (remote code, spec §2.5)', () => {
  const template = new InternVL25Template();

  it('writes chat()’s single-image prompt with the default system message', () => {
    const messages = withImagePlaceholders([{ role: 'user', content: 'What is this?' }], 1);
    expect(template.render(messages, { addGenerationPrompt: true })).toBe(
      `<|im_start|>system\n${INTERNVL2_5_SYSTEM_MESSAGE}<|im_end|>\n<|im_start|>user\n<image>\nWhat is this?<|im_end|>\n<|im_start|>assistant\n`,
    );
    expect(INTERNVL2_5_SYSTEM_MESSAGE).toBe(
      '你是书生·万象，英文名是InternVL，是由上海人工智能实验室、清华大学及多家合作单位联合开发的多模态大语言模型。',
    );
  });

  it('numbers several images and keeps placeholders already present', () => {
    expect(withImagePlaceholders([{ role: 'user', content: 'Compare.' }], 2)[0]!.content).toBe(
      'Image-1: <image>\nImage-2: <image>\nCompare.',
    );
    expect(withImagePlaceholders([{ role: 'user', content: 'Look: <image> ok' }], 1)[0]!.content).toBe(
      'Look: <image> ok',
    );
    const parts = parseMessages(
      [{ role: 'user', content: [{ type: 'image' }, { type: 'image' }, { type: 'text', text: 'Q' }] }],
      'm',
    );
    expect(withImagePlaceholders(parts, 2)[0]!.content).toBe('Image-1: <image>\nImage-2: <image>\nQ');
  });

  it('uses a leading system message instead of the default and renders answers', () => {
    const text = template.render([
      { role: 'system', content: 'S' },
      { role: 'user', content: 'Q' },
      { role: 'assistant', content: 'A' },
    ]);
    expect(text).toBe(
      '<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nQ<|im_end|>\n<|im_start|>assistant\nA<|im_end|>\n',
    );
    expect(() => template.render([{ role: 'tool', content: 'x' }])).toThrow(
      /messages\[0\]: role 'tool' is not supported/,
    );
  });
});
