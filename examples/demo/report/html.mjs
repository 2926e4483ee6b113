// The report page: one self-contained HTML file with inline CSS and no scripts; the plots are PNGs
// beside it (plots/) and the example images are linked by their paths relative to the page.
import { escapeHtml } from './escape.mjs';
import { exampleGrid } from './grid.mjs';
import { comparisonRows, formatDelta, formatPercent, runLine, stageLabel, stageLine } from './table.mjs';

const STYLE = `
body { font: 15px/1.45 system-ui, sans-serif; color: #222; margin: 2em auto; max-width: 1100px; padding: 0 1em; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; } h2 { margin-top: 1.8em; border-bottom: 1px solid #ddd; }
.run { color: #555; margin-top: 0; }
.tables, .plots { display: flex; flex-wrap: wrap; gap: 1.5em 2.5em; align-items: flex-start; }
table { border-collapse: collapse; } caption { font-weight: 600; text-align: left; padding-bottom: 0.3em; }
th, td { padding: 0.2em 0.8em; text-align: right; } th:first-child, td:first-child { text-align: left; }
thead th { border-bottom: 1px solid #999; } tr.flawed { background: #fde2c4; }
.gain { color: #1b7f2a; } .loss { color: #b3261e; }
figure { margin: 0; } .plots img { max-width: 100%; height: auto; }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(200px, 1fr)); gap: 1em; }
.example { border: 1px solid #ddd; border-radius: 6px; padding: 0.6em; }
.example img { width: 100%; image-rendering: pixelated; border-radius: 4px; }
.example p { margin: 0.3em 0; } .example ul { list-style: none; padding: 0; margin: 0.3em 0 0; }
.right { color: #1b7f2a; } .wrong { color: #b3261e; }
`;

/** The whole page; `plots` are `{ name, file, title, width, height }` with `file` relative to the page. */
export function reportHtml(summary, plots) {
  const grid = exampleGrid(summary);
  const accuracy = plots.filter((plot) => plot.name === 'accuracy');
  const training = plots.filter((plot) => plot.name !== 'accuracy');
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>vlalign demo report</title>
<style>${STYLE}</style>
</head>
<body>
<h1>vlalign demo: aligning a flawed vision-language model</h1>
<p class="run">${escapeHtml(runLine(summary))}; model at <code>${escapeHtml(summary.model.path)}</code></p>
<h2>Before and after</h2>
<div class="tables">
${summary.stages.map((stage) => stageTable(summary, stage)).join('\n')}
${accuracy.map(plotFigure).join('\n')}
</div>
<h2>Training</h2>
<div class="plots">
${training.map(plotFigure).join('\n')}
</div>
<h2>Held-out examples</h2>
${grid || '<p>No examples in the summary.</p>'}
</body>
</html>
`;
}

function stageTable(summary, stage) {
  const rows = comparisonRows(summary, stage).map((r) => {
    const change = r.delta === null || Math.abs(r.delta) < 0.05 ? '' : r.delta > 0 ? ' class="gain"' : ' class="loss"';
    return `<tr${r.flawed ? ' class="flawed"' : ''}><td>${escapeHtml(r.label)}</td><td>${formatPercent(r.before)}</td><td>${formatPercent(r.after)}</td><td${change}>${formatDelta(r.delta)}</td></tr>`;
  });
  return `<table>
<caption>${escapeHtml(stageLine(stage))}</caption>
<thead><tr><th>held-out accuracy</th><th>before</th><th>after ${escapeHtml(stageLabel(stage))}</th><th>change</th></tr></thead>
<tbody>
${rows.join('\n')}
</tbody>
</table>`;
}

function plotFigure(plot) {
  return `<figure><img src="${escapeHtml(plot.file)}" width="${plot.width}" height="${plot.height}" alt="${escapeHtml(plot.title)}"></figure>`;
}
