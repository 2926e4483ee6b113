// The demo's shapes task, checked against the pictures themselves: sharp decodes each PNG and an
// independent pixel reading (shape pixels by their saturation, colour by the nearest palette entry
// of their median, shape by how much of its bounding box it fills) must give the generator's
// answers. The written SFT data carries the documented flaw at its documented rate, and the MPO /
// GRPO / held-out files open with vlalign's readers and mean what they say.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, describe, expect, it } from 'vitest';
import { openMmpr } from '../../lib/data/mmpr.js';
import { openTrlPrompt } from '../../lib/data/trl_prompt.js';
import { openPlainDpo } from '../../lib/data/vlrlhf.js';
import { rewardRegistry } from '../../lib/rewards/registry.js';
// @ts-expect-error: plain ESM JavaScript without type declarations
import * as shapes from '../../examples/demo/shapes.mjs';
// @ts-expect-error: plain ESM JavaScript without type declarations
import { writeEvalData, writeGrpoData, writeMpoData, writeSftData } from '../../examples/demo/datasets.mjs';

const out = mkdtempSync(join(tmpdir(), 'vlalign-demo-shapes-'));
afterAll(() => rmSync(out, { recursive: true, force: true }));

const SIDE = 64;
const HALF = SIDE / 2;
const CELLS = ['top left', 'top right', 'bottom left', 'bottom right'];
// The palette as the task documents it (docs/demo.md), written out here rather than imported.
const PALETTE: Record<string, [number, number, number]> = {
  red: [215, 35, 35],
  orange: [245, 140, 20],
  yellow: [235, 215, 30],
  green: [40, 170, 60],
  blue: [35, 70, 215],
  purple: [140, 50, 190],
};

interface Seen {
  cell: number;
  colour: string;
  shape: string;
}

/** What the decoded pixels show in each occupied cell. */
async function readPicture(png: Buffer): Promise<Seen[]> {
  const { data, info } = await sharp(png).raw().toBuffer({ resolveWithObject: true });
  expect([info.width, info.height, info.channels]).toEqual([SIDE, SIDE, 3]);
  const seen: Seen[] = [];
  for (let cell = 0; cell < 4; cell++) {
    const pixels: Array<[number, number, number, number, number]> = [];
    for (let y = Math.floor(cell / 2) * HALF; y < Math.floor(cell / 2) * HALF + HALF; y++) {
      for (let x = (cell % 2) * HALF; x < (cell % 2) * HALF + HALF; x++) {
        const at = (y * SIDE + x) * 3;
        const rgb = [data[at]!, data[at + 1]!, data[at + 2]!];
        // Grey background plus noise stays near-neutral; every fill colour is strongly saturated.
        if (Math.max(...rgb) - Math.min(...rgb) > 70) pixels.push([x, y, rgb[0]!, rgb[1]!, rgb[2]!]);
      }
    }
    if (pixels.length < 30) continue;
    const median = (k: number) => pixels.map((p) => p[k]!).sort((a, b) => a - b)[pixels.length >> 1]!;
    const rgb = [median(2), median(3), median(4)];
    const colour = Object.entries(PALETTE).sort(([, a], [, b]) => distance(a, rgb) - distance(b, rgb))[0]![0];
    const xs = pixels.map((p) => p[0]);
    const ys = pixels.map((p) => p[1]);
    const box = (Math.max(...xs) - Math.min(...xs) + 1) * (Math.max(...ys) - Math.min(...ys) + 1);
    const fill = pixels.length / box;
    seen.push({ cell, colour, shape: fill > 0.92 ? 'square' : fill > 0.65 ? 'circle' : 'triangle' });
  }
  return seen;
}

const distance = (a: readonly number[], b: readonly number[]) => a.reduce((s, v, i) => s + (v - b[i]!) ** 2, 0);

/** The answer to a question, read off the pixels alone. */
function answerFromPixels(question: string, seen: Seen[]): string {
  let m = /^What colour is the shape in the (.+)\?$/.exec(question);
  if (m) return seen.find((s) => CELLS[s.cell] === m![1])?.colour ?? '(empty cell)';
  if (question === 'How many shapes are there?') return String(seen.length);
  m = /^How many (circle|square|triangle)s are there\?$/.exec(question);
  if (m) return String(seen.filter((s) => s.shape === m![1]).length);
  m = /^Where is the (\w+) (circle|square|triangle)\?$/.exec(question);
  if (m) {
    const found = seen.filter((s) => s.colour === m![1] && s.shape === m![2]);
    return found.length === 1 ? CELLS[found[0]!.cell]! : `(${found.length} matches)`;
  }
  throw new Error(`unexpected question ${question}`);
}

describe('shapes task', () => {
  it('answers every question type as the decoded pixels do', async () => {
    let checked = 0;
    for (let i = 0; i < 60; i++) {
      const scene = shapes.makeScene(shapes.seededRandom(1000 + i));
      const seen = await readPicture(await shapes.encodePng(scene));
      expect(seen.map((s) => s.cell)).toEqual(scene.objects.map((o: { cell: number }) => o.cell));
      const questions = shapes.questionsOf(scene);
      for (const q of [...questions.colour, ...questions.count, ...questions.location]) {
        expect(answerFromPixels(q.question, seen), `scene ${i}: ${q.question}`).toBe(q.answer);
        checked++;
      }
    }
    expect(checked).toBeGreaterThan(300);
  });

  it('writes the same picture for the same seed and index, and another for the next index', async () => {
    const a = shapes.sampleQuestion(3, 'x', 5, 'colour');
    const b = shapes.sampleQuestion(3, 'x', 5, 'colour');
    const c = shapes.sampleQuestion(3, 'x', 6, 'colour');
    expect(await shapes.encodePng(a.scene)).toEqual(await shapes.encodePng(b.scene));
    expect(a.q).toEqual(b.q);
    expect(await shapes.encodePng(c.scene)).not.toEqual(await shapes.encodePng(a.scene));
  });

  it('asks for the requested colour and question type', () => {
    for (let i = 0; i < 40; i++) {
      const { q } = shapes.sampleQuestion(9, 'y', i, 'colour', 'purple');
      expect([q.type, q.answer]).toEqual(['colour', 'purple']);
      expect(shapes.sampleQuestion(9, 'y', i, 'location').q.type).toBe('location');
    }
  });
});

