// Several completions of one prompt in one sequence: [prompt, completion 0, completion 1, ...]. A
// preference pair is a group of two (chosen, rejected); a GRPO rollout group is G samples of one
// prompt. Run unpacked, every completion repeats its prompt, image included; packed, the vision tower
// and the prompt run once per group. The model then needs a mask in which each completion sees the
// prompt and itself only, and positions that restart at the prompt's end for every completion
// (lib/train/group_forward.ts builds both from what is here). Layout of group i (row i, padded on
// the given side, `offset[i]` pad tokens first when that side is left):
//
//   tokens   | prompt (p)          | completion 0 (c0)    | completion 1 (c1)    | ...
//   segment  | 1 ...             1 | 2 ...              2 | 3 ...              3 | ...  (0 on padding)
//   position | 0 ...         p - 1 | p ...     p + c0 - 1 | p ...     p + c1 - 1 | ...  (1 on padding, as HF)
//
// The losses take one virtual row of width W per completion (W = the longest completion): column 0
// is the hidden state of the group's last prompt token, column j > 0 that of the completion's token
// j - 1; targets[row, j] is the completion's label j (what that position predicts). The hidden state
// of a completion's last token predicts nothing.
import * as torch from '../torch/index.js';
import type { Tensor } from '../torch/index.js';
import { padBatch, type PaddingSide } from '../processing/batch.js';
import { IGNORE_INDEX } from '../processing/segments.js';

/** Segment ids of packed tokens: completion k of a group has segment `firstCompletion + k`. */
export const GROUP_SEGMENT = { padding: 0, prompt: 1, firstCompletion: 2 } as const;

export interface LabelledTokens {
  ids: number[];
  /** Per token, the id it is trained to be, or IGNORE_INDEX (no loss on that token). */
  labels: number[];
}

export interface PromptGroup {
  prompt: number[];
  completions: LabelledTokens[];
}

export interface GroupLayoutOptions {
  padTokenId: number;
  side: PaddingSide;
  /** The targets' value where no loss applies. Default -100. */
  ignoreIndex?: number;
  /**
   * Order of the virtual rows: 'group' puts each group's completions next to each other (GRPO's
   * order); 'completion' puts completion 0 of every group first, then completion 1, ... (chosen
   * rows, then rejected rows: PreferenceLoss's order; every group must have as many completions).
   */
  order?: 'group' | 'completion';
}

export interface GroupLayout {
  /** [R, L] int64, one row per group. */
  inputIds: Tensor;
  /** [R, L] int64, 1 on tokens, 0 on padding. */
  attentionMask: Tensor;
  /** [R, L] int64 GROUP_SEGMENT ids. */
  segments: Tensor;
  /** [R, L] int64 1-D positions, every completion restarting at its prompt's end (1 on padding). */
  positionIds: Tensor;
  /**
   * [R, L] int64: how far each token's position is behind its index in the row (the lengths of the
   * earlier completions of its group): a family's own position scheme (M-RoPE) minus this restarts
   * every completion at the prompt's end.
   */
  positionShift: Tensor;
  /** Per group: padding tokens before its first token (left padding), else 0. */
  offset: number[];
  promptLength: number[];
  /** Per group, per completion. */
  completionLengths: number[][];
  /** Per virtual row, its [group, completion]. */
  rowSource: Array<[number, number]>;
  /** [V·W] int64 flat indices into the packed hidden states [R·L, D] (V rows of width W, row-major). */
  gatherIndex: Tensor;
  /** [V, W] int64: the token each virtual position predicts, ignoreIndex elsewhere. */
  targets: Tensor;
}

