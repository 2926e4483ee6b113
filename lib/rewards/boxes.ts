// Box overlap measures on [x1, y1, x2, y2] corner boxes, written as each anchor's source does them
// (their edge cases differ: which side of a touch counts, what a zero union gives).

export type Box = readonly [number, number, number, number];

/** ViRFT's `calculate_iou`: 0 unless the overlap has positive width and height; a zero union throws (ZeroDivisionError). */
export function virftIou(a: Box, b: Box): number {
  const ix1 = Math.max(a[0], b[0]);
  const iy1 = Math.max(a[1], b[1]);
  const ix2 = Math.min(a[2], b[2]);
  const iy2 = Math.min(a[3], b[3]);
  if (ix2 <= ix1 || iy2 <= iy1) return 0;
  const inter = (ix2 - ix1) * (iy2 - iy1);
  const union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter;
  if (union === 0) throw new RangeError('IoU of boxes with a zero union');
  return inter / union;
}

/** The standard IoU with areas clamped at 0 and 0 where the union is not positive (verl-internvl's `_iou`). */
export function clampedIou(a: Box, b: Box): number {
  const inter =
    Math.max(0, Math.min(a[2], b[2]) - Math.max(a[0], b[0])) * Math.max(0, Math.min(a[3], b[3]) - Math.max(a[1], b[1]));
  const area = (box: Box) => Math.max(0, box[2] - box[0]) * Math.max(0, box[3] - box[1]);
  const union = area(a) + area(b) - inter;
  return union <= 0 ? 0 : inter / union;
}

/** torchvision's `box_iou` for one pair (areas not clamped; a zero union gives NaN, as 0/0 does there). */
export function torchvisionIou(a: Box, b: Box): number {
  const w = Math.max(0, Math.min(a[2], b[2]) - Math.max(a[0], b[0]));
  const h = Math.max(0, Math.min(a[3], b[3]) - Math.max(a[1], b[1]));
  const inter = w * h;
  const union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter;
  return inter / union;
}

/**
 * ViRFT LISA's `compute_giou`: IoU (0 when the union is not positive) minus (C - U) / C, C the
 * enclosing box's area (IoU alone when C is not positive), plus 1, so in [0, 2].
 */
export function lisaGiouPlusOne(gt: Box, pred: Box): number {
  const inter =
    Math.max(0, Math.min(gt[2], pred[2]) - Math.max(gt[0], pred[0])) *
    Math.max(0, Math.min(gt[3], pred[3]) - Math.max(gt[1], pred[1]));
  const union = (gt[2] - gt[0]) * (gt[3] - gt[1]) + (pred[2] - pred[0]) * (pred[3] - pred[1]) - inter;
  const iou = union > 0 ? inter / union : 0;
  const enclosing =
    (Math.max(gt[2], pred[2]) - Math.min(gt[0], pred[0])) * (Math.max(gt[3], pred[3]) - Math.min(gt[1], pred[1]));
  const giou = enclosing > 0 ? iou - (enclosing - union) / enclosing : iou;
  return giou + 1;
}

/** A box from a value that must be 4 finite numbers; null otherwise. */
export function boxOf(value: unknown): Box | null {
  if (!Array.isArray(value) || value.length !== 4) return null;
  if (!value.every((v) => typeof v === 'number' && Number.isFinite(v))) return null;
  return value as unknown as Box;
}
