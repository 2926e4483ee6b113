// A config.json value only the model builder reads (an activation name, found by `npm run fuzz`)
// is refused naming the file and the key (issue #17), and an unedited checkpoint still loads.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { fromPretrained } from '../../lib/models/index.js';
import { writeTinyCheckpoint } from '../../lib/tiny/index.js';

const root = mkdtempSync(join(tmpdir(), 'vlalign-activation-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));
const escaped = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

describe('activations named in config.json', () => {
  it.each(['qwen2_vl', 'internvl'] as const)(
    '%s: an unknown vision activation names config.json and the key',
    async (family) => {
      const dir = join(root, family);
      await writeTinyCheckpoint(dir, family);
      const model = await fromPretrained(dir);
      model.dispose();
      const file = join(dir, 'config.json');
      const config = JSON.parse(readFileSync(file, 'utf8'));
      config.vision_config.hidden_act = '../../etc/passwd';
      writeFileSync(file, JSON.stringify(config));
      await expect(fromPretrained(dir)).rejects.toThrow(
        new RegExp(`^${escaped(file)}: vision_config\\.hidden_act: unknown activation '\\.\\./\\.\\./etc/passwd'`),
      );
    },
  );
});
