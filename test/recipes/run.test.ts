// Every recipe in examples/recipes/ runs as written through `vlalign train` (the CLI's main()) on the
// data scripts/make-recipe-data.mjs generates, for one optimizer step: the run writes checkpoint-1,
// a metrics jsonl whose loss is finite, and the final adapter or model.
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { main } from '../../lib/cli/main.js';
import { readMetricsLog } from '../../lib/train/metrics_log.js';

const recipes = join(import.meta.dirname, '../../examples/recipes');
const root = mkdtempSync(join(tmpdir(), 'vlalign-recipes-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

const names = readdirSync(recipes)
  .filter((f) => f.endsWith('.yaml'))
  .map((f) => f.slice(0, -'.yaml'.length));

describe('examples/recipes', () => {
  it('has the five recipes the issue names (and more)', () => {
    expect(names).toEqual(expect.arrayContaining(['internvl3-mpo', 'trl-mpo-qlora', 'vlrlhf-dpo', 'kto', 'sft']));
  });

  it.each(names)(
    '%s runs one step end to end',
    async (name) => {
      if (!existsSync(join(root, '.data'))) {
        const script = join(import.meta.dirname, '../../scripts/make-recipe-data.mjs');
        const made = spawnSync(process.execPath, [script, '--out', join(root, '.data')], { encoding: 'utf8' });
        expect(made.status, made.stderr).toBe(0);
      }
      copyFileSync(join(recipes, `${name}.yaml`), join(root, `${name}.yaml`));
      const out = join(root, 'runs', name);
      const flags = ['--max_steps', '1', '--save_steps', '1', '--output_dir', out, '--report_to', '[tensorboard]'];
      await main(['node', 'vlalign', 'train', join(root, `${name}.yaml`), ...flags]);
      expect(process.exitCode ?? 0).toBe(0);
      expect(existsSync(join(out, 'checkpoint-1', 'checkpoint_complete.json'))).toBe(true);
      const logged = readMetricsLog(join(out, 'metrics.jsonl'));
      const train = logged.find((e) => typeof e.loss === 'number');
      expect(Number.isFinite(train?.loss as number)).toBe(true);
      const saved = readdirSync(out);
      expect(saved.some((f) => f === 'adapter_model.safetensors' || f.startsWith('model'))).toBe(true);
    },
    120_000,
  );
});