describe('demo data sets', () => {
  it('SFT labels carry the flaw at its rate, only on orange and purple colour questions, and the truth matches the pixels', async () => {
    const file = await writeSftData(join(out, 'sft'), { seed: 4, size: 1500 });
    const rows = readFileSync(file, 'utf8')
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line));
    expect(rows).toHaveLength(1500);
    const flawedRows = rows.filter((r) => r.type === 'colour' && (r.truth === 'orange' || r.truth === 'purple'));
    const wrong = flawedRows.filter((r) => r.conversations[1].value !== r.truth);
    for (const r of wrong) expect(r.conversations[1].value).toBe(r.truth === 'orange' ? 'red' : 'blue');
    // ~167 such rows: the binomial standard deviation of the rate is about 0.03.
    expect(flawedRows.length).toBeGreaterThan(120);
    expect(wrong.length / flawedRows.length).toBeGreaterThan(0.7);
    expect(wrong.length / flawedRows.length).toBeLessThan(0.9);
    for (const r of rows.filter((row) => !flawedRows.includes(row))) expect(r.conversations[1].value).toBe(r.truth);
    expect(new Set(rows.map((r) => r.type))).toEqual(new Set(['colour', 'count', 'location']));
    for (const r of rows.slice(0, 90)) {
      const seen = await readPicture(readFileSync(join(out, 'sft', r.image)));
      const question = r.conversations[0].value.replace('<image>\n', '');
      expect(answerFromPixels(question, seen), `${r.image}: ${question}`).toBe(r.truth);
    }
  });

  it('MPO pairs open as MMPR: chosen true, rejected the flawed colour (or its over-correction) or another wrong answer', async () => {
    const meta = await writeMpoData(join(out, 'mpo'), { seed: 4, size: 60 });
    const pairs = await openMmpr(meta, { maxDynamicPatch: 1 });
    expect(pairs.length).toBe(60);
    let flawedPairs = 0;
    for (let i = 0; i < pairs.length; i++) {
      const record = (await pairs.get(i))!;
      const question = String(record.prompt[0]!.content).replace('<image>\n', '');
      const chosen = String(record.chosen[0]!.content);
      const rejected = String(record.rejected[0]!.content);
      const seen = await readPicture(readFileSync(record.images[0] as string));
      expect(answerFromPixels(question, seen)).toBe(chosen);
      expect(rejected).not.toBe(chosen);
      const colourQuestion = question.startsWith('What colour');
      if (colourQuestion && (chosen === 'orange' || chosen === 'purple')) {
        expect(rejected).toBe(chosen === 'orange' ? 'red' : 'blue');
        flawedPairs++;
      }
      // The flaw's own answers are shown too, against over-correcting them.
      if (colourQuestion && (chosen === 'red' || chosen === 'blue')) {
        expect(rejected).toBe(chosen === 'red' ? 'orange' : 'purple');
      }
    }
    expect(flawedPairs).toBeGreaterThanOrEqual(10);
  });

  it('GRPO prompts open as TRL prompt-only rows whose solution exact_match scores 1 and a wrong answer 0', async () => {
    const file = await writeGrpoData(join(out, 'grpo'), { seed: 4, size: 30 });
    const prompts = await openTrlPrompt(file);
    const reward = rewardRegistry.create('exact_match').fn;
    for (let i = 0; i < prompts.length; i++) {
      const record = (await prompts.get(i))!;
      const solution = String(record.columns.solution);
      const content = (record.prompt as Array<{ content: Array<{ type: string; text?: string }> }>)[0]!.content;
      const question = content.find((part) => part.type === 'text')!.text!;
      const seen = await readPicture(readFileSync(record.images[0] as string));
      expect(answerFromPixels(question, seen)).toBe(solution);
      const scores = await reward({
        prompts: [question, question],
        completions: [solution, `${solution}x`],
        columns: [record.columns, record.columns],
      });
      expect(scores).toEqual([1, 0]);
    }
  });

  it('the held-out set balances colours and pairs each flawed-colour question with its flawed answer', async () => {
    const files = await writeEvalData(join(out, 'heldout'), { seed: 4, perType: 12 });
    expect(files.rows).toHaveLength(36);
    const colours = files.rows
      .filter((r: { type: string }) => r.type === 'colour')
      .map((r: { answer: string }) => r.answer);
    for (const colour of Object.keys(PALETTE)) expect(colours.filter((c: string) => c === colour)).toHaveLength(2);
    const pairs = await openPlainDpo(files.pairs, { imageRoot: join(out, 'heldout') });
    expect(pairs.length).toBe(4);
    for (let i = 0; i < pairs.length; i++) {
      const record = (await pairs.get(i))!;
      const chosen = String(record.chosen[0]!.content);
      expect(String(record.rejected[0]!.content)).toBe(chosen === 'orange' ? 'red' : 'blue');
    }
  });
});
