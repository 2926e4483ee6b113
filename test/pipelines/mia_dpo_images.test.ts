// MIA-DPO's picture forms checked on the pictures themselves (decoded with sharp): the grid's
// canvas and 448-pixel cells at the positions combine_images_with_labels computes, each source
// aspect-fitted at its cell's top-left on white, a dark "Image{i}" label in the 40-pixel band
// above each cell; pic-in-pic's inner picture at 0.7 of the outer one, centred (including the
// float detail 170 x 0.7 = 118.99... -> 118); the prompts; the noise only where MIA-DPO puts it.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { afterAll, describe, expect, it } from 'vitest';
import {
  cellFit,
  containsBox,
  gridLayout,
  gridPrompt,
  noiseGridRegion,
  noiseWrapped,
  pipPlacement,
  pipPrompt,
  sequencePrompt,
  writeGrid,
  writePictureInPicture,
} from '../../lib/pipelines/mia_dpo_images.js';
import { PythonRandom } from '../../lib/pipelines/python_random.js';

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'vlalign-mia-images-'));
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

type Rgb = [number, number, number];
async function solid(name: string, width: number, height: number, color: Rgb): Promise<string> {
  const file = path.join(root, name);
  await sharp({ create: { width, height, channels: 3, background: { r: color[0], g: color[1], b: color[2] } } })
    .png()
    .toFile(file);
  return file;
}

interface Raw {
  width: number;
  height: number;
  data: Buffer;
}
async function decode(file: string): Promise<Raw> {
  const { data, info } = await sharp(file).raw().toBuffer({ resolveWithObject: true });
  expect(info.channels).toBe(3);
  return { width: info.width, height: info.height, data };
}
const pixel = (img: Raw, x: number, y: number): Rgb => {
  const at = (y * img.width + x) * 3;
  return [img.data[at]!, img.data[at + 1]!, img.data[at + 2]!];
};
/** Every pixel of [x0, x1) x [y0, y1) within `tol` of `color`. */
function regionIs(img: Raw, x0: number, y0: number, x1: number, y1: number, color: Rgb, tol = 2): boolean {
  for (let y = y0; y < y1; y++)
    for (let x = x0; x < x1; x++) if (pixel(img, x, y).some((v, c) => Math.abs(v - color[c]!) > tol)) return false;
  return true;
}
function darkPixels(img: Raw, x0: number, y0: number, x1: number, y1: number): number {
  let n = 0;
  for (let y = y0; y < y1; y++) for (let x = x0; x < x1; x++) if (Math.max(...pixel(img, x, y)) < 100) n++;
  return n;
}

const WHITE: Rgb = [255, 255, 255];
const COLORS: Rgb[] = [
  [200, 30, 30],
  [30, 160, 40],
  [40, 60, 210],
  [220, 180, 20],
  [120, 40, 160],
  [20, 170, 170],
  [90, 90, 90],
  [230, 110, 30],
  [150, 20, 90],
];
// Source sizes (w, h) of varied aspect: landscape, portrait, square.
const SIZES: [number, number][] = [
  [300, 200],
  [200, 400],
  [100, 100],
  [640, 480],
  [90, 270],
  [500, 125],
  [333, 222],
  [150, 300],
  [448, 448],
];

