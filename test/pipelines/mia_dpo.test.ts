// `runMiaDpo` end to end with a scripted engine (the attention maps chosen by the test): one
// candidate per row and form, companions from the same source folder (else the whole input),
// prompts naming the target's position, the grid / pic-in-pic pictures written, noise shown to the
// model only, MIA-DPO's skips (answers of 512+ characters, boxes out of grid and pic-in-pic), the
// keep rule applied, the DPO JSON as make_data_*.py dump it, MMPR jsonl that our reader opens,
// reproducible by seed; bad rows named by file and line; and `vlalign data mia-dpo` on a tiny
// Qwen2-VL SIGKILLed after a batch, rerun: the same files as an uninterrupted run.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openDataset } from '../../lib/data/open.js';
import type { PreferenceRecord } from '../../lib/data/records.js';
import { runMiaDpo } from '../../lib/pipelines/mia_dpo.js';
import { gridLayout } from '../../lib/pipelines/mia_dpo_images.js';
import type { InspectingEngine, InspectRequest } from '../../lib/pipelines/mia_dpo_select.js';
import { writeTinyCheckpoint } from '../../lib/tiny/index.js';

const repo = path.resolve(import.meta.dirname, '../..');
const root = fs.mkdtempSync(path.join(os.tmpdir(), 'vlalign-mia-dpo-'));
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

const readJsonl = (file: string) =>
  fs
    .readFileSync(file, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as Record<string, unknown>);

// 6 coco pictures and 4 gqa ones of distinct colours and shapes.
const IMAGES = [
  ...Array.from({ length: 6 }, (_, i) => `coco/c${i}.png`),
  ...Array.from({ length: 4 }, (_, i) => `gqa/g${i}.png`),
];
beforeAll(async () => {
  for (const [i, image] of IMAGES.entries()) {
    fs.mkdirSync(path.join(root, path.dirname(image)), { recursive: true });
    await sharp({
      create: {
        width: 60 + 20 * i,
        height: 80 + 10 * (i % 3),
        channels: 3,
        background: { r: 20 * i, g: 100, b: 200 - 15 * i },
      },
    })
      .png()
      .toFile(path.join(root, image));
  }
  pool = path.join(root, 'pool.txt');
  fs.writeFileSync(pool, `${IMAGES.join('\n')}\n`);
});

const ROWS = [
  { id: 'r0', image: 'coco/c0.png', question: '<image>\nWhat colour is the sky?', chosen: 'Blue.' },
  { id: 'r1', image: 'coco/c1.png', question: 'Where is the dog [0.1, 0.2, 0.5, 0.6]?\n<image>', chosen: 'Left.' },
  { id: 'r2', image: 'gqa/g0.png', question: '<image>\nIs it day?', chosen: 'x'.repeat(512) },
  { id: 'r3', image: 'gqa/g1.png', question: '<image>\nCount the cars.', chosen: 'Three.' },
];
let pool = '';
const writeInput = (name: string, rows: unknown[]) => {
  const file = path.join(root, name);
  fs.writeFileSync(file, rows.map((r) => `${JSON.stringify(r)}\n`).join(''));
  return file;
};

/** Uniform 24 x 24 maps: the target's share is 1/n (sequence), its block (grid), 256/576 (pic-in-pic). */
function scripted(seen: InspectRequest[]): InspectingEngine {
  return {
    async inspect(requests) {
      seen.push(...requests);
      return requests.map((r) => ({
        // r3's answers equal its ground truth: never kept
        response: r.question.includes('count the cars') ? 'Three.' : 'Something else.',
        maps: r.images.map(() => ({ rows: 24, cols: 24, values: new Float64Array(576).fill(1 / 576) })),
        ppl: 1.5,
      }));
    },
  };
}

