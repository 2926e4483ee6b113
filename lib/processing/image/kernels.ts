// The image kernels as one WebAssembly module (SIMD), compiled once on first use: the two
// resize passes (resize_kernels.ts), normalisation to planes and Qwen patch gathering
// (normalize_kernel.ts), and the PNG row filters (png_kernels.ts).
// They share one memory; each call lays out its own buffers in it from offset 0.
import { normalizePlanes, patchRow } from './normalize_kernel.js';
import { pngKernels } from './png_kernels.js';
import { horizontal, vertical } from './resize_kernels.js';
import { wasmModule } from './wasm_module.js';

// The WebAssembly API as far as used here (the compiler's lib settings declare no WebAssembly).
interface WasmMemory {
  readonly buffer: ArrayBuffer;
  grow(pages: number): number;
}
interface WasmApi {
  validate(bytes: Uint8Array): boolean;
  Module: new (bytes: Uint8Array) => object;
  Instance: new (module: object) => { exports: Record<string, unknown> };
}

type Kernel = (...args: number[]) => void;

/** The compiled kernels and their memory. */
export interface ImageKernels {
  memory: WasmMemory;
  vertical: Kernel;
  horizontal: Kernel;
  normalizePlanes: Kernel;
  patchRow: Kernel;
  /** PNG filters Sub, Up, Average, Paeth: filter type k at index k - 1. */
  pngFilters: Kernel[];
}

let cached: ImageKernels | null | undefined;

/** The kernels; null where WebAssembly SIMD is unavailable (e.g. node --jitless). */
export function imageKernels(): ImageKernels | null {
  if (cached !== undefined) return cached;
  cached = null;
  const wasm = (globalThis as { WebAssembly?: WasmApi }).WebAssembly;
  const bytes = wasmModule([vertical(), horizontal(), normalizePlanes(), patchRow(), ...pngKernels()], 1);
  if (!wasm?.validate(bytes)) return cached;
  const e = new wasm.Instance(new wasm.Module(bytes)).exports;
  cached = {
    memory: e.memory as WasmMemory,
    vertical: e.vertical as Kernel,
    horizontal: e.horizontal as Kernel,
    normalizePlanes: e.normalizePlanes as Kernel,
    patchRow: e.patchRow as Kernel,
    pngFilters: [e.filterSub as Kernel, e.filterUp as Kernel, e.filterAverage as Kernel, e.filterPaeth as Kernel],
  };
  return cached;
}

/** Grows the kernels' memory to at least `bytes`. */
export function reserveMemory(kernels: ImageKernels, bytes: number): ArrayBuffer {
  const missing = bytes - kernels.memory.buffer.byteLength;
  if (missing > 0) kernels.memory.grow(Math.ceil(missing / 65536));
  return kernels.memory.buffer;
}