describe('grid layout (combine_images_with_labels)', () => {
  it('has the canvas sizes 448 x cols + 40 x (cols - 1) by (448 + 40) x rows', () => {
    const sizes = [2, 3, 4, 6, 9].map((n) => {
      const l = gridLayout(n);
      return [n, l.rows, l.cols, l.width, l.height];
    });
    expect(sizes).toEqual([
      [2, 1, 2, 936, 488],
      [3, 1, 3, 1424, 488],
      [4, 2, 2, 936, 976],
      [6, 2, 3, 1424, 976],
      [9, 3, 3, 1424, 1464],
    ]);
    expect(gridLayout(6).cells.map((c) => [c.label, c.x, c.y, c.labelX, c.labelY])).toEqual([
      ['Image1', 0, 40, 20, 0],
      ['Image2', 488, 40, 508, 0],
      ['Image3', 976, 40, 996, 0],
      ['Image4', 0, 528, 20, 488],
      ['Image5', 488, 528, 508, 488],
      ['Image6', 976, 528, 996, 488],
    ]);
    expect(() => gridLayout(5)).toThrow(/2, 3, 4, 6, 9/);
  });

  it('fits the long side to 448 and truncates the other (resize_and_pad)', () => {
    expect(cellFit(300, 200)).toEqual({ width: 448, height: 298 }); // 448 / 1.5 = 298.67
    expect(cellFit(200, 400)).toEqual({ width: 224, height: 448 });
    expect(cellFit(100, 100)).toEqual({ width: 448, height: 448 });
    expect(cellFit(333, 222)).toEqual({ width: 448, height: 298 });
    expect(cellFit(90, 270)).toEqual({ width: 149, height: 448 }); // 448 / 3 = 149.33
  });

  for (const n of [2, 3, 4, 6, 9]) {
    it(`draws ${n} cells: each source at its cell's top-left on white, labelled above`, async () => {
      const files = await Promise.all(SIZES.slice(0, n).map(([w, h], i) => solid(`g${n}_${i}.png`, w, h, COLORS[i]!)));
      const out = path.join(root, `grid_${n}.png`);
      const layout = await writeGrid(files, out);
      const img = await decode(out);
      expect([img.width, img.height]).toEqual([layout.width, layout.height]);
      layout.cells.forEach((cell, i) => {
        const [w, h] = SIZES[i]!;
        const fit = cellFit(w, h);
        // the picture, inset by 2 px from its edges (resampling blends the border rows)
        expect(regionIs(img, cell.x + 2, cell.y + 2, cell.x + fit.width - 2, cell.y + fit.height - 2, COLORS[i]!)).toBe(
          true,
        );
        // the rest of the cell is white: right of the picture and below it
        expect(regionIs(img, cell.x + fit.width + 1, cell.y, cell.x + 448, cell.y + 448, WHITE)).toBe(true);
        expect(regionIs(img, cell.x, cell.y + fit.height + 1, cell.x + 448, cell.y + 448, WHITE)).toBe(true);
        // the label: dark text in the band above the cell, from 20 px in; white beyond it
        expect(darkPixels(img, cell.labelX, cell.labelY, cell.labelX + 130, cell.labelY + 40)).toBeGreaterThan(100);
        expect(regionIs(img, cell.x, cell.labelY, cell.labelX - 2, cell.labelY + 40, WHITE)).toBe(true);
        expect(regionIs(img, cell.labelX + 160, cell.labelY, cell.x + 448, cell.labelY + 40, WHITE)).toBe(true);
      });
      // the 40 px gutters between columns are white
      for (let j = 1; j < layout.cols; j++) {
        const x = j * 488 - 40;
        expect(regionIs(img, x, 0, x + 40, layout.height, WHITE)).toBe(true);
      }
    });
  }

  it('labels differ: the label of cell 2 is not the pixels of cell 1 label', async () => {
    const files = await Promise.all([solid('l1.png', 50, 50, COLORS[0]!), solid('l2.png', 50, 50, COLORS[1]!)]);
    const out = path.join(root, 'labels.png');
    await writeGrid(files, out);
    const img = await decode(out);
    const band = (x0: number) => {
      const bits: number[] = [];
      for (let y = 0; y < 40; y++)
        for (let x = x0; x < x0 + 130; x++) bits.push(Math.max(...pixel(img, x, y)) < 100 ? 1 : 0);
      return bits;
    };
    expect(band(20)).not.toEqual(band(508)); // "Image1" vs "Image2": the last glyph differs
  });
});