describe('runMiaDpo with a scripted engine', () => {
  it('writes one candidate per row and form, the pictures, the DPO JSON and MMPR data', async () => {
    const input = writeInput('rows.jsonl', ROWS);
    const outDir = path.join(root, 'out');
    const seen: InspectRequest[] = [];
    const summary = await runMiaDpo({ input, outDir, engine: scripted(seen), poolFile: pool, seed: 7, batchSize: 3 });
    expect(summary).toMatchObject({ rows: 4, resumed: 0, lines: 12, kept: { sequence: 2, grid: 1, pip: 1 } });
    const lines = readJsonl(path.join(outDir, 'candidates.jsonl'));
    expect(lines.map((l) => [l.id, l.form])).toEqual(
      ROWS.flatMap((r) => ['sequence', 'grid', 'pip'].map((f) => [r.id, f])),
    );
    // skips: r1's box (grid, pip), r2's 512-character answer (all forms); r3 answered but equal to gt
    const skipped = lines.filter((l) => l.skipped !== undefined).map((l) => `${l.id} ${l.form}`);
    expect(skipped).toEqual(['r1 grid', 'r1 pip', 'r2 sequence', 'r2 grid', 'r2 pip']);
    expect(lines.filter((l) => l.kept).map((l) => `${l.id} ${l.form}`)).toEqual([
      'r0 sequence',
      'r0 grid',
      'r0 pip',
      'r1 sequence',
    ]);
    expect(seen).toHaveLength(12 - 5);

    for (const line of lines) {
      const count = line.count as number;
      const target = line.target as number;
      if (line.form === 'sequence') {
        const list = line.image as string[];
        expect(list).toHaveLength(count);
        expect(list[target - 1]).toBe(line.source_image);
        expect(new Set(list).size).toBe(count);
        const tags = list.map((_, i) => `Image${i + 1}:<image>\n`).join('');
        expect(line.prompt).toBe(`${tags}In Image${target}, ${lowerFirstQuestion(line.question as string)}`);
      } else if (line.form === 'grid') {
        const list = line.image_list as string[];
        expect(list[target - 1]).toBe(line.source_image);
        expect(line.prompt).toBe(`<image>\nIn Image${target}, ${lowerFirstQuestion(line.question as string)}`);
        if (line.skipped === undefined) {
          const meta = await sharp(path.join(outDir, (line.image as string[])[0]!)).metadata();
          const layout = gridLayout(count);
          expect([meta.width, meta.height]).toEqual([layout.width, layout.height]);
        }
      } else {
        expect(line.prompt).toMatch(/^<image>\n[A-Z][a-z ]+, [a-z]/);
        expect((line.image_list as string[])[0]).toBe(line.source_image);
      }
      // same source folder when it has enough pictures (coco: 6, gqa: 4)
      const companions = ((line.form === 'sequence' ? line.image : line.image_list) as string[]).filter(
        (p) => p !== line.source_image,
      );
      const folder = (line.source_image as string).split('/')[0];
      const poolSize = IMAGES.filter((p) => p.startsWith(`${folder}/`)).length - 1;
      if (companions.length <= poolSize) expect(companions.every((p) => p.startsWith(`${folder}/`))).toBe(true);
    }
    // the model saw noisy decoded pictures for grid and pic-in-pic, files for the sequence
    const answered = lines.filter((l) => l.skipped === undefined);
    seen.forEach((request, i) => {
      const form = answered[i]!.form;
      expect(
        request.images.every((im) => (form === 'sequence' ? typeof im === 'string' : typeof im === 'object')),
      ).toBe(true);
    });

    // MIA-DPO's DPO JSON: exactly its keys, `<image-placeholder>` for each image
    const dpo = JSON.parse(fs.readFileSync(path.join(outDir, 'mia_dpo_sequence.json'), 'utf8'));
    const keptSequences = lines.filter((l) => l.kept && l.form === 'sequence');
    expect(dpo).toEqual(
      keptSequences.map((l) => ({
        id: l.id,
        image: l.image,
        prompt: (l.prompt as string).replaceAll('<image>', '<image-placeholder>'),
        chosen: l.gt,
        rejected: 'Something else.',
        gt: l.gt,
      })),
    );
    expect(dpo[0].chosen).toBe('Blue.');
    // MMPR data through our reader: sequence paths under the image root, pictures under the output
    const dataset = await openDataset({ format: 'mmpr', path: path.join(outDir, 'meta.json') });
    expect(dataset.length).toBe(4);
    const records: PreferenceRecord[] = [];
    for (let i = 0; i < dataset.length; i++) records.push((await dataset.get(i)) as PreferenceRecord);
    expect(records.map((r) => r.images.length).sort()).toEqual(
      [1, 1, ...keptSequences.map((l) => l.count as number)].sort(),
    );
    for (const r of records) {
      expect(r.rejected).toEqual([{ role: 'assistant', content: 'Something else.' }]);
      for (const image of r.images) expect(fs.existsSync(image as string)).toBe(true);
    }

    // reproducible: the same seed gives the same candidates and pictures; another seed other draws
    const again = path.join(root, 'out_again');
    await runMiaDpo({ input, outDir: again, engine: scripted([]), poolFile: pool, seed: 7, batchSize: 2 });
    expect(fs.readFileSync(path.join(again, 'candidates.jsonl'), 'utf8')).toBe(
      fs.readFileSync(path.join(outDir, 'candidates.jsonl'), 'utf8'),
    );
    const other = path.join(root, 'out_other');
    await runMiaDpo({ input, outDir: other, engine: scripted([]), poolFile: pool, seed: 8 });
    expect(fs.readFileSync(path.join(other, 'candidates.jsonl'), 'utf8')).not.toBe(
      fs.readFileSync(path.join(outDir, 'candidates.jsonl'), 'utf8'),
    );
  }, 120_000);

  it('applies the thresholds to the measured share: a target holding most attention is not kept', async () => {
    const input = writeInput('one.jsonl', [ROWS[0]]);
    const focused: InspectingEngine = {
      async inspect(requests) {
        return requests.map(() => ({
          response: 'Something else.',
          // everything on the central block: pic-in-pic share 1.0 (not < 0.8)
          maps: [
            {
              rows: 24,
              cols: 24,
              values: Float64Array.from({ length: 576 }, (_, i) => {
                const [y, x] = [Math.floor(i / 24), i % 24];
                return y >= 4 && y < 20 && x >= 4 && x < 20 ? 1 : 0;
              }),
            },
          ],
          ppl: 1.5,
        }));
      },
    };
    const outDir = path.join(root, 'focused');
    await runMiaDpo({ input, outDir, engine: focused, poolFile: pool, forms: ['pip'], noise: false });
    const [line] = readJsonl(path.join(outDir, 'candidates.jsonl'));
    expect([line!.ratio, line!.kept]).toEqual([1, false]);
  });

  it('names the file and line of bad rows', async () => {
    const engine = scripted([]);
    const noChosen = writeInput('bad1.jsonl', [ROWS[0], { image: 'coco/c2.png', question: 'q?' }]);
    await expect(runMiaDpo({ input: noChosen, outDir: path.join(root, 'bad1'), engine })).rejects.toThrow(
      `${noChosen}:2: "chosen" must be a string, got nothing`,
    );
    const twoImages = writeInput('bad2.jsonl', [{ image: ['coco/c0.png', 'coco/c1.png'], question: 'q', chosen: 'a' }]);
    await expect(runMiaDpo({ input: twoImages, outDir: path.join(root, 'bad2'), engine })).rejects.toThrow(
      `${twoImages}:1: MIA-DPO takes single-image rows; this one has 2`,
    );
    const missing = writeInput('bad3.jsonl', [{ image: 'coco/none.png', question: 'q', chosen: 'a' }, ROWS[0]]);
    await expect(
      runMiaDpo({ input: missing, outDir: path.join(root, 'bad3'), engine, poolFile: pool, forms: ['sequence'] }),
    ).rejects.toThrow(`${missing}:1: image "coco/none.png" not found`);
    const lonely = writeInput('bad4.jsonl', [{ image: 'coco/c0.png', question: 'q', chosen: 'a' }]);
    await expect(runMiaDpo({ input: lonely, outDir: path.join(root, 'bad4'), engine })).rejects.toThrow(
      `${lonely}:1: needs`,
    );
  });
});

