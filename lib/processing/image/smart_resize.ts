// Qwen2-VL's smart_resize (transformers v4.47 image_processing_qwen2_vl.py): the size an image is
// resized to so both sides are multiples of `factor` and the pixel count lies in
// [minPixels, maxPixels], keeping the aspect ratio close. Float64 math in Python's operation order.

/** Options of smartResize; defaults are Qwen2VLImageProcessor's class defaults. */
export interface SmartResizeOptions {
  /** patch_size * merge_size. Default 28. */
  factor?: number;
  /** Default 56 * 56 = 3136. */
  minPixels?: number;
  /** Default 28 * 28 * 1280 = 1003520. */
  maxPixels?: number;
}

/** Python's round() of a float to an integer: ties go to the even neighbour (2.5 -> 2, 12.5 -> 12). */
export function roundHalfEven(x: number): number {
  const floor = Math.floor(x);
  const diff = x - floor; // exact in float64
  if (diff > 0.5) return floor + 1;
  if (diff < 0.5) return floor;
  return floor % 2 === 0 ? floor : floor + 1;
}

function checkPositiveInteger(name: string, value: number): void {
  if (!Number.isInteger(value) || value <= 0) {
    throw new RangeError(`smartResize: expected a positive integer for ${name} but received ${String(value)}`);
  }
}

/** The resized {height, width} for an image of height x width pixels. */
export function smartResize(
  height: number,
  width: number,
  options: SmartResizeOptions = {},
): { height: number; width: number } {
  const factor = options.factor ?? 28;
  const minPixels = options.minPixels ?? 3136;
  const maxPixels = options.maxPixels ?? 1003520;
  checkPositiveInteger('height', height);
  checkPositiveInteger('width', width);
  checkPositiveInteger('factor', factor);
  checkPositiveInteger('minPixels', minPixels);
  checkPositiveInteger('maxPixels', maxPixels);
  if (height < factor || width < factor) {
    throw new RangeError(`smartResize: height ${height} and width ${width} must both be at least factor ${factor}`);
  }
  if (Math.max(height, width) / Math.min(height, width) > 200) {
    throw new RangeError(
      `smartResize: absolute aspect ratio must be at most 200, got ${Math.max(height, width) / Math.min(height, width)} for ${height}x${width}`,
    );
  }
  let h = roundHalfEven(height / factor) * factor;
  let w = roundHalfEven(width / factor) * factor;
  if (h * w > maxPixels) {
    const beta = Math.sqrt((height * width) / maxPixels);
    h = Math.floor(height / beta / factor) * factor;
    w = Math.floor(width / beta / factor) * factor;
  } else if (h * w < minPixels) {
    const beta = Math.sqrt(minPixels / (height * width));
    h = Math.ceil((height * beta) / factor) * factor;
    w = Math.ceil((width * beta) / factor) * factor;
  }
  return { height: h, width: w };
}
