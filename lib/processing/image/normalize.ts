// Per-channel lookup tables from uint8 to normalised float32. Every processor maps a pixel value v
// of channel c through a fixed chain of float32 operations, so the 256 possible results per
// channel are computed once, with the reference's exact rounding, and the image is a table gather.

/**
 * A [3 * 256] table: entry c * 256 + v = fround(fround(scale(v) - mean[c]) / std[c]), where
 * mean and std are first rounded to float32 (numpy / torch hold them as float32 arrays).
 */
export function channelLut(
  scale: (v: number) => number,
  mean: readonly number[],
  std: readonly number[],
): Float32Array {
  const lut = new Float32Array(3 * 256);
  for (let c = 0; c < 3; c++) {
    const m = Math.fround(mean[c]!);
    const s = Math.fround(std[c]!);
    for (let v = 0; v < 256; v++) lut[c * 256 + v] = Math.fround(Math.fround(scale(v)) - m) / s;
  }
  return lut;
}

/** Checks a per-channel list (image_mean / image_std) has three finite numbers. */
export function checkChannels(where: string, name: string, values: readonly number[]): void {
  if (values.length !== 3 || values.some((v) => !Number.isFinite(v))) {
    throw new RangeError(`${where}: expected three finite numbers for ${name} but received [${values.join(', ')}]`);
  }
}

/**
 * An uninitialised float32 array of `length` elements, for outputs the caller fully overwrites:
 * zero-filling a large result would cost a full extra pass over it.
 */
export function uninitialisedFloat32(length: number): Float32Array {
  return new Float32Array(Buffer.allocUnsafeSlow(length * 4).buffer, 0, length);
}
