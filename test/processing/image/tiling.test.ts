// InternVL's grid choice (find_closest_aspect_ratio) and tiling against the goldens and against
// the reference rule run by Python itself (a set of candidates sorted by tile count) over
// thousands of sizes.
import { describe, expect, it } from 'vitest';
import {
  candidateGrids,
  closestAspectRatio,
  dynamicPreprocess,
  rgbImage,
  tileGrid,
} from '../../../lib/processing/image/index.js';
import { between, readJson, rng, runPython } from './helpers.js';

const golden = readJson('preprocess/internvl_dynamic_preprocess.json');

// dataset.py's rule (2410d1d); prints "columns rows" per input line "w h min max".
const PY_TILING = `
import sys
def find_closest_aspect_ratio(aspect_ratio, target_ratios, width, height, image_size):
    best_ratio_diff = float('inf')
    best_ratio = (1, 1)
    area = width * height
    for ratio in target_ratios:
        target_aspect_ratio = ratio[0] / ratio[1]
        ratio_diff = abs(aspect_ratio - target_aspect_ratio)
        if ratio_diff < best_ratio_diff:
            best_ratio_diff = ratio_diff
            best_ratio = ratio
        elif ratio_diff == best_ratio_diff:
            if area > 0.5 * image_size * image_size * ratio[0] * ratio[1]:
                best_ratio = ratio
    return best_ratio
out = []
for line in sys.stdin:
    w, h, lo, hi = map(int, line.split())
    ratios = set((i, j) for n in range(lo, hi + 1) for i in range(1, n + 1) for j in range(1, n + 1) if lo <= i * j <= hi)
    ratios = sorted(ratios, key=lambda x: x[0] * x[1])
    out.append("%d %d" % find_closest_aspect_ratio(w / h, ratios, w, h, 448))
print("\\n".join(out))
`;

describe('InternVL tiling', () => {
  it('picks the golden grids and tile counts', () => {
    let checked = 0;
    for (const image of Object.values<any>(golden.images)) {
      for (const [maxNum, entry] of Object.entries<any>(image.max_num)) {
        const grid = tileGrid(image.width, image.height, { maxNum: Number(maxNum) });
        expect([grid.columns, grid.rows]).toEqual(entry.target_aspect_ratio);
        expect([448 * grid.columns, 448 * grid.rows]).toEqual([entry.resized_width, entry.resized_height]);
        const img = rgbImage(image.width, image.height, new Uint8Array(image.width * image.height * 3));
        expect(dynamicPreprocess(img, { maxNum: Number(maxNum), useThumbnail: false }).length).toBe(
          entry.without_thumbnail.num_tiles,
        );
        expect(dynamicPreprocess(img, { maxNum: Number(maxNum) }).length).toBe(entry.with_thumbnail.num_tiles);
        checked++;
      }
    }
    expect(checked).toBe(8);
  });

  it('keeps (1, 1) on an exact tie unless the image fills more than half the larger canvas', () => {
    expect(tileGrid(140, 140)).toEqual({ columns: 1, rows: 1 });
    expect(tileGrid(1000, 1000)).toEqual({ columns: 3, rows: 3 });
    expect(tileGrid(800, 600)).toEqual({ columns: 4, rows: 3 });
    expect(tileGrid(1920, 1080)).toEqual({ columns: 4, rows: 2 });
    // (2, 2) ties (1, 1) for a square and wins only past half its canvas, 0.5 * 448^2 * 4 = 401408.
    expect(closestAspectRatio(1, candidateGrids(1, 4), 633, 633, 448)).toEqual({ columns: 1, rows: 1 });
    expect(closestAspectRatio(1, candidateGrids(1, 4), 634, 634, 448)).toEqual({ columns: 2, rows: 2 });
  });

  it('matches the Python rule over thousands of sizes and budgets', () => {
    const random = rng(11);
    const cases: number[][] = [];
    for (const [lo, hi] of [
      [1, 6],
      [1, 12],
      [1, 24],
      [2, 9],
      [1, 1],
      [4, 4],
    ]) {
      for (let k = 0; k < 700; k++) cases.push([between(random, 1, 4000), between(random, 1, 4000), lo!, hi!]);
      for (let s = 200; s <= 1600; s += 7) cases.push([s, s, lo!, hi!], [2 * s, s, lo!, hi!], [s, 3 * s, lo!, hi!]);
    }
    const lines = runPython(PY_TILING, cases.map((c) => c.join(' ')).join('\n'))
      .toString()
      .trim()
      .split('\n');
    expect(lines.length).toBe(cases.length);
    cases.forEach(([w, h, minNum, maxNum], k) => {
      const g = tileGrid(w!, h!, { minNum, maxNum });
      if (`${g.columns} ${g.rows}` !== lines[k])
        expect.fail(`tileGrid(${w}, ${h}, ${minNum}..${maxNum}): ${g.columns} ${g.rows}, Python ${lines[k]}`);
    });
  });

  it('cuts tiles row-major from the resized image and puts the thumbnail last', () => {
    // A 2x1 grid: paint the left half 10 and the right half 200; tiles keep that order.
    const img = rgbImage(896, 448, new Uint8Array(896 * 448 * 3));
    for (let y = 0; y < 448; y++) img.data.fill(200, (y * 896 + 448) * 3, (y + 1) * 896 * 3);
    for (let y = 0; y < 448; y++) img.data.fill(10, y * 896 * 3, (y * 896 + 448) * 3);
    const tiles = dynamicPreprocess(img, { maxNum: 2 });
    expect(tiles.map((t) => [t.width, t.height, t.data[0]])).toEqual([
      [448, 448, 10],
      [448, 448, 200],
      [448, 448, 10],
    ]);
    expect(tiles[2]!.data[447 * 3]).toBeGreaterThan(100); // the thumbnail's right half is bright
  });

  it('rejects bad options', () => {
    expect(() => tileGrid(0, 10)).toThrow(/tileGrid: expected a positive integer for width/);
    expect(() => tileGrid(10, 10, { minNum: 5, maxNum: 4 })).toThrow(/minNum 5 is larger than maxNum 4/);
    expect(() => tileGrid(10, 10, { maxNum: 1.5 })).toThrow(/maxNum/);
  });
});
