// A copy of one of the recipe data's tiny checkpoints in a case folder: every file linked, except
// the one the case rewrites, so a case costs one small write.
import fs from 'node:fs';
import path from 'node:path';

export const FAMILIES = ['qwen2_vl', 'qwen2_5_vl', 'internvl'];

/** `<dir>/<family>` holding links to the seed checkpoint's files, except `except`. */
export function checkpointCopy(corpus, dir, family, except = []) {
  const from = path.join(corpus, family);
  const to = path.join(dir, family);
  fs.mkdirSync(to, { recursive: true });
  for (const name of fs.readdirSync(from)) {
    if (!except.includes(name)) fs.symlinkSync(path.join(from, name), path.join(to, name));
  }
  return to;
}

/** A multimodal sample on one of the seed images, for processor.process. */
export function sampleOf(corpus) {
  return {
    messages: [
      { role: 'user', content: [{ type: 'image' }, { type: 'text', text: 'What colour is the square?' }] },
      { role: 'assistant', content: 'Green.' },
    ],
    images: [path.join(corpus, 'mmpr', 'images', 'shapes', 'scene_00.png')],
  };
}
