// Hugging Face split strings: `train`, `train[:5%]`, `train[10:200]`, `test[-100:]`. Percent
// boundaries round to the closest row with Python's round (half to even), as `datasets` does.
export interface SplitSpec {
  name: string;
  start?: string;
  end?: string;
}

const SPLIT = /^([\w.-]+)(?:\[\s*(-?\d+%?)?\s*:\s*(-?\d+%?)?\s*\])?$/;

export function parseSplit(text: string): SplitSpec {
  const match = SPLIT.exec(text.trim());
  if (match === null)
    throw new TypeError(`split ${JSON.stringify(text)}: expected name or name[start:end] (e.g. train[:5%])`);
  return { name: match[1] as string, start: match[2], end: match[3] };
}

/** The [from, to) row range a split's slice selects among `rows`. */
export function splitRange(split: SplitSpec, rows: number): [number, number] {
  const from = split.start === undefined ? 0 : boundary(split.start, rows);
  const to = split.end === undefined ? rows : boundary(split.end, rows);
  return [from, Math.max(from, to)];
}

function boundary(text: string, rows: number): number {
  const percent = text.endsWith('%');
  const value = Number(percent ? text.slice(0, -1) : text);
  if (percent && Math.abs(value) > 100)
    throw new RangeError(`split boundary ${text}: a percentage is within [-100%, 100%]`);
  const absolute = percent ? roundHalfEven((value * rows) / 100) : value;
  return Math.min(rows, Math.max(0, absolute < 0 ? rows + absolute : absolute));
}

function roundHalfEven(x: number): number {
  const floor = Math.floor(x);
  const fraction = x - floor;
  if (fraction !== 0.5) return Math.round(x);
  return floor % 2 === 0 ? floor : floor + 1;
}
