// Reading one special token's id from a checkpoint's tokenizer files without loading a tokenizer
// (models sit below processing): InternVL's remote-code config does not store its <IMG_CONTEXT> id.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { readJsonObject } from '../util/json_file.js';

/** The id of an added token in tokenizer.json / tokenizer_config.json of `dir`, or null. */
export function addedTokenId(dir: string, content: string): number | null {
  const tokenizer = join(dir, 'tokenizer.json');
  if (existsSync(tokenizer)) {
    const added = readJsonObject(tokenizer).added_tokens;
    if (Array.isArray(added)) {
      const hit = added.find((t: { content?: unknown }) => t?.content === content) as { id?: unknown } | undefined;
      if (typeof hit?.id === 'number') return hit.id;
    }
  }
  const config = join(dir, 'tokenizer_config.json');
  if (existsSync(config)) {
    const decoder = readJsonObject(config).added_tokens_decoder;
    if (decoder && typeof decoder === 'object') {
      for (const [id, t] of Object.entries(decoder as Record<string, { content?: unknown }>))
        if (t?.content === content) return Number(id);
    }
  }
  return null;
}