/** The packed tensors of `groups` (each with at least one completion). */
export function layoutGroups(groups: readonly PromptGroup[], options: GroupLayoutOptions): GroupLayout {
  const ignoreIndex = options.ignoreIndex ?? -100;
  checkGroups(groups, options.order ?? 'group');
  const rows = groups.map((g) => [g.prompt, ...g.completions.map((c) => c.ids)].flat());
  // padBatch pads on the requested side; its labels are not used (the targets below are the packed form's).
  const padded = padBatch(
    rows.map((ids) => ({ ids, labels: ids.map(() => IGNORE_INDEX) })),
    options.padTokenId,
    options.side,
  );
  padded.labels.dispose();
  const width = padded.inputIds.shape[1]!;
  const offset = rows.map((ids) => (options.side === 'left' ? width - ids.length : 0));
  const segments = new Int32Array(groups.length * width);
  const positions = new Int32Array(groups.length * width).fill(1);
  const shift = new Int32Array(groups.length * width);
  groups.forEach((g, i) => {
    const p = g.prompt.length;
    let at = i * width + offset[i]!;
    segments.fill(GROUP_SEGMENT.prompt, at, at + p);
    for (let k = 0; k < p; k++) positions[at + k] = k;
    at += p;
    let before = 0; // tokens of the group's earlier completions
    g.completions.forEach((c, k) => {
      segments.fill(GROUP_SEGMENT.firstCompletion + k, at, at + c.ids.length);
      shift.fill(before, at, at + c.ids.length);
      for (let j = 0; j < c.ids.length; j++) positions[at + j] = p + j;
      at += c.ids.length;
      before += c.ids.length;
    });
  });
  const rowSource = virtualOrder(groups, options.order ?? 'group');
  const { gatherIndex, targets } = virtualRows(groups, rowSource, offset, width, ignoreIndex);
  const long = (data: Int32Array): Tensor => torch.tensor(data, { dtype: 'int64', shape: [groups.length, width] });
  return {
    inputIds: padded.inputIds,
    attentionMask: padded.attentionMask,
    segments: long(segments),
    positionIds: long(positions),
    positionShift: long(shift),
    offset,
    promptLength: groups.map((g) => g.prompt.length),
    completionLengths: groups.map((g) => g.completions.map((c) => c.ids.length)),
    rowSource,
    gatherIndex,
    targets,
  };
}

function virtualOrder(groups: readonly PromptGroup[], order: 'group' | 'completion'): Array<[number, number]> {
  if (order === 'group') return groups.flatMap((g, i) => g.completions.map((_, k): [number, number] => [i, k]));
  const count = groups[0]?.completions.length ?? 0;
  return Array.from({ length: count }, (_, k) => groups.map((_, i): [number, number] => [i, k])).flat();
}

// Where each virtual row's columns sit in the flat [R·L] packed tokens, and what they predict.
// Columns past a completion's end point at the group's last prompt token (any valid index does:
// their targets are ignored, so no gradient flows through them).
function virtualRows(
  groups: readonly PromptGroup[],
  rowSource: ReadonlyArray<[number, number]>,
  offset: number[],
  width: number,
  ignoreIndex: number,
): { gatherIndex: Tensor; targets: Tensor } {
  const w = Math.max(1, ...groups.flatMap((g) => g.completions.map((c) => c.ids.length)));
  const index = new BigInt64Array(rowSource.length * w);
  const targets = new BigInt64Array(rowSource.length * w).fill(BigInt(ignoreIndex));
  rowSource.forEach(([i, k], row) => {
    const group = groups[i]!;
    const lastPrompt = i * width + offset[i]! + group.prompt.length - 1;
    // Completion token j - 1 sits at `before + j`, `before` being the token ahead of the completion
    // in the packed row (the last prompt token, or the end of the previous completion).
    const before = lastPrompt + group.completions.slice(0, k).reduce((n, c) => n + c.ids.length, 0);
    const completion = group.completions[k]!;
    for (let j = 0; j < w; j++) {
      const inside = j < completion.ids.length;
      index[row * w + j] = BigInt(j === 0 || !inside ? lastPrompt : before + j);
      const label = completion.labels[j];
      if (inside && label !== IGNORE_INDEX) targets[row * w + j] = BigInt(label!);
    }
  });
  return {
    gatherIndex: torch.tensor(index, { shape: [rowSource.length * w] }),
    targets: torch.tensor(targets, { shape: [rowSource.length, w] }),
  };
}

function checkGroups(groups: readonly PromptGroup[], order: 'group' | 'completion'): void {
  if (groups.length === 0) throw new RangeError('layoutGroups: no groups');
  groups.forEach((g, i) => {
    if (g.prompt.length === 0) throw new RangeError(`layoutGroups: group ${i} has an empty prompt`);
    if (g.completions.length === 0) throw new RangeError(`layoutGroups: group ${i} has no completion`);
    g.completions.forEach((c, k) => {
      if (c.ids.length !== c.labels.length) {
        throw new RangeError(
          `layoutGroups: group ${i} completion ${k} has ${c.ids.length} tokens and ${c.labels.length} labels`,
        );
      }
    });
  });
  const count = groups[0]!.completions.length;
  const odd = groups.findIndex((g) => g.completions.length !== count);
  if (order === 'completion' && odd >= 0) {
    throw new RangeError(
      `layoutGroups: completion order needs as many completions per group; group 0 has ${count}, group ${odd} ${groups[odd]!.completions.length}`,
    );
  }
}
