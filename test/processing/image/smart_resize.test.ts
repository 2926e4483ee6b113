// smartResize against the Qwen2VLImageProcessor goldens and against the reference function run by
// Python itself (round half to even, float64 operation order) over many sizes and settings.
import { describe, expect, it } from 'vitest';
import { roundHalfEven, smartResize } from '../../../lib/processing/image/index.js';
import { between, readJson, rng, runPython } from './helpers.js';

const golden = readJson('preprocess/qwen2_vl_image_processor.json');

// transformers v4.47 smart_resize, verbatim semantics; prints one "h w" or "error" per input line.
const PY_SMART_RESIZE = `
import math, sys
def smart_resize(height, width, factor, min_pixels, max_pixels):
    if height < factor or width < factor:
        raise ValueError("small")
    elif max(height, width) / min(height, width) > 200:
        raise ValueError("aspect")
    h_bar = round(height / factor) * factor
    w_bar = round(width / factor) * factor
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt((height * width) / max_pixels)
        h_bar = math.floor(height / beta / factor) * factor
        w_bar = math.floor(width / beta / factor) * factor
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar
out = []
for line in sys.stdin:
    h, w, f, lo, hi = map(int, line.split())
    try:
        out.append("%d %d" % smart_resize(h, w, f, lo, hi))
    except ValueError:
        out.append("error")
print("\\n".join(out))
`;

describe('smartResize', () => {
  it('matches the goldens for every setting and image', () => {
    let checked = 0;
    for (const setting of Object.values<any>(golden.settings)) {
      for (const image of Object.values<any>(setting.images)) {
        const size = smartResize(image.height, image.width, {
          minPixels: setting.min_pixels,
          maxPixels: setting.max_pixels,
        });
        expect(size).toEqual({ height: image.resized_height, width: image.resized_width });
        checked++;
      }
    }
    expect(checked).toBe(12);
  });

  it('rounds half to even like Python', () => {
    expect([0.5, 1.5, 2.5, 3.5, 12.5, -0.5, -1.5, 2.4999999999999996, 2.5000000000000004].map(roundHalfEven)).toEqual([
      0, 2, 2, 4, 12, 0, -2, 2, 3,
    ]);
    expect(smartResize(350, 70)).toEqual({ height: 336, width: 56 }); // 12.5 -> 12, 2.5 -> 2
    expect(smartResize(126, 126)).toEqual({ height: 112, width: 112 }); // 4.5 -> 4
  });

  it('matches Python over many sizes, settings and factors', () => {
    const random = rng(7);
    const cases: number[][] = [];
    const settings = [
      [28, 3136, 1003520],
      [28, 200704, 1003520],
      [28, 3136, 200704],
      [28, 200704, 1003520 * 1.2e1],
      [28, 3136, 12845056],
      [32, 4096, 1048576],
    ];
    for (const [f, lo, hi] of settings) {
      for (const h of [27, 28, 42, 70, 126, 350, 14 * 3, 28 * 5 + 14, 5600, 5601]) {
        for (const w of [28, 70, 126, 350, 1000, 5599]) cases.push([h, w, f!, lo!, Math.round(hi!)]);
      }
      for (let k = 0; k < 1500; k++) {
        const big = random() < 0.2;
        cases.push([
          between(random, 20, big ? 20000 : 2000),
          between(random, 20, big ? 20000 : 2000),
          f!,
          lo!,
          Math.round(hi!),
        ]);
      }
      // Extreme aspect ratios around the 200 limit, and half-way sizes (k + 0.5) * factor.
      for (const side of [28, 29, 30, 55])
        cases.push([side, side * 200, f!, lo!, hi!], [side * 200 + 1, side, f!, lo!, hi!]);
      for (let k = 1; k < 60; k++)
        cases.push([Math.round((k + 0.5) * f!), Math.round((2 * k + 0.5) * f!), f!, lo!, hi!]);
    }
    const lines = runPython(PY_SMART_RESIZE, cases.map((c) => c.join(' ')).join('\n'))
      .toString()
      .trim()
      .split('\n');
    expect(lines.length).toBe(cases.length);
    let errors = 0;
    cases.forEach(([h, w, factor, minPixels, maxPixels], k) => {
      let ours: string;
      try {
        const r = smartResize(h!, w!, { factor, minPixels, maxPixels });
        ours = `${r.height} ${r.width}`;
      } catch {
        ours = 'error';
        errors++;
      }
      if (ours !== lines[k])
        expect.fail(
          `smartResize(${h}, ${w}, factor ${factor}, ${minPixels}, ${maxPixels}): ${ours}, Python ${lines[k]}`,
        );
    });
    expect(errors).toBeGreaterThan(10); // the error branches were exercised
  });

  it('rejects sides below the factor, aspect ratios above 200 and bad arguments', () => {
    expect(() => smartResize(27, 100)).toThrow(/height 27 and width 100 must both be at least factor 28/);
    expect(() => smartResize(100, 10)).toThrow(/at least factor 28/);
    expect(() => smartResize(28, 28 * 200 + 1)).toThrow(/aspect ratio must be at most 200/);
    expect(smartResize(28, 28 * 200, { maxPixels: 1e7 })).toEqual({ height: 28, width: 5600 });
    expect(() => smartResize(100.5, 100)).toThrow(/positive integer for height/);
    expect(() => smartResize(100, 100, { maxPixels: 0 })).toThrow(/positive integer for maxPixels/);
  });
});
