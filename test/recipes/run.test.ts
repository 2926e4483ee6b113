// Every recipe in examples/recipes/ runs as written through `vlalign train` (the CLI's main()) on the
// data scripts/make-recipe-data.mjs generates, for one optimizer step: the run writes checkpoint-1,
// a metrics jsonl whose loss is finite, and the final adapter or model.
import { spawnSync } from 'node:child_process';
import {
  appendFileSync,
  copyFileSync,
  existsSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
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

function makeData(): void {
  if (existsSync(join(root, '.data'))) return;
  const script = join(import.meta.dirname, '../../scripts/make-recipe-data.mjs');
  const made = spawnSync(process.execPath, [script, '--out', join(root, '.data')], { encoding: 'utf8' });
  expect(made.status, made.stderr).toBe(0);
}

describe('examples/recipes', () => {
  it('has the five recipes the issue names (and more)', () => {
    expect(names).toEqual(expect.arrayContaining(['internvl3-mpo', 'trl-mpo-qlora', 'vlrlhf-dpo', 'kto', 'sft']));
  });

  it.each(names)(
    '%s runs one step end to end',
    async (name) => {
      makeData();
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

  it('skip_bad_rows: a malformed line is left out, counted in the final metrics and named on the terminal', async () => {
    makeData();
    const data = join(root, 'bad-rows');
    rmSync(data, { recursive: true, force: true });
    const lines = readFileSync(join(root, '.data', 'sft', 'train.jsonl'), 'utf8');
    const file = join(root, '.data', 'sft', 'with_bad.jsonl');
    writeFileSync(file, lines);
    appendFileSync(file, '{"messages": [oops\n');
    const recipe = readFileSync(join(recipes, 'sft.yaml'), 'utf8')
      .replace('path: .data/sft/train.jsonl', 'path: .data/sft/with_bad.jsonl')
      .replace('skip_bad_rows: false', 'skip_bad_rows: true');
    writeFileSync(join(root, 'bad.yaml'), recipe);
    const written: string[] = [];
    const write = process.stderr.write.bind(process.stderr);
    process.stderr.write = ((chunk: string) => written.push(String(chunk)) > 0) as typeof process.stderr.write;
    try {
      const flags = ['--max_steps', '4', '--num_train_epochs', '2', '--output_dir', data, '--save_strategy', 'no'];
      await main(['node', 'vlalign', 'train', join(root, 'bad.yaml'), ...flags]);
    } finally {
      process.stderr.write = write;
    }
    expect(process.exitCode ?? 0).toBe(0);
    const final = readMetricsLog(join(data, 'metrics.jsonl')).find((e) => 'train_runtime' in e);
    expect(final?.train_bad_rows).toBe(1);
    const lineNo = lines.split('\n').filter((l) => l !== '').length + 1;
    expect(written.join('')).toMatch(
      new RegExp(`skipped 1 bad training row; the first:\\n.*with_bad\\.jsonl:${lineNo}`),
    );
  }, 120_000);
});
