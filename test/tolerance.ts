// Tolerances derived from the arithmetic, so that another thread count, BLAS kernel or SIMD width
// (each sums in another order) cannot flip a test that one run happened to pass.

/** float32 machine epsilon (the spacing of floats at 1). */
export const EPS32 = 2 ** -23;

/**
 * How far two float32 evaluations of one value may differ when they only round differently:
 * a length-n reduction whose values (partial sums) are of size `magnitude` accumulates about
 * eps·√n·magnitude of rounding; two evaluations differ by up to about twice that (the default
 * `safety`). Raise `safety` for chains of reductions; pass magnitude 1 for a relative bound.
 */
export function float32Bound(n: number, magnitude = 1, safety = 2): number {
  return safety * EPS32 * Math.sqrt(n) * magnitude;
}
