// Rollouts: the prompts generation ran on (left-padded, as `generate` needs) and the token lists it
// returned become the [S, T] batch GrpoLoss reads. Row s is its prompt as given, then its
// completion, then padding; a completion token k sits at column P + k, so the position that
// predicts it is P + k - 1, where its target goes.
import * as torch from '../torch/index.js';
import type { Tensor } from '../torch/index.js';

/** The inputs `generate` was called with. */
export interface RolloutPrompt {
  /** [S, P] int64, left-padded. */
  inputIds: Tensor;
  /** [S, P]; absent: no padding. */
  attentionMask?: Tensor | null;
  pixelValues?: Tensor | null;
  imageGridThw?: Tensor | null;
  imageFlags?: Tensor | null;
}

export interface RolloutOptions {
  /** Fills the columns after a completion (masked out; any id the vocabulary has). */
  padTokenId: number;
  /** Tokens that end a completion; one that does not end with one was cut at maxNewTokens. */
  stopTokenIds: readonly number[];
  /** TRL's mask_truncated_completions: truncated completions get no targets (and so no loss). Default false. */
  maskTruncated?: boolean;
  /** Default -100. */
  ignoreIndex?: number;
}

export interface RolloutBatch {
  /** [S, P + C] int64: prompt, completion, padding; C is the longest completion. */
  inputIds: Tensor;
  /** [S, P + C] int64: the prompt's mask, then 1 on completion tokens, 0 after. */
  attentionMask: Tensor;
  /** [S, P + C] int64: the completion token each position predicts, ignoreIndex elsewhere. */
  targets: Tensor;
  /** [S, P + C] int64: 1 where targets holds a completion token (aligned with targets, like the loss's inputs). */
  completionMask: Tensor;
  /** Per row: the completion does not end with a stop token. */
  truncated: boolean[];
  /** P: the column of each row's first completion token. */
  promptLength: number;
  /** The prompt's vision inputs (the same tensors, not copies), or null. */
  pixelValues: Tensor | null;
  imageGridThw: Tensor | null;
  imageFlags: Tensor | null;
}

export function collateRollouts(
  prompt: RolloutPrompt,
  completions: readonly (readonly number[])[],
  options: RolloutOptions,
): RolloutBatch {
  const [rows, promptLength] = checkPrompt(prompt);
  if (completions.length !== rows) {
    throw new RangeError(`collateRollouts: ${completions.length} completions for ${rows} prompt rows`);
  }
  checkOptions(options);
  completions.forEach((c, s) =>
    c.forEach((id, k) => {
      if (!Number.isInteger(id) || id < 0) {
        throw new TypeError(`Expected a token id for completions[${s}][${k}] but received ${id}`);
      }
    }),
  );
  const stops = new Set(options.stopTokenIds);
  const truncated = completions.map((c) => c.length === 0 || !stops.has(c[c.length - 1]!));
  const ignore = options.ignoreIndex ?? -100;
  const width = Math.max(0, ...completions.map((c) => c.length));
  const total = promptLength + width;
  const ids = new BigInt64Array(rows * width).fill(BigInt(options.padTokenId));
  const mask = new BigInt64Array(rows * width);
  const targets = new BigInt64Array(rows * total).fill(BigInt(ignore));
  const scored = new BigInt64Array(rows * total);
  completions.forEach((c, s) => {
    c.forEach((id, k) => {
      ids[s * width + k] = BigInt(id);
      mask[s * width + k] = 1n;
      if (options.maskTruncated && truncated[s]) return;
      targets[s * total + promptLength + k - 1] = BigInt(id);
      scored[s * total + promptLength + k - 1] = 1n;
    });
  });
  return torch.tidy(() => {
    const device = prompt.inputIds.device;
    const block = (data: BigInt64Array, w: number): Tensor => torch.tensor(data, { shape: [rows, w] }).to(device);
    const promptMask = prompt.attentionMask?.long() ?? torch.ones([rows, promptLength], { dtype: 'int64', device });
    return {
      inputIds: torch.cat([prompt.inputIds, block(ids, width)], 1),
      attentionMask: torch.cat([promptMask, block(mask, width)], 1),
      targets: block(targets, total),
      completionMask: block(scored, total),
      truncated,
      promptLength,
      pixelValues: prompt.pixelValues ?? null,
      imageGridThw: prompt.imageGridThw ?? null,
      imageFlags: prompt.imageFlags ?? null,
    };
  });
}

// [S, P] int64 ids whose mask ends every row with a token: generate's left padding.
function checkPrompt(prompt: RolloutPrompt): [number, number] {
  const ids = prompt?.inputIds;
  if (ids?.dtype !== 'int64' || ids.ndim !== 2) {
    const got = ids ? `${ids.dtype} [${ids.shape}]` : String(ids);
    throw new TypeError(`Expected an int64 [rows, tokens] tensor for prompt.inputIds but received ${got}`);
  }
  const [rows, length] = ids.shape as [number, number];
  if (length === 0) throw new RangeError('collateRollouts: the prompts are empty; generation needs at least one token');
  const mask = prompt.attentionMask;
  if (!mask) return [rows, length];
  if (mask.ndim !== 2 || mask.shape[0] !== rows || mask.shape[1] !== length) {
    throw new RangeError(`prompt.attentionMask must be [${rows}, ${length}] like inputIds, got [${mask.shape}]`);
  }
  const last = torch.tidy(
    () =>
      mask
        .select(1, length - 1)
        .long()
        .contiguous()
        .data() as BigInt64Array,
  );
  last.forEach((m, s) => {
    if (m !== 1n) {
      throw new RangeError(`collateRollouts: prompt row ${s} ends with padding; generation pads prompts on the left`);
    }
  });
  return [rows, length];
}

function checkOptions(options: RolloutOptions): void {
  if (!Number.isInteger(options?.padTokenId) || options.padTokenId < 0) {
    throw new TypeError(`Expected a token id for padTokenId but received ${options?.padTokenId}`);
  }
  if (!Array.isArray(options.stopTokenIds)) throw new TypeError('Expected an array of token ids for stopTokenIds');
  if (options.ignoreIndex !== undefined && !Number.isInteger(options.ignoreIndex)) {
    throw new TypeError(`Expected an integer for ignoreIndex but received ${options.ignoreIndex}`);
  }
}
