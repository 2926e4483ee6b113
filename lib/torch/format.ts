// PyTorch-style printing: tensor([[1., 2.], [3., 4.]], dtype=float64), summarised past 1000
// elements with the first and last three entries of each dim.
import type { Tensor } from './tensor.js';

const SUMMARY_THRESHOLD = 1000;
const EDGE_ITEMS = 3;

function formatNumber(value: unknown, floating: boolean): string {
  if (typeof value === 'boolean') return value ? 'True' : 'False';
  const v = value as number;
  if (!floating) return String(v);
  if (Number.isNaN(v)) return 'nan';
  if (!Number.isFinite(v)) return v > 0 ? 'inf' : '-inf';
  if (Number.isInteger(v) && Math.abs(v) < 1e8) return `${v}.`;
  const abs = Math.abs(v);
  return abs !== 0 && (abs < 1e-4 || abs >= 1e8) ? v.toExponential(4) : String(Number(v.toFixed(4)));
}

function render(values: unknown, depth: number, ndim: number, summarise: boolean, floating: boolean): string {
  if (depth === ndim) return formatNumber(values, floating);
  const items = values as unknown[];
  const parts: string[] = [];
  const elide = summarise && items.length > 2 * EDGE_ITEMS;
  items.forEach((item, k) => {
    if (elide && k === EDGE_ITEMS) parts.push('...');
    if (elide && k >= EDGE_ITEMS && k < items.length - EDGE_ITEMS) return;
    parts.push(render(item, depth + 1, ndim, summarise, floating));
  });
  const indent = ' '.repeat(7 + depth + 1);
  const separator = depth === ndim - 1 ? ', ' : `,${'\n'.repeat(ndim - depth - 1)}${indent}`;
  return `[${parts.join(separator)}]`;
}

export function formatTensor(t: Tensor): string {
  if (t.isDisposed) return 'tensor(<disposed>)';
  const dtype = t.dtype;
  const floating = dtype.startsWith('float') || dtype === 'bfloat16';
  const body = render(t.toArray(), 0, t.ndim, t.numel() > SUMMARY_THRESHOLD, floating);
  const extras: string[] = [];
  if (t.numel() === 0) extras.push(`size=[${t.shape.join(', ')}]`);
  if (dtype !== 'float32' && dtype !== 'int64' && dtype !== 'bool') extras.push(`dtype=${dtype}`);
  if (t.device !== 'cpu') extras.push(`device='${t.device}'`);
  if (t.requiresGrad) extras.push(t.gradFn ? `grad_fn=<${t.gradFn}>` : 'requires_grad=True');
  return `tensor(${[body, ...extras].join(', ')})`;
}
