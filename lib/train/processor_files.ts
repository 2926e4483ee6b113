// The files besides the weights that make a saved folder loadable on its own (transformers'
// AutoProcessor / AutoTokenizer, vLLM): tokenizer, chat template and image processor settings.
import fs from 'node:fs';
import path from 'node:path';
import { writeAtomic } from '../util/atomic_write.js';

const PROCESSOR_FILES = [
  'tokenizer.json',
  'tokenizer_config.json',
  'special_tokens_map.json',
  'added_tokens.json',
  'vocab.json',
  'merges.txt',
  'tokenizer.model',
  'chat_template.json',
  'chat_template.jinja',
  'preprocessor_config.json',
  'processor_config.json',
  'generation_config.json',
];

/** Copies the processor files `from` has into `to` (atomically each); returns the names copied. */
export function copyProcessorFiles(from: string, to: string): string[] {
  const copied: string[] = [];
  for (const name of PROCESSOR_FILES) {
    const source = path.join(from, name);
    if (!fs.existsSync(source) || fs.existsSync(path.join(to, name))) continue;
    writeAtomic(path.join(to, name), fs.readFileSync(source));
    copied.push(name);
  }
  return copied;
}
