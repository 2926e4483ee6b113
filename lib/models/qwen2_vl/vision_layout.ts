// Index bookkeeping of the Qwen vision tower, in plain integers: where each patch row sits in its
// image (for the 2-D rotary), which rows form one image (block-diagonal attention) and, for
// Qwen2.5-VL, the window permutation. Rows arrive in 2×2 merge-block order (see the processor).

export type Grid = readonly [number, number, number];

/** Per patch row: its (row, col) in the patch grid, merge-block order, repeated per frame. */
export function patchPositions(grids: readonly Grid[], merge: number): { rows: Int32Array; cols: Int32Array } {
  const total = grids.reduce((n, [t, h, w]) => n + t * h * w, 0);
  const rows = new Int32Array(total);
  const cols = new Int32Array(total);
  let k = 0;
  for (const [t, h, w] of grids) {
    for (let frame = 0; frame < t; frame++) {
      for (let bh = 0; bh < h / merge; bh++) {
        for (let bw = 0; bw < w / merge; bw++) {
          for (let mh = 0; mh < merge; mh++) {
            for (let mw = 0; mw < merge; mw++) {
              rows[k] = bh * merge + mh;
              cols[k++] = bw * merge + mw;
            }
          }
        }
      }
    }
  }
  return { rows, cols };
}

/** [0, n1, n1+n2, ...]: one attention segment per frame of each image. */
export function imageSegments(grids: readonly Grid[]): number[] {
  const cu = [0];
  for (const [t, h, w] of grids) for (let f = 0; f < t; f++) cu.push(cu[cu.length - 1]! + h * w);
  return cu;
}

export interface WindowLayout {
  /** Merged-token order after windowing: windowIndex[i] = original merged-token index. */
  windowIndex: Int32Array;
  /** Cumulative patch-row boundaries of the windows, empty windows dropped. */
  cuWindowSeqlens: number[];
}

/**
 * Qwen2.5-VL windows: merged tokens are grouped into windows of `side`×`side` merged units (padding
 * grids up to a multiple; a grid already a multiple still gets a whole padding window, as in the
 * reference, whose empty boundary is dropped), read window by window, row-major inside each.
 */
export function windowLayout(grids: readonly Grid[], merge: number, side: number): WindowLayout {
  const order: number[] = [];
  const cu = [0];
  const unit = merge * merge;
  let offset = 0;
  for (const [t, h, w] of grids) {
    const lh = h / merge;
    const lw = w / merge;
    const nh = Math.floor((lh + side - (lh % side)) / side);
    const nw = Math.floor((lw + side - (lw % side)) / side);
    for (let frame = 0; frame < t; frame++) {
      for (let wy = 0; wy < nh; wy++) {
        for (let wx = 0; wx < nw; wx++) {
          let count = 0;
          for (let y = wy * side; y < Math.min((wy + 1) * side, lh); y++) {
            for (let x = wx * side; x < Math.min((wx + 1) * side, lw); x++) {
              order.push(offset + (frame * lh + y) * lw + x);
              count++;
            }
          }
          const next = cu[cu.length - 1]! + count * unit;
          if (next !== cu[cu.length - 1]) cu.push(next);
        }
      }
    }
    offset += t * lh * lw;
  }
  return { windowIndex: Int32Array.from(order), cuWindowSeqlens: cu };
}
