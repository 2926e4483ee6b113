// What the demo's user sees at the end: a before / after table in the terminal (printTable) and
// demo-output/report.html with PNG plots and a grid of held-out examples (renderReport). Both take
// the summary that run.mjs writes to demo-output/summary.json and check its shape first.
import fs from 'node:fs';
import path from 'node:path';
// The shared atomic writer, by its path in dist/: the package entry would also load the libtorch
// addon, which the report does not need.
import { writeAtomic } from '../../../dist/util/atomic_write.js';
import { reportHtml } from './html.mjs';
import { reportPlots, specToSvg, svgSize, svgToPng } from './plots.mjs';
import { validateSummary } from './summary.mjs';

export { accuracyBars, accuracySpec, lossSpec, reportPlots, rewardSpec, specToSvg, svgToPng } from './plots.mjs';
export { validateSummary } from './summary.mjs';
export { formatTable, printTable } from './table.mjs';

/**
 * Writes `outDir`/report.html and its plots as `outDir`/plots/<name>.png (each atomically) and
 * returns the paths written, plots first. The examples' images must already lie at their paths
 * relative to `outDir`.
 */
export async function renderReport(outDir, summary) {
  validateSummary(summary);
  checkExampleImages(outDir, summary);
  fs.mkdirSync(path.join(outDir, 'plots'), { recursive: true });
  const plots = await Promise.all(reportPlots(summary).map((plot) => renderPlot(outDir, plot)));
  const page = path.join(outDir, 'report.html');
  writeAtomic(page, reportHtml(summary, plots));
  return [...plots.map((plot) => path.join(outDir, plot.file)), page];
}

async function renderPlot(outDir, { name, title, spec }) {
  const svg = await specToSvg(spec);
  const file = `plots/${name}.png`;
  writeAtomic(path.join(outDir, file), await svgToPng(svg));
  return { name, file, title, ...svgSize(svg) };
}

function checkExampleImages(outDir, summary) {
  summary.examples.forEach((example, i) => {
    const file = path.join(outDir, example.image);
    if (!fs.existsSync(file)) throw new Error(`summary.examples[${i}].image: no file at ${file}`);
  });
}
