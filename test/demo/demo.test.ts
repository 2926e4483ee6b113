// A shortened `npm run demo` (fixed seed, a few steps a stage, a small held-out set), run as the user
// runs it (node examples/demo/run.mjs): both stages train through the CLI from the shipped flawed
// base model, summary.json has the documented shape, the trainers' TensorBoard logs and the report
// (HTML, PNG plots) are written and open, and the flawed colours' held-out accuracy rises after
// each stage while the starting model's preference accuracy is exactly the tie value 0.5.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const repo = join(import.meta.dirname, '..', '..');
const out = mkdtempSync(join(tmpdir(), 'vlalign-demo-run-'));
afterAll(() => rmSync(out, { recursive: true, force: true }));

// Steps enough for the flawed colours to move on two cores; see docs/demo.md for the full run.
const FLAGS = ['--mpo-steps', '30', '--grpo-steps', '30', '--heldout-per-type', '24', '--examples', '6'];
// Plain JSON, checked field by field below.
let summary: any;
let stdout = '';

beforeAll(() => {
  const child = spawnSync(process.execPath, ['examples/demo/run.mjs', '--out', out, '--seed', '0', ...FLAGS], {
    cwd: repo,
    encoding: 'utf8',
    env: { ...process.env, NO_COLOR: '1' },
    // Every logged step prints a JSON line (no TTY): beyond spawnSync's default 1 MB buffer.
    maxBuffer: 256 * 1024 * 1024,
  });
  stdout = child.stdout;
  if (child.status !== 0) {
    throw new Error(
      `run.mjs failed (${child.status ?? child.signal} ${child.error ?? ''}): ${child.stderr.slice(-2000)}`,
    );
  }
  summary = JSON.parse(readFileSync(join(out, 'summary.json'), 'utf8'));
}, 900_000);

describe('shortened demo', () => {
  it('writes summary.json in the documented shape', () => {
    expect(Object.keys(summary).sort()).toEqual(
      ['examples', 'flawedColours', 'model', 'questionTypes', 'seed', 'stages', 'totalSeconds'].sort(),
    );
    expect(summary.seed).toBe(0);
    expect(summary.model.family).toBe('internvl_chat');
    expect(summary.model.parameters).toBeGreaterThan(500_000);
    expect(summary.questionTypes).toEqual(['colour', 'count', 'location']);
    expect(summary.flawedColours).toEqual(['orange', 'purple']);
    expect(summary.stages.map((s: { name: string }) => s.name)).toEqual(['mpo', 'grpo']);
    for (const stage of summary.stages) {
      expect(stage.steps).toBe(30);
      expect(stage.seconds).toBeGreaterThan(0);
      expect(stage.seconds).toBeLessThan(summary.totalSeconds);
      // logging_steps 5 with logging_first_step: steps 1, 5, 10, ... 30.
      expect(stage.history.map((h: { step: number }) => h.step)).toEqual([1, 5, 10, 15, 20, 25, 30]);
      for (const h of stage.history) expect(Number.isFinite(h.loss)).toBe(true);
      const metric = stage.name === 'mpo' ? 'accuracy' : 'reward';
      const other = stage.name === 'mpo' ? 'reward' : 'accuracy';
      for (const h of stage.history) {
        expect(h[metric]).toBeGreaterThanOrEqual(0);
        expect(h[metric]).toBeLessThanOrEqual(1);
        expect(h[other]).toBeNull();
      }
    }
    expect(summary.examples).toHaveLength(6);
    for (const example of summary.examples) {
      expect(existsSync(join(out, example.image))).toBe(true);
      expect(Object.keys(example.after).sort()).toEqual(['grpo', 'mpo']);
    }
  });

  it('scores the same flawed start before both stages, its preference accuracy the tie value', () => {
    const [mpo, grpo] = summary.stages;
    expect(grpo.before).toEqual(mpo.before);
    expect(mpo.before.preference).toBe(0.5);
    // The base model answers "red" / "blue" for most orange / purple shapes.
    expect(mpo.before.flawed).toBeLessThan(0.5);
  });

  it('raises the flawed colours after each stage', () => {
    for (const stage of summary.stages) {
      expect(stage.after.flawed, stage.name).toBeGreaterThan(stage.before.flawed);
    }
    expect(summary.stages[0].after.preference).toBeGreaterThan(0.5);
  });

  it('reads the examples answers off the same evaluation the table reports', () => {
    // Before answers are the base model's: a flawed-colour example answered wrongly says red / blue or another colour.
    for (const example of summary.examples) expect(typeof example.before).toBe('string');
    expect(stdout).toContain('flawed colours');
  });

  it('keeps the trainers TensorBoard logs and writes the report with decodable plots', async () => {
    for (const stage of ['mpo', 'grpo']) {
      const runs = join(out, stage, 'runs');
      expect(readdirSync(runs).some((f) => f.startsWith('events.out.tfevents'))).toBe(true);
    }
    const html = readFileSync(join(out, 'report.html'), 'utf8');
    expect(html.trimStart().toLowerCase().startsWith('<!doctype html>')).toBe(true);
    expect(html.trimEnd().endsWith('</html>')).toBe(true);
    const plots = readdirSync(join(out, 'plots')).filter((f) => f.endsWith('.png'));
    expect(plots.length).toBeGreaterThanOrEqual(3);
    for (const plot of plots) {
      expect(html).toContain(`plots/${plot}`);
      const meta = await sharp(join(out, 'plots', plot)).metadata();
      expect(meta.format).toBe('png');
      expect(meta.width).toBeGreaterThan(100);
    }
  });
});