const lowerFirstQuestion = (q: string) => {
  const text = q.replaceAll('<image>\n', '').replaceAll('<image>', '');
  return text.charAt(0).toLowerCase() + text.slice(1);
};

describe('vlalign data mia-dpo resumes after SIGKILL', () => {
  const runTs = path.join(repo, 'test/train/fixtures/run_ts.mjs');
  const child = path.join(import.meta.dirname, 'fixtures/data_child.ts');
  const cli = (args: string[], env: Record<string, string> = {}) => {
    const run = spawnSync(process.execPath, [runTs, child, ...args], {
      cwd: repo,
      env: { ...process.env, OMP_NUM_THREADS: '1', ...env },
      encoding: 'utf8',
      maxBuffer: 64 << 20,
    });
    return { status: run.status, signal: run.signal, output: `${run.stdout}\n${run.stderr}` };
  };

  it('on a tiny Qwen2-VL: killed after its first batch, rerun: the same files as an uninterrupted run', async () => {
    const model = path.join(root, 'tiny');
    await writeTinyCheckpoint(model, 'qwen2_vl', { seed: 4 });
    const input = writeInput('cli.jsonl', [ROWS[0], ROWS[3], { ...ROWS[0], id: 'r4', image: 'coco/c3.png' }]);
    const args = (out: string) => [
      'mia-dpo',
      '--model',
      model,
      '--input',
      input,
      '--out',
      out,
      '--forms',
      'sequence,pip',
      '--layer',
      '1',
      '--max-new-tokens',
      '4',
      '--batch-size',
      '1',
      '--seed',
      '2',
      '--pool',
      pool,
    ];
    const whole = path.join(root, 'cli_whole');
    const first = cli(args(whole));
    expect({ status: first.status, signal: first.signal }, first.output).toEqual({ status: 0, signal: null });
    const killedDir = path.join(root, 'cli_killed');
    const killed = cli(args(killedDir), { PIPELINE_KILL_AFTER_BATCH: '1' });
    expect({ status: killed.status, signal: killed.signal }, killed.output).toEqual({
      status: null,
      signal: 'SIGKILL',
    });
    expect(readJsonl(path.join(killedDir, 'candidates.jsonl'))).toHaveLength(2);
    const resumed = cli(args(killedDir));
    expect({ status: resumed.status, signal: resumed.signal }, resumed.output).toEqual({ status: 0, signal: null });
    expect(resumed.output).toContain('3 rows (1 resumed), 6 candidates');
    for (const file of ['candidates.jsonl', 'mia_dpo_sequence.json', 'mia_dpo_pip.json', 'mia_dpo_pip.jsonl']) {
      expect(fs.readFileSync(path.join(killedDir, file), 'utf8'), file).toBe(
        fs.readFileSync(path.join(whole, file), 'utf8'),
      );
    }
    const candidates = readJsonl(path.join(whole, 'candidates.jsonl'));
    expect(candidates.every((c) => typeof c.rejected === 'string' && typeof c.ppl === 'number')).toBe(true);
  }, 480_000);
});
