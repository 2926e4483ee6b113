// A direct decoder for the common small PNGs (8-bit grey, grey+alpha, RGB, RGBA or palette, not
// interlaced, no EXIF, at most DIRECT_MAX_PIXELS): inflate with Node's zlib and undo the row
// filters with the WebAssembly kernels of png_kernels.ts (in JavaScript without WebAssembly).
// Small images decode two to three times faster than through a libvips pipeline, whose fixed cost
// per call dominates them; around 2^18 pixels the two meet, and at 1920x1080 libvips (zlib-ng,
// SIMD filters) is twice as fast (measured). Everything else returns null and goes to sharp. The
// RGB produced is Pillow's convert('RGB'): alpha and tRNS are ignored, grey is replicated, palette
// indices are looked up.
import zlib from 'node:zlib';

import { imageKernels, reserveMemory, type ImageKernels } from './kernels.js';

const SIGNATURE = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];
/** Bytes per pixel of each colour type at 8 bits: grey, RGB, palette, grey+alpha, RGBA. */
const CHANNELS: Record<number, number> = { 0: 1, 2: 3, 3: 1, 4: 2, 6: 4 };
const DIRECT_MAX_PIXELS = 1 << 18;

/** True when the bytes start with the PNG signature. */
export function isPng(bytes: Uint8Array): boolean {
  return bytes.length >= 8 && SIGNATURE.every((b, i) => bytes[i] === b);
}

interface PngHeader {
  width: number;
  height: number;
  colorType: number;
  palette: Uint8Array | null;
  data: Uint8Array;
}

/** Walks the chunks (CRC-checked); null when the file needs a feature decoded elsewhere. */
function readChunks(bytes: Uint8Array): PngHeader | null {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const idat: Uint8Array[] = [];
  let header: Omit<PngHeader, 'data' | 'palette'> | null = null;
  let palette: Uint8Array | null = null;
  for (let pos = 8; ; ) {
    if (pos + 12 > bytes.length) throw new Error('PNG is truncated (no IEND chunk)');
    const length = view.getUint32(pos);
    const type = String.fromCharCode(...bytes.subarray(pos + 4, pos + 8));
    const end = pos + 12 + length;
    if (end > bytes.length) throw new Error(`PNG is truncated inside its ${type} chunk`);
    const data = bytes.subarray(pos + 8, pos + 8 + length);
    if (zlib.crc32(data, zlib.crc32(bytes.subarray(pos + 4, pos + 8))) !== view.getUint32(pos + 8 + length)) {
      throw new Error(`PNG ${type} chunk fails its CRC check`);
    }
    if (type === 'IHDR') {
      const [depth, colorType, interlace] = [data[8]!, data[9]!, data[12]!];
      if (depth !== 8 || interlace !== 0 || CHANNELS[colorType] === undefined) return null;
      header = { width: view.getUint32(pos + 8), height: view.getUint32(pos + 12), colorType };
      if (header.width * header.height > DIRECT_MAX_PIXELS) return null;
    } else if (type === 'PLTE') {
      palette = data;
    } else if (type === 'IDAT') {
      idat.push(data);
    } else if (type === 'eXIf') {
      return null; // orientation handling stays with sharp
    } else if (type === 'IEND') {
      break;
    }
    pos = end;
  }
  if (!header || header.width === 0 || header.height === 0) throw new Error('PNG has no valid IHDR chunk');
  if (header.colorType === 3 && !palette) throw new Error('palette PNG has no PLTE chunk');
  return { ...header, palette, data: idat.length === 1 ? idat[0]! : Buffer.concat(idat) };
}

/** Undoes the per-row filters; returns the rows without their filter bytes. */
function unfilter(raw: Uint8Array, width: number, height: number, bpp: number): Uint8Array {
  const kernels = imageKernels();
  return kernels ? unfilterWasm(kernels, raw, width, height, bpp) : unfilterJs(raw, width, height, bpp);
}

/** unfilter with the WebAssembly row kernels; the first bpp bytes of a row (no left) here. */
function unfilterWasm(kernels: ImageKernels, raw: Uint8Array, width: number, height: number, bpp: number): Uint8Array {
  const stride = width * bpp;
  const rawLength = height * (stride + 1);
  const outPtr = (rawLength + 15) & ~15;
  const m = new Uint8Array(reserveMemory(kernels, outPtr + (height + 1) * stride));
  m.set(raw.subarray(0, rawLength));
  m.fill(0, outPtr, outPtr + stride); // the row above the first
  for (let y = 0; y < height; y++) {
    const filter = m[y * (stride + 1)]!;
    if (filter > 4) throw new Error(`PNG row ${y} has unknown filter type ${filter}`);
    const src = y * (stride + 1) + 1;
    const row = outPtr + (y + 1) * stride;
    const up = row - stride;
    if (filter === 0) {
      m.copyWithin(row, src, src + stride);
      continue;
    }
    for (let i = 0; i < bpp; i++) {
      const u = m[up + i]!;
      m[row + i] = m[src + i]! + (filter === 1 ? 0 : filter === 3 ? u >> 1 : u);
    }
    kernels.pngFilters[filter - 1]!(src + bpp, row + bpp, up + bpp, stride - bpp, bpp);
  }
  return m.slice(outPtr + stride, outPtr + (height + 1) * stride);
}

