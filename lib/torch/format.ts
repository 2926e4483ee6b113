// PyTorch-style printing (torch/_tensor_str.py's rules): floats share one format chosen from the
// values (integer-valued "1.", fixed "1.5000", or scientific "1.0000e-05"), every element is
// right-aligned to the widest, and tensors over 1000 elements show the first and last three
// entries of each dim.
import type { Tensor } from './tensor.js';

const SUMMARY_THRESHOLD = 1000;
const EDGE_ITEMS = 3;
const INDENT = 'tensor('.length;

type Leaf = number | boolean;

// The elements that get printed (the edges of each dim when summarising).
function shown(values: unknown, depth: number, ndim: number, summarise: boolean, out: Leaf[]): void {
  if (depth === ndim) {
    out.push(values as Leaf);
    return;
  }
  const items = values as unknown[];
  const elide = summarise && items.length > 2 * EDGE_ITEMS;
  items.forEach((item, k) => {
    if (!elide || k < EDGE_ITEMS || k >= items.length - EDGE_ITEMS) shown(item, depth + 1, ndim, summarise, out);
  });
}

const scientific = (v: number): string => v.toExponential(4).replace(/e([+-])(\d)$/, 'e$10$2');

function floatFormatter(values: number[]): (v: number) => string {
  const finite = values.filter((v) => Number.isFinite(v));
  const magnitudes = finite.filter((v) => v !== 0).map(Math.abs);
  const max = magnitudes.length ? Math.max(...magnitudes) : 0;
  const min = magnitudes.length ? Math.min(...magnitudes) : 0;
  const wide = magnitudes.length > 0 && (max / min > 1000 || max > 1e8);
  const special = (v: number): string | null =>
    Number.isNaN(v) ? 'nan' : Number.isFinite(v) ? null : v > 0 ? 'inf' : '-inf';
  if (finite.every(Number.isInteger)) {
    return (v) => special(v) ?? (wide ? scientific(v) : `${v.toFixed(0)}.`);
  }
  const sci = wide || (magnitudes.length > 0 && min < 1e-4);
  return (v) => special(v) ?? (sci ? scientific(v) : v.toFixed(4));
}

function render(values: unknown, depth: number, ndim: number, summarise: boolean, cell: (v: Leaf) => string): string {
  if (depth === ndim) return cell(values as Leaf);
  const items = values as unknown[];
  const elide = summarise && items.length > 2 * EDGE_ITEMS;
  const parts: string[] = [];
  items.forEach((item, k) => {
    if (elide && k === EDGE_ITEMS) parts.push(depth === ndim - 1 ? ' ...' : '...');
    if (!elide || k < EDGE_ITEMS || k >= items.length - EDGE_ITEMS)
      parts.push(render(item, depth + 1, ndim, summarise, cell));
  });
  const separator = depth === ndim - 1 ? ', ' : `,${'\n'.repeat(ndim - depth - 1)}${' '.repeat(INDENT + depth + 1)}`;
  return `[${parts.join(separator)}]`;
}

export function formatTensor(t: Tensor): string {
  if (t.isDisposed) return 'tensor(<disposed>)';
  const dtype = t.dtype;
  const values = t.toArray();
  const summarise = t.numel() > SUMMARY_THRESHOLD;
  const leaves: Leaf[] = [];
  shown(values, 0, t.ndim, summarise, leaves);
  const floating = dtype.startsWith('float') || dtype === 'bfloat16';
  const format: (v: Leaf) => string =
    dtype === 'bool'
      ? (v) => (v ? 'True' : 'False')
      : floating
        ? (floatFormatter(leaves as number[]) as (v: Leaf) => string)
        : String;
  const width = Math.max(0, ...leaves.map((v) => format(v).length));
  const body = render(values, 0, t.ndim, summarise, (v) => format(v).padStart(width));
  const extras: string[] = [];
  if (t.numel() === 0) extras.push(`size=[${t.shape.join(', ')}]`);
  if (dtype !== 'float32' && dtype !== 'int64' && dtype !== 'bool') extras.push(`dtype=${dtype}`);
  if (t.device !== 'cpu') extras.push(`device='${t.device}'`);
  if (t.requiresGrad) extras.push(t.gradFn ? `grad_fn=<${t.gradFn}>` : 'requires_grad=True');
  return `tensor(${[body, ...extras].join(', ')})`;
}
