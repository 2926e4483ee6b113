// The demo's report: report.html is well-formed and links exactly the plots and example images it
// wrote or was given; every plot PNG decodes at twice its SVG size; the SVGs' bars and lines sit
// where the summary's numbers put them; the terminal table's changes match hand-computed points;
// a bad summary fails naming its key.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { afterAll, describe, expect, it, vi } from 'vitest';
// @ts-expect-error: plain ESM JavaScript without type declarations
import * as report from '../../examples/demo/report/index.mjs';

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'vlalign-report-'));
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

const TYPES = ['colour', 'count', 'location'];
const MPO_BEFORE = { byType: { colour: 0.5, count: 0.8, location: 0.7 }, flawed: 0.05, overall: 0.6, preference: 0.5 };

/** Two stages of a few steps; GRPO logs a reward mean, MPO its rewards/accuracies. */
function makeSummary(): any {
  return {
    seed: 7,
    totalSeconds: 95.4,
    model: { family: 'qwen2_vl', parameters: 1_320_000, path: 'examples/demo/model' },
    questionTypes: [...TYPES],
    flawedColours: ['orange', 'purple'],
    stages: [
      {
        name: 'mpo',
        seconds: 30.2,
        steps: 4,
        history: [
          { step: 1, loss: 0.69, reward: null, accuracy: 0.5 },
          { step: 2, loss: 0.52, reward: null, accuracy: 0.625 },
          { step: 3, loss: 0.61, reward: null, accuracy: 0.75 },
          { step: 4, loss: 0.3, reward: null, accuracy: 1 },
        ],
        before: structuredClone(MPO_BEFORE),
        after: { byType: { colour: 0.9, count: 0.775, location: 0.7 }, flawed: 0.85, overall: 0.8, preference: 0.95 },
      },
      {
        name: 'grpo',
        seconds: 60.1,
        steps: 3,
        history: [
          { step: 2, loss: 0.01, reward: 0.25, accuracy: null },
          { step: 4, loss: -0.02, reward: 0.5, accuracy: null },
          { step: 6, loss: 0.005, reward: 0.375, accuracy: null },
        ],
        before: structuredClone(MPO_BEFORE),
        after: { byType: { colour: 0.875, count: 0.8, location: 0.725 }, flawed: 0.7, overall: 0.78, preference: null },
      },
    ],
    examples: [
      {
        image: 'images/first.png',
        question: 'What colour is the circle?',
        answer: 'orange',
        before: 'red',
        after: { mpo: 'Orange', grpo: 'orange ' },
      },
      {
        image: 'images/second shape.png',
        question: `<script>alert("x")</script> & 'how many'?`,
        answer: '3',
        before: '3',
        after: { mpo: '2', grpo: ' 3 ' },
      },
    ],
  };
}

/** A fresh output folder holding the summary's two example images (48x32, 20x20). */
async function outputFolder(): Promise<string> {
  const dir = fs.mkdtempSync(path.join(root, 'out-'));
  fs.mkdirSync(path.join(dir, 'images'));
  const solid = (width: number, height: number, r: number) =>
    sharp({ create: { width, height, channels: 3, background: { r, g: 90, b: 40 } } }).png();
  await solid(48, 32, 240).toFile(path.join(dir, 'images/first.png'));
  await solid(20, 20, 120).toFile(path.join(dir, 'images/second shape.png'));
  return dir;
}

const VOID = new Set(['meta', 'img', 'br', 'hr', 'link', 'input']);

/**
 * A strict well-formedness check for the page's own subset of HTML (no parser is installed): one
 * doctype, every attribute quoted, every non-void element closed in order, no stray '<' or '>' in
 * text. Returns the elements as `{ tag, attrs, text }` in document order.
 */
