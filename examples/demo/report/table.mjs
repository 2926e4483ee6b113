// The before / after numbers of each stage, as rows shared by the terminal table and the HTML page:
// held-out greedy accuracy per question type, the flawed colours' accuracy, overall, and held-out
// preference accuracy. Changes are in percentage points, computed from the unrounded fractions.
import { validateSummary } from './summary.mjs';

/** A stage's display name: 'mpo' → 'MPO'. */
export function stageLabel(stage) {
  return stage.name.toUpperCase();
}

/** The flawed-colours row's label, e.g. 'flawed colours (orange, purple)'. */
export function flawedLabel(summary) {
  return summary.flawedColours.length > 0 ? `flawed colours (${summary.flawedColours.join(', ')})` : 'flawed colours';
}

/**
 * Rows `{ label, before, after, delta, flawed }` for one stage: fractions (or null where a stage has
 * no value), delta in points or null. The preference row is left out when neither side has a value.
 */
export function comparisonRows(summary, stage) {
  const row = (label, before, after, flawed = false) => ({
    label,
    before,
    after,
    delta: before === null || after === null ? null : 100 * (after - before),
    flawed,
  });
  const rows = summary.questionTypes.map((type) => row(type, stage.before.byType[type], stage.after.byType[type]));
  rows.push(row(flawedLabel(summary), stage.before.flawed, stage.after.flawed, true));
  rows.push(row('overall', stage.before.overall, stage.after.overall));
  if (stage.before.preference !== null || stage.after.preference !== null) {
    rows.push(row('preference accuracy', stage.before.preference, stage.after.preference));
  }
  return rows;
}

/** '42.0%', or '–' for a missing value. */
export function formatPercent(fraction) {
  return fraction === null ? '–' : `${(100 * fraction).toFixed(1)}%`;
}

/** '+49.0 pts', '-3.5 pts', '±0.0 pts' (a change that rounds to zero), or '' for none. */
export function formatDelta(points) {
  if (points === null) return '';
  const text = Math.abs(points).toFixed(1);
  if (Number(text) === 0) return '±0.0 pts';
  return `${points > 0 ? '+' : '-'}${text} pts`;
}

/** '1.3M', '820k', '2.1B' parameters. */
export function formatCount(n) {
  if (n >= 1e9) return `${(n / 1e9).toFixed(1)}B`;
  if (n >= 1e6) return `${(n / 1e6).toFixed(1)}M`;
  if (n >= 1e3) return `${(n / 1e3).toFixed(0)}k`;
  return String(n);
}

/** One line on the run: model, size, seed, total time. */
export function runLine(summary) {
  const { model } = summary;
  return `${model.family}, ${formatCount(model.parameters)} parameters, seed ${summary.seed}, ${summary.totalSeconds.toFixed(0)} s in all`;
}

/** One line on a stage: its steps and time. */
export function stageLine(stage) {
  return `${stageLabel(stage)}: ${stage.steps} steps in ${stage.seconds.toFixed(0)} s`;
}

const ANSI = { green: '\x1b[32m', red: '\x1b[31m', bold: '\x1b[1m', reset: '\x1b[0m' };

/**
 * The terminal table as text. Without colour it reads the same: the arrow and signed deltas carry
 * the meaning; with colour, gains are green, losses red and stage headings bold.
 */
export function formatTable(summary, { colour = false } = {}) {
  const paint = (code, text) => (colour && text.trim() ? `${ANSI[code]}${text}${ANSI.reset}` : text);
  const lines = [`vlalign demo: ${runLine(summary)}`];
  for (const stage of summary.stages) {
    const rows = comparisonRows(summary, stage);
    const labelWidth = Math.max(...rows.map((r) => r.label.length));
    const line = (label, before, arrow, after, delta) =>
      `  ${label.padEnd(labelWidth)}  ${before.padStart(6)} ${arrow} ${after.padStart(6)}  ${delta}`.trimEnd();
    lines.push(
      '',
      paint('bold', stageLine(stage)),
      line('held-out accuracy', 'before', ' ', 'after', 'change'.padStart(9)),
    );
    for (const r of rows) {
      const delta = formatDelta(r.delta).padStart(9);
      const deltaColour = r.delta === null || Math.abs(r.delta) < 0.05 ? null : r.delta > 0 ? 'green' : 'red';
      lines.push(
        line(
          r.label,
          formatPercent(r.before),
          '→',
          formatPercent(r.after),
          deltaColour ? paint(deltaColour, delta) : delta,
        ),
      );
    }
  }
  return `${lines.join('\n')}\n`;
}

/** Prints the before / after table; colour only on a terminal, and never with NO_COLOR set. */
export function printTable(summary, stream = process.stdout) {
  validateSummary(summary);
  stream.write(formatTable(summary, { colour: stream.isTTY === true && !process.env.NO_COLOR }));
}
