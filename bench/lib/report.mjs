// Shared helpers for the benchmarks: timing, medians, command-line flags, a plain-text table, and
// the single JSON line each benchmark prints last on stdout.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';

/** Median of a list of numbers (mean of the middle two for an even count). */
export function median(values) {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((x, y) => x - y);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

/** Seconds elapsed while running fn once (monotonic clock). */
export function timeOnce(fn) {
  const start = process.hrtime.bigint();
  fn();
  return Number(process.hrtime.bigint() - start) / 1e9;
}

/**
 * Runs `rep` (one timed loop) `warmup` times untimed, then `reps` times timed; returns the seconds
 * of each timed rep.
 */
export function timeReps(rep, { warmup = 1, reps = 7 } = {}) {
  for (let k = 0; k < warmup; k++) rep();
  const seconds = [];
  for (let k = 0; k < reps; k++) seconds.push(timeOnce(rep));
  return seconds;
}

/** `--name value` and `--name=value` flags as a Map (a bare `--name` maps to 'true'). */
export function parseFlags(argv = process.argv.slice(2)) {
  const flags = new Map();
  for (let k = 0; k < argv.length; k++) {
    const arg = argv[k];
    if (!arg.startsWith('--')) throw new Error(`unexpected argument ${JSON.stringify(arg)}`);
    const eq = arg.indexOf('=');
    if (eq > 0) flags.set(arg.slice(2, eq), arg.slice(eq + 1));
    else if (k + 1 < argv.length && !argv[k + 1].startsWith('--')) flags.set(arg.slice(2), argv[++k]);
    else flags.set(arg.slice(2), 'true');
  }
  return flags;
}

/** A positive integer flag, or `fallback` when absent. */
export function intFlag(flags, name, fallback) {
  if (!flags.has(name)) return fallback;
  const value = Number(flags.get(name));
  if (!Number.isInteger(value) || value <= 0)
    throw new Error(`--${name} expects a positive integer, got ${flags.get(name)}`);
  return value;
}

/** Rounds to `digits` significant digits, keeping numbers as numbers (NaN/Infinity become null). */
export function sig(value, digits = 4) {
  if (typeof value !== 'number' || !Number.isFinite(value)) return null;
  return Number(value.toPrecision(digits));
}

/** Formats a number for a table cell. */
export function fmt(value, digits = 3) {
  if (typeof value !== 'number') return String(value ?? '-');
  if (!Number.isFinite(value)) return '-';
  const abs = Math.abs(value);
  if (abs >= 100) return value.toFixed(1);
  if (abs >= 10) return value.toFixed(2);
  return value.toFixed(digits);
}

/** A plain-text table: `columns` are header strings, `rows` arrays of cells (strings or numbers). */
export function table(columns, rows) {
  const cells = rows.map((row) => row.map((cell) => (typeof cell === 'number' ? fmt(cell) : String(cell ?? '-'))));
  const widths = columns.map((header, c) => Math.max(header.length, ...cells.map((row) => row[c].length)));
  const line = (row) =>
    row
      .map((cell, c) => (c === 0 ? cell.padEnd(widths[c]) : cell.padStart(widths[c])))
      .join('  ')
      .trimEnd();
  return [line(columns), widths.map((w) => '-'.repeat(w)).join('  '), ...cells.map(line)].join('\n');
}

/** Prints the benchmark's result object as one JSON line; call it last. */
export function printJsonLine(result) {
  process.stdout.write(`${JSON.stringify(result)}\n`);
}

/**
 * Runs a Python peer script and returns the object in the last JSON line of its stdout.
 * The interpreter is $PYTHON, else /usr/bin/python3 (Debian's python3-torch; the `python3` on PATH
 * may be a pyenv without torch). The environment is passed through unchanged.
 */
export function runPythonPeer(
  script,
  args = [],
  { python = process.env.PYTHON || '/usr/bin/python3', timeoutMs = 30 * 60 * 1000 } = {},
) {
  return runProcess(python, [script, ...args], timeoutMs, '(set PYTHON to an interpreter with torch)');
}

/** Runs a Node script (a benchmark's child mode) and returns the object in its last JSON line. */
export function runNodeScript(script, args = [], { timeoutMs = 30 * 60 * 1000 } = {}) {
  return runProcess(process.execPath, [script, ...args], timeoutMs, '');
}

function runProcess(command, args, timeoutMs, hint) {
  const what = `${command} ${args.join(' ')}`;
  const child = spawnSync(command, args, {
    encoding: 'utf8',
    env: process.env,
    maxBuffer: 64 * 1024 * 1024,
    timeout: timeoutMs,
  });
  if (child.error) throw new Error(`could not run ${what}: ${child.error.message} ${hint}`);
  if (child.status !== 0) throw new Error(`${what} exited with ${child.status ?? child.signal}:\n${child.stderr}`);
  const lines = child.stdout.trim().split('\n');
  try {
    return JSON.parse(lines[lines.length - 1]);
  } catch {
    throw new Error(`${what} printed no JSON line:\n${child.stdout}\n${child.stderr}`);
  }
}

/** VmRSS and VmHWM (peak RSS) of this process in MiB, from /proc/self/status. */
export function procStatus() {
  const out = {};
  for (const line of fs.readFileSync('/proc/self/status', 'utf8').split('\n')) {
    const m = /^(VmRSS|VmHWM):\s+(\d+)\s+kB/.exec(line);
    if (m) out[m[1]] = Number(m[2]) / 1024;
  }
  return out;
}

/** Resets VmHWM to the current RSS (Linux >= 4.0); false where not permitted. */
export function resetPeak() {
  try {
    fs.writeFileSync('/proc/self/clear_refs', '5');
    return true;
  } catch {
    return false;
  }
}

/** Seconds since a process.hrtime.bigint() reading. */
export const secondsSince = (start) => Number(process.hrtime.bigint() - start) / 1e9;