describe('pic-in-pic (resize_and_paste_image)', () => {
  it('places the inner picture at 0.7 of the outer one, centred, by both branches', () => {
    // width-bound: 400 x 0.7 / 2 = 140 <= 210
    expect(pipPlacement({ width: 200, height: 100 }, { width: 400, height: 300 })).toEqual({
      width: 280,
      height: 140,
      left: 60,
      top: 80,
    });
    // height-bound: int(300 x 0.7) = 210, width int(210 x 0.5) = 105
    expect(pipPlacement({ width: 100, height: 200 }, { width: 400, height: 300 })).toEqual({
      width: 105,
      height: 210,
      left: 147,
      top: 45,
    });
    // Python's float: 170 x 0.7 = 118.99999999999999, so int() gives 118 (and 59 = int(118 x 0.5))
    expect(pipPlacement({ width: 100, height: 200 }, { width: 400, height: 170 })).toEqual({
      width: 59,
      height: 118,
      left: 170,
      top: 26,
    });
  });

  it('writes the outer picture with the inner one pasted at the centre', async () => {
    const inner = await solid('inner.png', 200, 100, COLORS[2]!);
    const outer = await solid('outer.png', 400, 300, COLORS[3]!);
    const out = path.join(root, 'pip.png');
    await writePictureInPicture(inner, outer, out);
    const img = await decode(out);
    expect([img.width, img.height]).toEqual([400, 300]);
    expect(regionIs(img, 62, 82, 338, 218, COLORS[2]!)).toBe(true);
    // 0.7 scale: the inner colour spans 280 of 400 columns on the middle row
    const mid = Array.from({ length: 400 }, (_, x) => pixel(img, x, 150));
    const inside = mid.filter((p) => p.every((v, c) => Math.abs(v - COLORS[2]![c]!) <= 40)).length;
    expect(inside).toBeGreaterThanOrEqual(278);
    expect(inside).toBeLessThanOrEqual(282);
    expect(inside / 400).toBeCloseTo(0.7, 2);
    expect(regionIs(img, 0, 0, 58, 300, COLORS[3]!)).toBe(true);
    expect(regionIs(img, 342, 0, 400, 300, COLORS[3]!)).toBe(true);
    expect(regionIs(img, 0, 0, 400, 78, COLORS[3]!)).toBe(true);
    expect(regionIs(img, 0, 222, 400, 300, COLORS[3]!)).toBe(true);
  });
});

describe('prompts', () => {
  it('rewrites the question per form as MIA-DPO does', () => {
    expect(sequencePrompt('<image>\nWhat is in the box?', 3, 2)).toBe(
      'Image1:<image>\nImage2:<image>\nImage3:<image>\nIn Image2, what is in the box?',
    );
    expect(gridPrompt('What colour is the car?\n<image>', 4)).toBe('<image>\nIn Image4, what colour is the car?\n');
    expect(pipPrompt('<image>\nDescribe it.', 'Regarding the central image')).toBe(
      '<image>\nRegarding the central image, describe it.',
    );
  });
  it('finds bounding boxes as contains_bbox does', () => {
    expect(containsBox('the dog [0.12, 0.3, 0.5, 0.77]')).toBe(true);
    expect(containsBox('[1,2,3,4]')).toBe(true);
    expect(containsBox('[1, 2, 3]')).toBe(false);
    expect(containsBox('a [b, c, d, e]')).toBe(false);
  });
});

describe('noise the selecting model sees', () => {
  const image = { width: 30, height: 20, data: new Uint8Array(30 * 20 * 3).fill(250) };
  it('grid: only the target region (H // rows x W // cols) changes, clipped to [0, 255]', () => {
    const noisy = noiseGridRegion(image, 2, 3, 5, new PythonRandom(1)); // row 1, col 1: x 10..19, y 10..19
    let changedOutside = 0;
    let changedInside = 0;
    for (let y = 0; y < 20; y++) {
      for (let x = 0; x < 30; x++) {
        const inside = x >= 10 && x < 20 && y >= 10;
        const changed = noisy.data[(y * 30 + x) * 3] !== 250;
        if (inside && changed) changedInside++;
        if (!inside && changed) changedOutside++;
      }
    }
    expect(changedOutside).toBe(0);
    expect(changedInside).toBeGreaterThan(90);
    // σ 225 on 250: about half the draws push past 255 and clip there
    const region = [...noisy.data].filter((v) => v === 255).length;
    expect(region).toBeGreaterThan(100);
  });
  it('pic-in-pic: noise added modulo 256 (uint8 wraparound), so 250 + a positive draw wraps to a small value', () => {
    const noisy = noiseWrapped(image, new PythonRandom(2));
    const wrapped = [...noisy.data].filter((v) => v < 200).length;
    const clippedHigh = [...noisy.data].filter((v) => v === 255).length;
    expect(wrapped).toBeGreaterThan(400); // draws in (5, 255) wrap; a clip would keep them at 255
    expect(clippedHigh).toBeLessThan(60); // only draws of exactly 5; a clip would hold ~46% (~800) at 255
  });
});
