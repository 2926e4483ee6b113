// Image decoding to 8-bit RGB, the way the reference processors see an image after
// `PIL.Image.open(...)` + `ImageOps.exif_transpose` + `.convert('RGB')`: alpha is dropped without
// compositing, greyscale is replicated to three channels, palettes are expanded, and embedded ICC
// profiles are ignored (Pillow applies none). Common PNGs are decoded directly (png.ts); everything
// else by sharp (libvips).
import { readFile } from 'node:fs/promises';
import sharp from 'sharp';

import { decodePng, isPng } from './png.js';

/** An 8-bit RGB image: `data` is height x width x 3 (HWC, row-major), length width*height*3. */
export interface RgbImage {
  width: number;
  height: number;
  data: Uint8Array;
}

/** Checks the dimensions and the buffer length and returns them as an RgbImage (no copy). */
export function rgbImage(width: number, height: number, data: Uint8Array): RgbImage {
  for (const [name, value] of [
    ['width', width],
    ['height', height],
  ] as const) {
    if (!Number.isInteger(value) || value <= 0) {
      throw new RangeError(`rgbImage: expected a positive integer for ${name} but received ${String(value)}`);
    }
  }
  if (!(data instanceof Uint8Array)) {
    throw new TypeError(`rgbImage: expected a Uint8Array for data but received ${typeof data}`);
  }
  if (data.length !== width * height * 3) {
    throw new RangeError(
      `rgbImage: data holds ${data.length} bytes but a ${width}x${height} RGB image needs ${width * height * 3}`,
    );
  }
  return { width, height, data };
}

/** Options of loadImage. */
export interface LoadImageOptions {
  /** Reject images whose width or height is below this many pixels. */
  minSize?: number;
}

/**
 * Decodes a PNG, JPEG, WebP or GIF (first frame) from a file path or the bytes of a file, applies
 * the EXIF orientation, and returns 8-bit RGB as Pillow's convert('RGB') gives it.
 */
export async function loadImage(source: string | Uint8Array, options: LoadImageOptions = {}): Promise<RgbImage> {
  const what = typeof source === 'string' ? source : 'buffer';
  if (typeof source !== 'string' && !(source instanceof Uint8Array)) {
    throw new TypeError(`loadImage: expected a file path or a Uint8Array for source but received ${typeof source}`);
  }
  const minSize = options.minSize ?? 1;
  if (!Number.isInteger(minSize) || minSize < 1) {
    throw new RangeError(`loadImage: expected a positive integer for minSize but received ${String(options.minSize)}`);
  }
  let decoded: RgbImage;
  try {
    const bytes = typeof source === 'string' ? await readFile(source) : source;
    decoded = (isPng(bytes) && decodePng(bytes)) || (await decodeWithSharp(bytes, what));
  } catch (err) {
    const reason = err instanceof Error ? err.message : String(err);
    throw new Error(`loadImage: cannot decode ${what}: ${reason}`, { cause: err });
  }
  if (decoded.width < minSize || decoded.height < minSize) {
    throw new RangeError(
      `loadImage: ${what} is ${decoded.width}x${decoded.height} pixels, smaller than minSize ${minSize}`,
    );
  }
  return rgbImage(decoded.width, decoded.height, decoded.data);
}

/** Any format libvips reads: first frame, EXIF orientation applied, ICC ignored, 8 bits. */
async function decodeWithSharp(bytes: Uint8Array, what: string): Promise<RgbImage> {
  const { data, info } = await sharp(bytes, { autoOrient: true, ignoreIcc: true, failOn: 'error', pages: 1 })
    .raw({ depth: 'uchar' })
    .toBuffer({ resolveWithObject: true });
  return { width: info.width, height: info.height, data: toRgb(data, info.width * info.height, info.channels, what) };
}

/** Expands 1 (grey), 2 (grey + alpha), 3 (RGB) or 4 (RGBA) interleaved channels to RGB. */
function toRgb(src: Uint8Array, pixels: number, channels: number, what: string): Uint8Array {
  if (channels === 3) return new Uint8Array(src.buffer, src.byteOffset, pixels * 3);
  if (channels < 1 || channels > 4) {
    throw new Error(`loadImage: ${what} decoded to ${channels} channels; expected grey, grey+alpha, RGB or RGBA`);
  }
  const out = new Uint8Array(pixels * 3);
  if (channels === 4) {
    for (let p = 0, s = 0, d = 0; p < pixels; p++, s += 4, d += 3) {
      out[d] = src[s]!;
      out[d + 1] = src[s + 1]!;
      out[d + 2] = src[s + 2]!;
    }
    return out;
  }
  for (let p = 0, s = 0, d = 0; p < pixels; p++, s += channels, d += 3) {
    const v = src[s]!;
    out[d] = v;
    out[d + 1] = v;
    out[d + 2] = v;
  }
  return out;
}