function parsePage(html: string) {
  expect(html.startsWith('<!DOCTYPE html>\n')).toBe(true);
  const body = html.slice('<!DOCTYPE html>\n'.length);
  const elements: { tag: string; attrs: Record<string, string>; parent: string | undefined }[] = [];
  const stack: string[] = [];
  const tag = /<(\/?)([a-z][a-z0-9]*)((?:\s+[a-z-]+="[^"<>]*")*)\s*>/g;
  let last = 0;
  for (let m = tag.exec(body); m; m = tag.exec(body)) {
    const text = body.slice(last, m.index);
    expect(text, `text before ${m[0]}`).not.toMatch(/[<>]/);
    last = tag.lastIndex;
    const [, closing, name, attrText] = m;
    if (closing) {
      expect(stack.pop(), `closing </${name}>`).toBe(name);
      continue;
    }
    const attrs = Object.fromEntries([...attrText!.matchAll(/([a-z-]+)="([^"]*)"/g)].map((a) => [a[1], a[2]]));
    elements.push({ tag: name!, attrs, parent: stack.at(-1) });
    if (!VOID.has(name!)) stack.push(name!);
  }
  expect(body.slice(last).trim()).toBe('');
  expect(stack).toEqual([]);
  return elements;
}

/** The bars of a vega SVG: aria-label fields and the rect's height and x. */
function svgBars(svg: string) {
  const bar = /<path aria-label="([^"]*)"[^>]*aria-roledescription="bar" d="M([\d.-]+),([\d.-]+)h([\d.-]+)v([\d.-]+)h/g;
  return [...svg.matchAll(bar)].map((m) => ({
    label: Object.fromEntries(m[1]!.split('; ').map((kv) => kv.split(': '))),
    x: Number(m[2]),
    height: Number(m[5]),
  }));
}

