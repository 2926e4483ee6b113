// A 4-bit layer's tensors under bitsandbytes' checkpoint keys (Linear4bit._save_to_state_dict with
// QuantState.as_dict(packed=True)):
//   <p>.weight                                uint8 [ceil(n/2), 1]  packed codes
//   <p>.weight.absmax                         float32 [blocks]  (uint8 with double quantisation)
//   <p>.weight.quant_map                      float32 [16]
//   <p>.weight.nested_absmax                  float32 [ceil(blocks/256)]   (double quantisation)
//   <p>.weight.nested_quant_map               float32 [256]                (double quantisation)
//   <p>.weight.quant_state.bitsandbytes__nf4  uint8: the UTF-8 bytes of Python's json.dumps of
//       {"quant_type", "blocksize", "dtype", "shape", "nested_blocksize", "nested_dtype", "nested_offset"}
// The JSON is written byte for byte as Python writes it (", " / ": " separators, float repr).
import { parseJson } from '../util/json_file.js';
import * as torch from '../torch/index.js';
import type { DType, QuantState4bit, QuantType, Tensor } from '../torch/index.js';
import type { QuantBufferName, QuantSpec } from './linear4bit.js';

export const NESTED_BLOCKSIZE = 256;

/** Buffer name → the key suffix after `<path>.` (the offset goes into the JSON instead). */
export const BNB_KEYS: Readonly<Partial<Record<QuantBufferName, string>>> = {
  weight_absmax: 'weight.absmax',
  weight_quant_map: 'weight.quant_map',
  weight_nested_absmax: 'weight.nested_absmax',
  weight_nested_quant_map: 'weight.nested_quant_map',
};

/** `<path>.weight` or `<path>.weight.<part>` of a bitsandbytes 4-bit layer: [path, part ('weight' for the packed codes)]. */
const PART =
  /^(.*)\.weight(?:\.(absmax|quant_map|nested_absmax|nested_quant_map|quant_state\.bitsandbytes__(?:nf4|fp4)))?$/;
export function bnbPart(name: string): [string, string] | null {
  const m = PART.exec(name);
  return m === null ? null : [m[1]!, m[2] ?? 'weight'];
}

export const QUANT_STATE_KEY = /^(.*)\.weight\.quant_state\.bitsandbytes__(nf4|fp4)$/;
export const quantStateKey = (quantType: QuantType): string => `quant_state.bitsandbytes__${quantType}`;

export interface QuantStateJson {
  quant_type: QuantType;
  blocksize: number;
  dtype: string;
  shape: number[];
  nested_blocksize?: number;
  nested_dtype?: string;
  nested_offset?: number;
}

/** Python's json.dumps of the quant_state dict, in bitsandbytes' key order. */
export function quantStateJson(spec: QuantSpec, shape: readonly number[], offset: number | null): string {
  const items: Array<[string, string]> = [
    ['quant_type', JSON.stringify(spec.quantType)],
    ['blocksize', String(spec.blocksize)],
    ['dtype', JSON.stringify(spec.weightDtype)],
    ['shape', `[${shape.join(', ')}]`],
  ];
  if (offset !== null) {
    items.push(
      ['nested_blocksize', String(NESTED_BLOCKSIZE)],
      ['nested_dtype', '"float32"'],
      ['nested_offset', pythonFloatRepr(offset)],
    );
  }
  return `{${items.map(([k, v]) => `"${k}": ${v}`).join(', ')}}`;
}

/** Python's repr(float): the shortest round-trip digits, fixed notation for exponents in [-4, 16), else d.ddde±XX. */
export function pythonFloatRepr(x: number): string {
  if (Number.isNaN(x)) return 'NaN';
  if (!Number.isFinite(x)) return x > 0 ? 'Infinity' : '-Infinity';
  if (x === 0) return Object.is(x, -0) ? '-0.0' : '0.0';
  const [mantissa, exp] = x.toExponential().split('e') as [string, string];
  const e = Number(exp);
  const negative = mantissa.startsWith('-');
  const digits = mantissa.replace('-', '').replace('.', '');
  let body: string;
  if (e >= -4 && e < 16) {
    if (e < 0) body = `0.${'0'.repeat(-e - 1)}${digits}`;
    else if (digits.length <= e + 1) body = `${digits}${'0'.repeat(e + 1 - digits.length)}.0`;
    else body = `${digits.slice(0, e + 1)}.${digits.slice(e + 1)}`;
  } else {
    const m = digits.length === 1 ? digits : `${digits[0]}.${digits.slice(1)}`;
    body = `${m}e${e < 0 ? '-' : '+'}${String(Math.abs(e)).padStart(2, '0')}`;
  }
  return negative ? `-${body}` : body;
}

