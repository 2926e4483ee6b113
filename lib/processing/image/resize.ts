// Pillow's BICUBIC resize of 8-bit RGB (Image.resize(size, BICUBIC), Pillow 9.4 Resample.c),
// reproduced bit for bit: the slow Hugging Face processors and InternVL's preprocessing resize with
// it, and a model's pixel values are only exact with the same uint8 pixels.
//
// Semantics, per axis: scale = in/out; the cubic kernel (a = -0.5, support 2) is widened by the
// scale when downscaling (antialiasing); output pixel i centres on (i + 0.5) * scale; its source
// window is [trunc(centre - support + 0.5), trunc(centre + support + 0.5)) clipped to the image;
// the weights are normalised to sum 1 in float64, then quantised to 22 fractional bits (round half
// away from zero). A pass accumulates u8 * weight in int32 from 2^21 (the rounding half) and
// stores clamp(sum >> 22, 0, 255). The horizontal pass runs first, on the source rows the vertical
// pass reads; a pass whose size does not change is skipped. The passes run as WebAssembly SIMD
// kernels (resize_kernels.ts), or in JavaScript (resize_js.ts) where WebAssembly is unavailable.
import { rgbImage, type RgbImage } from './decode.js';
import { coefficients } from './resize_coefficients.js';
import { horizontalJs, verticalJs } from './resize_js.js';
import { resizeWasm } from './resize_wasm.js';

/** Options of resizeBicubic. */
export interface ResizeOptions {
  /** 'auto' (default): the SIMD kernels when available, else JavaScript. Both give the same bytes. */
  engine?: 'auto' | 'wasm' | 'js';
}

function checkSize(name: string, value: number): void {
  if (!Number.isInteger(value) || value <= 0) {
    throw new RangeError(`resizeBicubic: expected a positive integer for ${name} but received ${String(value)}`);
  }
}

/** Pillow-exact BICUBIC resize of an RGB image to width x height (a copy when the size is unchanged). */
export function resizeBicubic(img: RgbImage, width: number, height: number, options: ResizeOptions = {}): RgbImage {
  checkSize('width', width);
  checkSize('height', height);
  rgbImage(img.width, img.height, img.data);
  const engine = options.engine ?? 'auto';
  if (engine !== 'auto' && engine !== 'wasm' && engine !== 'js') {
    throw new RangeError(`resizeBicubic: expected 'auto', 'wasm' or 'js' for engine but received ${String(engine)}`);
  }
  const needH = width !== img.width;
  const needV = height !== img.height;
  if (!needH && !needV) return rgbImage(width, height, img.data.slice());
  const vc = needV ? coefficients(img.height, height) : null;
  const hc = needH ? coefficients(img.width, width) : null;
  // Only the source rows the vertical pass reads go through the horizontal pass, as in Pillow.
  const row0 = vc ? vc.first[0]! : 0;
  const rows = vc ? vc.first[height - 1]! + vc.count[height - 1]! - row0 : img.height;
  if (engine !== 'js') {
    const out = resizeWasm(img.data, img.width, img.height, width, height, hc, vc, row0, rows);
    if (out) return rgbImage(width, height, out);
    if (engine === 'wasm') throw new Error('resizeBicubic: WebAssembly SIMD is not available in this runtime');
  }
  let data = img.data;
  if (hc) data = horizontalJs(data, img.width, row0, rows, width, hc);
  if (vc) data = verticalJs(data, width, hc ? row0 : 0, height, vc);
  return rgbImage(width, height, data);
}