/** unfilter in JavaScript, where WebAssembly is unavailable. */
function unfilterJs(raw: Uint8Array, width: number, height: number, bpp: number): Uint8Array {
  const stride = width * bpp;
  // One zero row in front stands for the row above the first, so no loop tests for row 0.
  const out = new Uint8Array((height + 1) * stride);
  for (let y = 0; y < height; y++) {
    const filter = raw[y * (stride + 1)]!;
    if (filter > 4) throw new Error(`PNG row ${y} has unknown filter type ${filter}`);
    unfilterRow(filter, raw, y * (stride + 1) + 1, out, (y + 1) * stride, stride, bpp);
  }
  return out.subarray(stride);
}

/** One row: out[row ..] from raw[src ..] given the previous output row at row - stride. */
function unfilterRow(
  filter: number,
  raw: Uint8Array,
  src: number,
  out: Uint8Array,
  row: number,
  stride: number,
  bpp: number,
): void {
  const up = row - stride;
  if (filter === 0) {
    out.set(raw.subarray(src, src + stride), row);
  } else if (filter === 1) {
    for (let i = 0; i < bpp; i++) out[row + i] = raw[src + i]!;
    for (let i = bpp; i < stride; i++) out[row + i] = raw[src + i]! + out[row + i - bpp]!;
  } else if (filter === 2) {
    for (let i = 0; i < stride; i++) out[row + i] = raw[src + i]! + out[up + i]!;
  } else if (filter === 3) {
    for (let i = 0; i < bpp; i++) out[row + i] = raw[src + i]! + (out[up + i]! >> 1);
    for (let i = bpp; i < stride; i++) out[row + i] = raw[src + i]! + ((out[row + i - bpp]! + out[up + i]!) >> 1);
  } else {
    for (let i = 0; i < bpp; i++) out[row + i] = raw[src + i]! + out[up + i]!; // Paeth with a = c = 0
    for (let i = bpp; i < stride; i++) {
      const a = out[row + i - bpp]!;
      const b = out[up + i]!;
      const c = out[up + i - bpp]!;
      const pa = Math.abs(b - c);
      const pb = Math.abs(a - c);
      const pc = Math.abs(a + b - c - c);
      out[row + i] = raw[src + i]! + (pa <= pb && pa <= pc ? a : pb <= pc ? b : c);
    }
  }
}

/** Converts unfiltered pixels of a colour type to RGB. */
function toRgb(pixels: Uint8Array, count: number, colorType: number, palette: Uint8Array | null): Uint8Array {
  if (colorType === 2) return pixels;
  const out = new Uint8Array(count * 3);
  const bpp = CHANNELS[colorType]!;
  if (colorType === 3) {
    // Indices past the palette's end (an invalid file) read as black.
    const table = new Uint8Array(256 * 3);
    table.set(palette!.subarray(0, Math.min(palette!.length, 768)));
    for (let p = 0, d = 0; p < count; p++, d += 3) {
      const k = pixels[p]! * 3;
      out[d] = table[k]!;
      out[d + 1] = table[k + 1]!;
      out[d + 2] = table[k + 2]!;
    }
  } else if (colorType === 6) {
    for (let p = 0, s = 0, d = 0; p < count; p++, s += 4, d += 3) {
      out[d] = pixels[s]!;
      out[d + 1] = pixels[s + 1]!;
      out[d + 2] = pixels[s + 2]!;
    }
  } else {
    for (let p = 0, s = 0, d = 0; p < count; p++, s += bpp, d += 3) out[d] = out[d + 1] = out[d + 2] = pixels[s]!;
  }
  return out;
}

/** Decodes a PNG to RGB, or returns null when it needs sharp. Throws on corrupt data. */
export function decodePng(bytes: Uint8Array): { width: number; height: number; data: Uint8Array } | null {
  const png = readChunks(bytes);
  if (!png) return null;
  const bpp = CHANNELS[png.colorType]!;
  const expected = png.height * (png.width * bpp + 1);
  const raw = zlib.inflateSync(png.data);
  if (raw.length < expected) throw new Error(`PNG image data is truncated (${raw.length} of ${expected} bytes)`);
  const pixels = unfilter(raw, png.width, png.height, bpp);
  return {
    width: png.width,
    height: png.height,
    data: toRgb(pixels, png.width * png.height, png.colorType, png.palette),
  };
}
