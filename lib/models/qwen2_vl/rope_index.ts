// M-RoPE position ids (transformers' get_rope_index), computed on plain integers. Text tokens get
// the same position on the t, h and w axes, continuing from the previous maximum + 1; the tokens of
// an image with merged grid (t, h, w) get (t_idx, h_idx, w_idx) offset by where the image starts.
// Only unpadded tokens are numbered; padding gets position 1 on every axis, as in the reference.
import type { Grid } from './vision_layout.js';

export interface RopeTokens {
  imageTokenId: number;
  videoTokenId: number;
  visionStartTokenId: number;
  spatialMergeSize: number;
}

export interface RopeIndex {
  /** [3][B][L] positions. */
  positions: Int32Array[][];
  /** Per row: max position + 1 − L (L includes padding); decoding adds it to the token index. */
  deltas: number[];
}

/** ids[b][l], mask[b][l] (1 = real token) and the image grids of the whole batch in prompt order. */
export function ropeIndex(
  ids: ArrayLike<number>[],
  mask: ArrayLike<number>[] | null,
  grids: readonly Grid[],
  tokens: RopeTokens,
): RopeIndex {
  const positions = [0, 1, 2].map(() => ids.map((row) => new Int32Array(row.length).fill(1)));
  const deltas: number[] = [];
  let nextImage = 0;
  ids.forEach((row, b) => {
    const kept: number[] = [];
    const tokensOfRow: number[] = [];
    for (let l = 0; l < row.length; l++) {
      if (mask !== null && mask[b]![l] !== 1) continue;
      kept.push(l);
      tokensOfRow.push(row[l]!);
    }
    const { axes, images } = rowPositions(tokensOfRow, grids, nextImage, tokens, b);
    nextImage += images;
    let max = -1;
    kept.forEach((l, k) => {
      for (let a = 0; a < 3; a++) {
        positions[a]![b]![l] = axes[a]![k]!;
        max = Math.max(max, axes[a]![k]!);
      }
    });
    deltas.push(max + 1 - row.length);
  });
  return { positions, deltas };
}

function rowPositions(
  row: number[],
  grids: readonly Grid[],
  firstImage: number,
  tokens: RopeTokens,
  b: number,
): { axes: Int32Array[]; images: number } {
  const axes = [0, 1, 2].map(() => new Int32Array(row.length));
  const merge = tokens.spatialMergeSize;
  let next = 0; // position the next text token gets
  let images = 0;
  let l = 0;
  while (l < row.length) {
    const id = row[l]!;
    if (id === tokens.videoTokenId && l > 0 && row[l - 1] === tokens.visionStartTokenId) {
      throw new Error(`input_ids row ${b}: video inputs are not supported`);
    }
    if (id !== tokens.imageTokenId) {
      for (let a = 0; a < 3; a++) axes[a]![l] = next;
      next++;
      l++;
      continue;
    }
    const grid = grids[firstImage + images];
    if (grid === undefined)
      throw new Error(`input_ids row ${b}: more image blocks than image_grid_thw rows (${grids.length})`);
    const [t, h, w] = [grid[0], grid[1] / merge, grid[2] / merge];
    const count = t * h * w;
    for (let k = 0; k < count; k++) {
      if (row[l + k] !== tokens.imageTokenId)
        throw new Error(`input_ids row ${b}: image ${firstImage + images} needs ${count} image tokens from index ${l}`);
      axes[0]![l + k] = next + Math.floor(k / (h * w));
      axes[1]![l + k] = next + (Math.floor(k / w) % h);
      axes[2]![l + k] = next + (k % w);
    }
    next += Math.max(t, h, w);
    l += count;
    images++;
  }
  return { axes, images };
}
