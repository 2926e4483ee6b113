// The report's plots without a browser: a vega-lite spec is compiled to vega, drawn by a headless
// View (renderer 'none') into an SVG string, and sharp rasterises that SVG to a PNG at twice its size
// (crisp on high-density screens; the page shows it at the SVG's size). The SVG step is exported so
// tests can read bar heights and line points before rasterising.
import sharp from 'sharp';
import { flawedLabel, stageLabel } from './table.mjs';

const SCHEMA = 'https://vega.github.io/schema/vega-lite/v5.json';
const WIDTH = 360;
const HEIGHT = 200;
const PNG_SCALE = 2;
const SERIES_COLOURS = ['#9e9e9e', '#4c78a8', '#54a24b', '#b279a2', '#eeca3b'];
const FLAWED_BACKGROUND = '#fde2c4';
const FLAWED_CATEGORY = 'flawed colours'; // short: an axis label; the subtitle names the colours
const LINE_POINTS_UP_TO = 60; // beyond this many steps the point marks only clutter the line

/**
 * Every plot of the report as `{ name, title, spec }`: per stage its loss and (when logged) its
 * reward / accuracy curves, then the held-out accuracy before and after per question type.
 */
export function reportPlots(summary) {
  const plots = [];
  for (const stage of summary.stages) {
    plots.push({ name: `${stage.name}-loss`, title: `${stageLabel(stage)}: loss`, spec: lossSpec(stage) });
    const rewards = rewardSpec(stage);
    if (rewards) plots.push({ name: `${stage.name}-rewards`, title: rewardTitle(stage), spec: rewards });
  }
  plots.push({ name: 'accuracy', title: 'Held-out accuracy before and after', spec: accuracySpec(summary) });
  return plots;
}

/** Loss over steps for one stage (null losses skipped). */
export function lossSpec(stage) {
  const values = stage.history.filter((h) => h.loss !== null).map((h) => ({ step: h.step, loss: h.loss }));
  return lineSpec(`${stageLabel(stage)}: loss`, values, 'loss', null);
}

/** The series a stage logged besides loss: MPO's rewards/accuracies, GRPO's reward mean. */
export function rewardSeries(stage) {
  const label = { reward: stage.name === 'grpo' ? 'reward mean' : 'reward', accuracy: 'rewards/accuracies' };
  return ['reward', 'accuracy']
    .filter((metric) => stage.history.some((h) => h[metric] !== null))
    .map((metric) => ({ metric, label: label[metric] }));
}

/** Reward / accuracy over steps for one stage, or null when the stage logged neither. */
export function rewardSpec(stage) {
  const series = rewardSeries(stage);
  if (series.length === 0) return null;
  const values = series.flatMap(({ metric, label }) =>
    stage.history.filter((h) => h[metric] !== null).map((h) => ({ step: h.step, value: h[metric], series: label })),
  );
  return lineSpec(
    rewardTitle(stage),
    values,
    'value',
    series.map((s) => s.label),
  );
}

function rewardTitle(stage) {
  return `${stageLabel(stage)}: ${rewardSeries(stage)
    .map((s) => s.label)
    .join(' and ')}`;
}

function lineSpec(title, values, field, seriesLabels) {
  const encoding = {
    x: { field: 'step', type: 'quantitative', title: 'step' },
    y: { field, type: 'quantitative', title: seriesLabels ? null : field, scale: { zero: false } },
  };
  if (seriesLabels) {
    encoding.color = {
      field: 'series',
      type: 'nominal',
      title: null,
      scale: { domain: seriesLabels, range: SERIES_COLOURS.slice(1) },
      legend: seriesLabels.length > 1 ? { orient: 'bottom' } : null,
    };
  }
  const steps = new Set(values.map((v) => v.step)).size;
  return {
    $schema: SCHEMA,
    title,
    width: WIDTH,
    height: HEIGHT,
    background: 'white',
    data: { values },
    mark: { type: 'line', point: steps <= LINE_POINTS_UP_TO, ...(seriesLabels ? {} : { color: SERIES_COLOURS[1] }) },
    encoding,
  };
}