/** The line paths of a vega SVG: aria-label (first point's fields) and the points. */
function svgLines(svg: string) {
  const line = /<path aria-label="([^"]*)"[^>]*aria-roledescription="line mark" d="M([^"]*)"/g;
  return [...svg.matchAll(line)].map((m) => ({
    label: m[1]!,
    points: m[2]!.split('L').map((p) => p.split(',').map(Number) as [number, number]),
  }));
}

/**
 * Asserts pixel = a·value + b for one (a, b) across all pairs: the mark is an affine image of the
 * data. Vega writes SVG coordinates to 3 decimals, hence the 0.005 px tolerance.
 */
function expectAffine(values: number[], pixels: number[]) {
  const [i, j] = [values.indexOf(Math.min(...values)), values.indexOf(Math.max(...values))];
  const a = (pixels[j]! - pixels[i]!) / (values[j]! - values[i]!);
  values.forEach((v, k) => expect(pixels[k]).toBeCloseTo(pixels[i]! + a * (v - values[i]!), 2));
  return a;
}

/** The page decoded from `%20` back to file paths. */
const decode = (src: string) => decodeURIComponent(src.replaceAll('&amp;', '&'));

describe('renderReport', () => {
  it('writes a well-formed page linking exactly its plots and the example images', async () => {
    const dir = await outputFolder();
    const started = performance.now();
    const files = await report.renderReport(dir, makeSummary());
    expect(performance.now() - started).toBeLessThan(15_000); // a few seconds; generous on a shared 2-core box
    const plots = ['mpo-loss', 'mpo-rewards', 'grpo-loss', 'grpo-rewards', 'accuracy'].map((n) => `plots/${n}.png`);
    expect(files).toEqual([...plots, 'report.html'].map((f) => path.join(dir, f)));

    const html = fs.readFileSync(path.join(dir, 'report.html'), 'utf8');
    const elements = parsePage(html);
    expect(elements.filter((e) => e.tag === 'html')).toHaveLength(1);
    expect(elements.filter((e) => e.tag === 'head' || e.tag === 'body').map((e) => e.parent)).toEqual(['html', 'html']);
    expect(elements.some((e) => e.tag === 'script')).toBe(false);
    const srcs = elements.filter((e) => e.tag === 'img').map((e) => e.attrs.src);
    expect(new Set(srcs)).toEqual(new Set([...plots, 'images/first.png', 'images/second%20shape.png']));
    for (const src of srcs) expect(fs.existsSync(path.join(dir, decode(src!))), src).toBe(true);
    expect(fs.readdirSync(dir).filter((f) => f.includes('.tmp-'))).toEqual([]);
  });

  it('escapes the summary text and marks each answer right or wrong', async () => {
    const dir = await outputFolder();
    await report.renderReport(dir, makeSummary());
    const html = fs.readFileSync(path.join(dir, 'report.html'), 'utf8');
    expect(html).toContain('&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#39;how many&#39;?');
    const marks = [...html.matchAll(/<li class="(right|wrong)">([^:]*):/g)].map((m) => `${m[2]} ${m[1]}`);
    // Compared trimmed, case included, as the demo's evaluation scores answers.
    expect(marks).toEqual([
      'before wrong',
      'after MPO wrong',
      'after GRPO right',
      'before right',
      'after MPO wrong',
      'after GRPO right',
    ]);
    expect(html).toMatch(
      /<tr class="flawed"><td>flawed colours \(orange, purple\)<\/td><td>5\.0%<\/td><td>85\.0%<\/td>/,
    );
  });

  it('writes PNGs that decode at twice their SVG size', async () => {
    const dir = await outputFolder();
    await report.renderReport(dir, makeSummary());
    const html = fs.readFileSync(path.join(dir, 'report.html'), 'utf8');
    const plots = parsePage(html).filter((e) => e.tag === 'img' && e.attrs.src!.startsWith('plots/'));
    expect(plots).toHaveLength(5);
    for (const img of plots) {
      const meta = await sharp(path.join(dir, img.attrs.src!)).metadata();
      expect([meta.format, meta.width, meta.height], img.attrs.src).toEqual([
        'png',
        2 * Number(img.attrs.width),
        2 * Number(img.attrs.height),
      ]);
      expect(Number(img.attrs.width)).toBeGreaterThan(360); // the plot's width plus its axes
    }
  });

  it('fails before writing anything when an example image is missing', async () => {
    const dir = await outputFolder();
    fs.rmSync(path.join(dir, 'images/second shape.png'));
    await expect(report.renderReport(dir, makeSummary())).rejects.toThrow(
      `summary.examples[1].image: no file at ${path.join(dir, 'images/second shape.png')}`,
    );
    expect(fs.readdirSync(dir)).toEqual(['images']);
  });
});

describe('plots', () => {
  it('draws each accuracy bar at the summary value, one shared before bar, the flawed group shaded', async () => {
    const summary = makeSummary();
    const spec = report.accuracySpec(summary);
    const svg: string = await report.specToSvg(spec);
    const bars = svgBars(svg);
    const expected: Record<string, number[]> = {
      // before, after MPO, after GRPO
      colour: [0.5, 0.9, 0.875],
      count: [0.8, 0.775, 0.8],
      location: [0.7, 0.7, 0.725],
      'flawed colours': [0.05, 0.85, 0.7],
    };
    const series = ['before', 'after MPO', 'after GRPO'];
    expect(bars).toHaveLength(12);
    for (const [category, values] of Object.entries(expected)) {
      const group = bars.filter((b) => b.label.category === category);
      expect(group.map((b) => b.label.series)).toEqual(series);
      group.forEach((b, k) => expect(b.height).toBeCloseTo(values[k]! * spec.height, 6));
      expect(group.map((b) => b.x)).toEqual([...group.map((b) => b.x)].sort((p, q) => p - q));
    }
    // The shading: one unlabelled full-height bar per flawed row of the data (one per series).
    const shade = [...svg.matchAll(/<path d="M[\d.]+,0h[\d.]+v([\d.]+)h[^"]*" fill="#fde2c4"/g)];
    expect(shade.map((m) => Number(m[1]))).toEqual([spec.height, spec.height, spec.height]);
  });

  it('leaves out the bars of a null accuracy (no held-out question of that kind)', () => {
    const summary = makeSummary();
    summary.stages[1].after.flawed = null;
    const flawed = report.accuracyBars(summary).filter((b: any) => b.flawed);
    expect(flawed.map((b: any) => b.series)).toEqual(['before', 'after MPO']);
    expect(report.formatTable(summary)).toMatch(/flawed colours \(orange, purple\)\s+5\.0% →\s+–\n/);
  });

  it('gives each stage its own before bar when the stages start from different evaluations', () => {
    const summary = makeSummary();
    summary.stages[1].before.byType.count = 0.6;
    const bars = report.accuracyBars(summary).filter((b: any) => b.category === 'count');
    expect(bars.map((b: any) => [b.series, b.accuracy])).toEqual([
      ['before MPO', 0.8],
      ['after MPO', 0.775],
      ['before GRPO', 0.6],
      ['after GRPO', 0.8],
    ]);
  });

  it('draws loss and reward lines through the logged points, x and y affine in step and value', async () => {
    const summary = makeSummary();
    for (const stage of summary.stages) {
      const [loss] = svgLines(await report.specToSvg(report.lossSpec(stage)));
      const steps = stage.history.map((h: any) => h.step);
      expect(
        expectAffine(
          steps,
          loss!.points.map((p) => p[0]),
        ),
      ).toBeGreaterThan(0);
      // SVG y grows downwards: a higher loss is drawn higher up.
      expect(
        expectAffine(
          stage.history.map((h: any) => h.loss),
          loss!.points.map((p) => p[1]),
        ),
      ).toBeLessThan(0);
    }
    const [mpo, grpo] = summary.stages;
    const [accuracy] = svgLines(await report.specToSvg(report.rewardSpec(mpo)));
    expect(accuracy!.label).toContain('series: rewards/accuracies');
    expectAffine(
      [0.5, 0.625, 0.75, 1],
      accuracy!.points.map((p) => p[1]),
    );
    const [reward] = svgLines(await report.specToSvg(report.rewardSpec(grpo)));
    expect(reward!.label).toContain('series: reward mean');
    expect(reward!.points).toHaveLength(3);
    expectAffine(
      [0.25, 0.5, 0.375],
      reward!.points.map((p) => p[1]),
    );
  });

  it('skips the rewards plot of a stage that logged neither reward nor accuracy, and null losses', () => {
    const summary = makeSummary();
    summary.stages[1].history.forEach((h: any) => {
      h.reward = null;
    });
    summary.stages[0].history[1].loss = null;
    expect(report.reportPlots(summary).map((p: any) => p.name)).toEqual([
      'mpo-loss',
      'mpo-rewards',
      'grpo-loss',
      'accuracy',
    ]);
    expect(report.lossSpec(summary.stages[0]).data.values.map((v: any) => v.step)).toEqual([1, 3, 4]);
  });
});

describe('formatTable / printTable', () => {
  it('shows before → after with the change in points, computed from the unrounded fractions', () => {
    const summary = makeSummary();
    summary.stages[0].before.byType.count = 0.123;
    summary.stages[0].after.byType.count = 0.456; // +33.3
    summary.stages[1].after.byType.colour = 0.50004; // rounds to no change
    const lines = report.formatTable(summary).split('\n');
    expect(lines[0]).toBe('vlalign demo: qwen2_vl, 1.3M parameters, seed 7, 95 s in all');
    const row = (label: string, from: number) => lines.slice(from).find((l: string) => l.trimStart().startsWith(label));
    const mpo = lines.indexOf('MPO: 4 steps in 30 s');
    const grpo = lines.indexOf('GRPO: 3 steps in 60 s');
    expect(mpo).toBeGreaterThan(0);
    expect(grpo).toBeGreaterThan(mpo);
    const cells = (label: string, from: number) =>
      row(label, from)!
        .slice(label.length + 2)
        .trim()
        .split(/\s+/);
    expect(cells('colour', mpo)).toEqual(['50.0%', '→', '90.0%', '+40.0', 'pts']);
    expect(cells('count', mpo)).toEqual(['12.3%', '→', '45.6%', '+33.3', 'pts']);
    expect(cells('location', mpo)).toEqual(['70.0%', '→', '70.0%', '±0.0', 'pts']);
    expect(cells('flawed colours (orange, purple)', mpo)).toEqual(['5.0%', '→', '85.0%', '+80.0', 'pts']);
    expect(cells('preference accuracy', mpo)).toEqual(['50.0%', '→', '95.0%', '+45.0', 'pts']);
    expect(cells('colour', grpo)).toEqual(['50.0%', '→', '50.0%', '±0.0', 'pts']);
    expect(cells('count', grpo)).toEqual(['80.0%', '→', '80.0%', '±0.0', 'pts']);
    expect(cells('flawed colours (orange, purple)', grpo)).toEqual(['5.0%', '→', '70.0%', '+65.0', 'pts']);
    expect(cells('overall', grpo)).toEqual(['60.0%', '→', '78.0%', '+18.0', 'pts']);
    expect(cells('preference accuracy', grpo)).toEqual(['50.0%', '→', '–']);
    // The arrows line up: one column for every row of a stage.
    const arrows = lines.slice(mpo + 2, grpo - 1).map((l: string) => l.indexOf('→'));
    expect(new Set(arrows).size).toBe(1);
  });

  it('shows a loss as a negative change and leaves out a preference row without values', () => {
    const summary = makeSummary();
    summary.stages[0].after.byType.count = 0.775; // from 0.8
    summary.stages[0].before.preference = null;
    summary.stages[0].after.preference = null;
    const text = report.formatTable(summary);
    expect(text).toMatch(/count\s+80\.0% →\s+77\.5%\s+-2\.5 pts\n/);
    expect(text.split('GRPO')[0]).not.toContain('preference');
  });

  it('colours only on a terminal without NO_COLOR', () => {
    const written = (isTTY: boolean) => {
      let out = '';
      report.printTable(makeSummary(), { isTTY, write: (s: string) => (out += s) });
      return out;
    };
    vi.stubEnv('NO_COLOR', '');
    try {
      expect(written(false)).not.toContain('\x1b[');
      expect(written(false)).toBe(report.formatTable(makeSummary()));
      expect(written(true)).toContain('\x1b[32m+40.0 pts\x1b[0m');
      vi.stubEnv('NO_COLOR', '1');
      expect(written(true)).not.toContain('\x1b[');
    } finally {
      vi.unstubAllEnvs();
    }
  });
});

describe('validateSummary', () => {
  const cases: [string, (s: any) => void, string][] = [
    [
      'after.byType missing',
      (s) => delete s.stages[1].after.byType,
      'summary.stages[1].after.byType: expected an object, got undefined',
    ],
    [
      'accuracy above 1',
      (s) => (s.stages[0].before.byType.count = 1.5),
      'summary.stages[0].before.byType.count: expected a number in [0, 1] or null, got 1.5',
    ],
    [
      'a question type without accuracy',
      (s) => s.questionTypes.push('shape'),
      'summary.stages[0].before.byType.shape: expected a number in [0, 1] or null, got undefined',
    ],
    [
      'a loss as text',
      (s) => (s.stages[0].history[2].loss = 'x'),
      'summary.stages[0].history[2].loss: expected a finite number or null, got "x"',
    ],
    [
      'an answer missing for a stage',
      (s) => delete s.examples[0].after.grpo,
      'summary.examples[0].after.grpo: expected a string, got undefined',
    ],
    ['no question types', (s) => (s.questionTypes = []), 'summary.questionTypes: expected a non-empty array, got []'],
    ['stages not an array', (s) => (s.stages = {}), 'summary.stages: expected an array, got {}'],
    [
      'a stage named twice',
      (s) => (s.stages[1].name = 'mpo'),
      'summary.stages[].name: expected distinct values, got "mpo" twice',
    ],
    [
      'an absolute image path',
      (s) => (s.examples[1].image = '/tmp/x.png'),
      'summary.examples[1].image: expected a path relative to the output folder, got "/tmp/x.png"',
    ],
    [
      'model parameters missing',
      (s) => delete s.model.parameters,
      'summary.model.parameters: expected a finite number, got undefined',
    ],
  ];
  it.each(cases)('names the key: %s', (_, spoil, message) => {
    const summary = makeSummary();
    spoil(summary);
    expect(() => report.validateSummary(summary)).toThrow(message);
    expect(() => report.printTable(summary, { write: () => {} })).toThrow(message);
  });

  it('accepts the summary the tests render', () => {
    expect(report.validateSummary(makeSummary())).toBeTruthy();
  });

  it('rejects in renderReport before writing anything', async () => {
    const dir = await outputFolder();
    const summary = makeSummary();
    delete summary.stages[1].after.byType;
    await expect(report.renderReport(dir, summary)).rejects.toThrow(
      'summary.stages[1].after.byType: expected an object',
    );
    expect(fs.readdirSync(dir)).toEqual(['images']);
  });
});
