// Normalisation kernels (WebAssembly SIMD). normalizePlanes: 16 interleaved RGB pixels at a time
// are split into channels with two shuffles each, widened to float32 and put through exactly the
// reference's float32 operations, x = f32(u8) / 255, (x - mean) / std (IEEE division, as torch's
// and numpy's), into three planes. InternVL's ToTensor is that division; the Qwen processor's
// float32(float64(u8) * (1/255)) equals it for all 256 values (checked in the tests).
// patchRow: gathers one Qwen patch row from the planes.
import { op, SIMD, uleb, type WasmFunction } from './wasm_module.js';

const { get, set, tee, i32, add, mul, ltU, block, loop, brIf, end, simd } = op;

const I8X16_SHUFFLE = 13;
const F32X4_SUB = 229;
const F32X4_DIV = 231;
const F32X4_CONVERT_I32X4_U = 251;

/** Lane indices gathering channel c of 16 RGB pixels spread over three vectors (two shuffles). */
function shuffles(c: number): [number[], number[]] {
  const first: number[] = [];
  const second: number[] = [];
  for (let k = 0; k < 16; k++) {
    const at = 3 * k + c;
    first.push(at < 32 ? at : 0);
    second.push(at < 32 ? k : 16 + at - 32);
  }
  return [first, second];
}

/**
 * normalizePlanes(src, groups, outR, outG, outB, constants): for 16 * groups pixels of RGB at src,
 * writes float32 planes; constants holds f32x4 splats of 255, mean[0..2], std[0..2] (112 bytes).
 */
export function normalizePlanes(): WasmFunction {
  const [src, groups, outR, outG, outB, constants] = [0, 1, 2, 3, 4, 5];
  const [i, v0, v1, v2, ch, h, k255] = [6, 7, 8, 9, 10, 11, 12];
  const mean = [13, 14, 15];
  const std = [16, 17, 18];
  const outs = [outR, outG, outB];
  const loadConst = (slot: number, local: number) => [
    ...get(constants),
    ...simd(SIMD.load, 0, ...uleb(slot * 16)),
    ...set(local),
  ];
  const channel = (c: number) => {
    const [first, second] = shuffles(c);
    const quarter = (q: number) => [
      ...get(outs[c]!),
      ...get(h),
      ...simd(q % 2 === 0 ? SIMD.i32x4ExtendLowI16x8U : SIMD.i32x4ExtendHighI16x8U),
      ...simd(F32X4_CONVERT_I32X4_U),
      ...get(k255),
      ...simd(F32X4_DIV),
      ...get(mean[c]!),
      ...simd(F32X4_SUB),
      ...get(std[c]!),
      ...simd(F32X4_DIV),
      ...simd(SIMD.store, 0, 16 * q),
    ];
    return [
      ...get(v0),
      ...get(v1),
      ...simd(I8X16_SHUFFLE, ...first),
      ...get(v2),
      ...simd(I8X16_SHUFFLE, ...second),
      ...set(ch),
      ...get(ch),
      ...simd(SIMD.i16x8ExtendLowI8x16U),
      ...set(h),
      ...quarter(0),
      ...quarter(1),
      ...get(ch),
      ...simd(SIMD.i16x8ExtendHighI8x16U),
      ...set(h),
      ...quarter(2),
      ...quarter(3),
    ];
  };
  const advance = (local: number, by: number) => [...get(local), ...i32(by), ...add, ...set(local)];
  const body = [
    ...loadConst(0, k255),
    ...loadConst(1, mean[0]!),
    ...loadConst(2, mean[1]!),
    ...loadConst(3, mean[2]!),
    ...loadConst(4, std[0]!),
    ...loadConst(5, std[1]!),
    ...loadConst(6, std[2]!),
    ...block,
    ...get(groups),
    0x45,
    ...brIf(0), // i32.eqz: no groups, nothing to do
    ...loop,
    ...get(src),
    ...simd(SIMD.load, 0, 0),
    ...set(v0),
    ...get(src),
    ...simd(SIMD.load, 0, 16),
    ...set(v1),
    ...get(src),
    ...simd(SIMD.load, 0, 32),
    ...set(v2),
    ...channel(0),
    ...channel(1),
    ...channel(2),
    ...advance(src, 48),
    ...advance(outR, 64),
    ...advance(outG, 64),
    ...advance(outB, 64),
    ...get(i),
    ...i32(1),
    ...add,
    ...tee(i),
    ...get(groups),
    ...ltU,
    ...brIf(0),
    ...end,
    ...end,
  ];
  return { name: 'normalizePlanes', params: 6, locals: ['i32', ...Array(12).fill('v128')], body };
}

/**
 * patchRow(src, rowStride, planeStride, patch, frames, out): for each channel c, frame and patch
 * row py, copies `patch` floats from src + c * planeStride + py * rowStride to out (consecutive),
 * 16 bytes at a time: a run's last block spills into the next run, written after it (the caller
 * pads the end). Every frame is the same image, so frames repeat the channel's block.
 */
export function patchRow(): WasmFunction {
  const [src, rowStride, planeStride, patch, frames, out] = [0, 1, 2, 3, 4, 5];
  const [c, t, py, s, q, runBytes] = [6, 7, 8, 9, 10, 11];
  const body = [
    ...get(patch),
    ...i32(4),
    ...mul,
    ...set(runBytes),
    ...loop, // channels
    ...i32(0),
    ...set(t),
    ...loop, // frames
    ...get(src),
    ...get(c),
    ...get(planeStride),
    ...mul,
    ...add,
    ...set(s),
    ...i32(0),
    ...set(py),
    ...loop, // patch rows
    ...i32(0),
    ...set(q),
    ...loop, // 16-byte blocks of one run
    ...get(out),
    ...get(q),
    ...add,
    ...get(s),
    ...get(q),
    ...add,
    ...simd(SIMD.load, 0, 0),
    ...simd(SIMD.store, 0, 0),
    ...get(q),
    ...i32(16),
    ...add,
    ...tee(q),
    ...get(runBytes),
    ...ltU,
    ...brIf(0),
    ...end,
    ...get(out),
    ...get(runBytes),
    ...add,
    ...set(out),
    ...get(s),
    ...get(rowStride),
    ...add,
    ...set(s),
    ...get(py),
    ...i32(1),
    ...add,
    ...tee(py),
    ...get(patch),
    ...ltU,
    ...brIf(0),
    ...end,
    ...get(t),
    ...i32(1),
    ...add,
    ...tee(t),
    ...get(frames),
    ...ltU,
    ...brIf(0),
    ...end,
    ...get(c),
    ...i32(1),
    ...add,
    ...tee(c),
    ...i32(3),
    ...ltU,
    ...brIf(0),
    ...end,
  ];
  return { name: 'patchRow', params: 6, locals: Array(6).fill('i32'), body };
}
