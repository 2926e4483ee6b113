// Pillow's resampling coefficients for BICUBIC (precompute_coeffs + normalize_coeffs_8bpc of
// Pillow 9.4 Resample.c) over the full box [0, inSize), in the same float64 operation order.

const PRECISION_BITS = 22;
const ONE = 1 << PRECISION_BITS;

/** Per output pixel: the first source index, the tap count, and `ksize` int32 weights. */
export interface Coefficients {
  first: Int32Array;
  count: Int32Array;
  ksize: number;
  weights: Int32Array;
}

/** Pillow's bicubic_filter with a = -0.5, evaluated in the same operation order. */
function bicubic(x: number): number {
  if (x < 0) x = -x;
  if (x < 1) return (1.5 * x - 2.5) * x * x + 1;
  if (x < 2) return (((x - 5) * x + 8) * x - 4) * -0.5;
  return 0;
}

/** Pillow's precompute_coeffs + normalize_coeffs_8bpc for the full box [0, inSize). */
export function coefficients(inSize: number, outSize: number): Coefficients {
  const scale = inSize / outSize;
  const filterScale = Math.max(scale, 1);
  const support = 2 * filterScale;
  const ksize = Math.ceil(support) * 2 + 1;
  const inverse = 1 / filterScale;
  const first = new Int32Array(outSize);
  const count = new Int32Array(outSize);
  const weights = new Int32Array(outSize * ksize);
  const w = new Float64Array(ksize);
  for (let i = 0; i < outSize; i++) {
    const centre = (i + 0.5) * scale;
    const lo = Math.max(0, Math.trunc(centre - support + 0.5));
    const n = Math.min(inSize, Math.trunc(centre + support + 0.5)) - lo;
    let total = 0;
    for (let t = 0; t < n; t++) {
      w[t] = bicubic((t + lo - centre + 0.5) * inverse);
      total += w[t]!;
    }
    for (let t = 0; t < n; t++) {
      const v = total !== 0 ? w[t]! / total : w[t]!;
      weights[i * ksize + t] = v < 0 ? Math.trunc(-0.5 + v * ONE) : Math.trunc(0.5 + v * ONE);
    }
    first[i] = lo;
    count[i] = n;
  }
  return { first, count, ksize, weights };
}