/** The JSON tensor: uint8 [bytes]. */
export function jsonTensor(json: string): Tensor {
  return torch.tensor(new Uint8Array(Buffer.from(json, 'utf8')), { dtype: 'uint8' });
}

export function parseQuantStateTensor(t: Tensor, where: string): QuantStateJson {
  if (t.dtype !== 'uint8' || t.shape.length !== 1)
    throw new Error(`${where}: expected a uint8 vector of JSON bytes, got ${t.dtype} [${t.shape.join(', ')}]`);
  const text = Buffer.from(t.data() as Uint8Array).toString('utf8');
  const json = parseJson(text, `${where}: quant state`) as QuantStateJson;
  if (
    (json.quant_type !== 'nf4' && json.quant_type !== 'fp4') ||
    !Number.isInteger(json.blocksize) ||
    !Array.isArray(json.shape)
  ) {
    throw new Error(`${where}: unsupported quant state ${text}`);
  }
  if (json.nested_offset !== undefined && (json.nested_blocksize ?? NESTED_BLOCKSIZE) !== NESTED_BLOCKSIZE) {
    throw new Error(
      `${where}: nested_blocksize ${json.nested_blocksize} is not supported (bitsandbytes always writes ${NESTED_BLOCKSIZE})`,
    );
  }
  return json;
}

const DTYPES: readonly string[] = ['float32', 'bfloat16', 'float16'];

/**
 * A QuantState4bit from the parts of one layer (`weight`, `absmax`, `quant_map`, `nested_absmax`,
 * `nested_quant_map`, `quant_state.bitsandbytes__*`), or the names of the missing parts.
 */
export function stateFromParts(parts: ReadonlyMap<string, Tensor>, where: string): QuantState4bit | string[] {
  const stateKey = [...parts.keys()].find((k) => k.startsWith('quant_state.'));
  if (stateKey === undefined) return ['quant_state.bitsandbytes__<type>'];
  const json = parseQuantStateTensor(parts.get(stateKey)!, `${where}.weight.${stateKey}`);
  if (stateKey !== quantStateKey(json.quant_type))
    throw new Error(`${where}: ${stateKey} holds quant_type '${json.quant_type}'`);
  const nested = json.nested_offset !== undefined;
  const needed = ['weight', 'absmax', 'quant_map', ...(nested ? ['nested_absmax', 'nested_quant_map'] : [])];
  const missing = needed.filter((k) => !parts.has(k));
  if (missing.length > 0) return missing;
  if (!DTYPES.includes(json.dtype)) throw new Error(`${where}: quant state dtype '${json.dtype}' is not supported`);
  const get = (k: string): Tensor => parts.get(k)!;
  const n = json.shape.reduce((a, b) => a * b, 1);
  const checks: Array<[string, boolean]> = [
    ['weight', get('weight').dtype === 'uint8' && get('weight').numel() === Math.ceil(n / 2)],
    [
      'absmax',
      get('absmax').numel() === Math.ceil(n / json.blocksize) && get('absmax').dtype === (nested ? 'uint8' : 'float32'),
    ],
    ['quant_map', get('quant_map').numel() === 16 && get('quant_map').dtype === 'float32'],
  ];
  if (nested) {
    checks.push([
      'nested_absmax',
      get('nested_absmax').numel() === Math.ceil(Math.ceil(n / json.blocksize) / NESTED_BLOCKSIZE) &&
        get('nested_absmax').dtype === 'float32',
    ]);
    checks.push([
      'nested_quant_map',
      get('nested_quant_map').numel() === 256 && get('nested_quant_map').dtype === 'float32',
    ]);
  }
  const bad = checks.filter(([, ok]) => !ok).map(([k]) => `${k} ${get(k).dtype} [${get(k).shape.join(', ')}]`);
  if (bad.length > 0)
    throw new Error(
      `${where}: 4-bit state of shape [${json.shape.join(', ')}], blocksize ${json.blocksize} has inconsistent ${bad.join(', ')}`,
    );
  return {
    packed: get('weight'),
    absmax: get('absmax'),
    code: get('quant_map'),
    nestedAbsmax: nested ? get('nested_absmax') : null,
    nestedCode: nested ? get('nested_quant_map') : null,
    offset: nested ? scalar(json.nested_offset!) : null,
    quantType: json.quant_type,
    blocksize: json.blocksize,
    shape: json.shape,
    dtype: json.dtype as DType,
  };
}

function scalar(value: number): Tensor {
  const one = torch.tensor(new Float32Array([value]));
  const out = one.reshape([]);
  one.dispose();
  return out;
}