/**
 * The bars of the accuracy plot as `{ category, series, accuracy, flawed }`: per question type and
 * for the flawed colours, the accuracy before and after each stage (none where it is null). Stages
 * that start from the same evaluation share one 'before' bar; otherwise each stage gets its own.
 */
export function accuracyBars(summary) {
  const categories = [
    ...summary.questionTypes.map((type) => ({ category: type, flawed: false, of: (m) => m.byType[type] })),
    { category: FLAWED_CATEGORY, flawed: true, of: (m) => m.flawed },
  ];
  const [first] = summary.stages;
  const sharedBefore = summary.stages.every((s) => categories.every((c) => c.of(s.before) === c.of(first.before)));
  const series = sharedBefore ? [{ series: 'before', metrics: first.before }] : [];
  for (const stage of summary.stages) {
    if (!sharedBefore) series.push({ series: `before ${stageLabel(stage)}`, metrics: stage.before });
    series.push({ series: `after ${stageLabel(stage)}`, metrics: stage.after });
  }
  return categories
    .flatMap((c) =>
      series.map((s) => ({ category: c.category, series: s.series, accuracy: c.of(s.metrics), flawed: c.flawed })),
    )
    .filter((bar) => bar.accuracy !== null);
}

/** Grouped bars, accuracy in [0, 1]; the flawed colours' group stands on a shaded band. */
export function accuracySpec(summary) {
  const values = accuracyBars(summary);
  const categories = [...new Set(values.map((v) => v.category))];
  const series = [...new Set(values.map((v) => v.series))];
  const x = { field: 'category', type: 'nominal', title: null, sort: categories, axis: { labelAngle: 0 } };
  return {
    $schema: SCHEMA,
    title: {
      text: 'Held-out greedy accuracy per question type',
      subtitle: `shaded: ${flawedLabel(summary)}`,
    },
    width: Math.max(WIDTH, categories.length * series.length * 28),
    height: HEIGHT,
    background: 'white',
    data: { values },
    layer: [
      {
        // The shaded band: one full-height bar behind the flawed group, hidden from screen readers.
        transform: [{ filter: 'datum.flawed' }],
        mark: { type: 'bar', color: FLAWED_BACKGROUND, aria: false },
        encoding: { x, y: { datum: 1, type: 'quantitative' } },
      },
      {
        mark: 'bar',
        encoding: {
          x,
          xOffset: { field: 'series', sort: series },
          y: { field: 'accuracy', type: 'quantitative', title: 'accuracy', scale: { domain: [0, 1] } },
          color: {
            field: 'series',
            type: 'nominal',
            title: null,
            scale: { domain: series, range: SERIES_COLOURS },
            legend: { orient: 'bottom' },
          },
        },
      },
    ],
  };
}

/** A vega-lite spec drawn to an SVG string by a headless vega View. */
export async function specToSvg(spec) {
  const { vega, vegaLite } = await loadVega();
  const view = new vega.View(vega.parse(vegaLite.compile(spec).spec), { renderer: 'none' });
  try {
    return await view.toSVG();
  } finally {
    view.finalize();
  }
}

/** The SVG's own size, from its width / height attributes. */
export function svgSize(svg) {
  const open = svg.slice(0, svg.indexOf('>'));
  const number = (name) => Number(open.match(new RegExp(`\\s${name}="([\\d.]+)"`))?.[1]);
  return { width: number('width'), height: number('height') };
}

/** An SVG rasterised to PNG bytes at PNG_SCALE times its size. */
export function svgToPng(svg) {
  return sharp(Buffer.from(svg), { density: 72 * PNG_SCALE })
    .png()
    .toBuffer();
}

// vega and vega-lite are devDependencies (the demo runs from a clone): loaded on first use, so the
// terminal table works without them and a missing install says what to do.
let vegaModules = null;
async function loadVega() {
  if (!vegaModules) {
    try {
      const [vega, vegaLite] = await Promise.all([import('vega'), import('vega-lite')]);
      vegaModules = { vega, vegaLite };
    } catch (error) {
      throw new Error(`the demo's plots need vega and vega-lite (devDependencies): run npm install (${error.message})`);
    }
  }
  return vegaModules;
}
