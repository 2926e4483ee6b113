// GRPO rollouts from one prefill per prompt, on tiny Qwen2-VL and InternVL checkpoints with real
// images: against TRL's layout (the prompt and its image repeated G times through `generate`), the
// vision tower's and the model's call shapes, token suppression under a dominating bias, the old
// log-probs against a full forward over prompt + completion, and truncation flags.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as torch from '../../lib/torch/index.js';
import type { Tensor } from '../../lib/torch/index.js';
import { chooseNext, generate } from '../../lib/generation/index.js';
import { logprobsTensor, nonSampledTokenIds, rollout } from '../../lib/generation/rollout.js';
import { repeatPrompts } from '../../lib/generation/repeat_prompts.js';
import { collateRollouts } from '../../lib/data/rollouts.js';
import { tokenLogps } from '../../lib/losses/index.js';
import {
  fromPretrained,
  InternVLChatModel,
  QwenVLForConditionalGeneration,
  type CausalLM,
  type ModelInputs,
} from '../../lib/models/index.js';
import * as processing from '../../lib/processing/index.js';
import { writeTinyCheckpoint, type TinyFamily } from '../../lib/tiny/index.js';

const root = mkdtempSync(join(tmpdir(), 'vlalign-rollout-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));
const image = (name: string) => fileURLToPath(new URL(`../fixtures/images/${name}`, import.meta.url));

const G = 3;
const TEMPERATURE = 0.9;
// Cached decoding and one full forward (or a prefill of B rows and one of B·G rows, the vision
// tower over B or B·G images) sum in another order: logits of size ~10 differ by ~1e-5 (seen:
// 1.1e-5), and log_softmax adds no more than that again.
const LOGPROB_TOLERANCE = 1e-4;

interface Setup {
  model: CausalLM;
  processor: processing.Processor;
  prompts: ModelInputs;
  padTokenId: number;
}

async function setup(family: TinyFamily): Promise<Setup> {
  const dir = join(root, family);
  await writeTinyCheckpoint(dir, family, { seed: 5 });
  const model = await fromPretrained(dir);
  model.eval();
  const processor = await processing.fromPretrained(dir, {
    paddingSide: 'left',
    tiling: { maxNum: 1, useThumbnail: false },
  });
  const ask = (text: string) => [{ role: 'user', content: [{ type: 'image' }, { type: 'text', text }] }];
  // Two prompts of different lengths and image sizes: left padding and per-image spans both matter.
  const batch = await processor.process([
    { prompt: ask('What shape is this?'), images: [image('img_140x140.png')] },
    { prompt: ask('Describe the picture in detail, please.'), images: [image('img_70x350.png')] },
  ]);
  const prompts: ModelInputs = {
    inputIds: batch.inputIds,
    attentionMask: batch.attentionMask,
    pixelValues: batch.pixelValues,
    imageGridThw: 'imageGridThw' in batch ? batch.imageGridThw : null,
    imageFlags: 'imageFlags' in batch ? batch.imageFlags : null,
  };
  return { model, processor, prompts, padTokenId: processor.tokenizer.padTokenId! };
}

// What `summary` says of the arguments of every call of `object[method]` while fn runs.
function recordCalls<S>(object: object, method: string, summary: (args: unknown[]) => S, fn: () => unknown): S[] {
  const target = object as Record<string, (...args: unknown[]) => unknown>;
  const original = target[method]!;
  const calls: S[] = [];
  target[method] = function (this: unknown, ...args: unknown[]) {
    calls.push(summary(args));
    return original.apply(this, args);
  };
  try {
    fn();
    return calls;
  } finally {
    target[method] = original;
  }
}

// Images per vision-tower call: Qwen's grids, InternVL's tiles.
function visionCalls(model: CausalLM, fn: () => unknown): number[] {
  if (model instanceof QwenVLForConditionalGeneration) {
    return recordCalls(model.visual, 'forward', (args) => (args[1] as unknown[]).length, fn);
  }
  if (model instanceof InternVLChatModel) {
    return recordCalls(model.vision_model, 'forward', (args) => (args[0] as Tensor).shape[0]!, fn);
  }
  throw new Error('not a vision model');
}

describe.each(['qwen2_vl', 'internvl'] as const)('rollout on tiny %s', (family) => {
  let s: Setup;
  beforeAll(async () => {
    s = await setup(family);
  });
  afterAll(() => s.model.dispose());

  const sampling = { temperature: TEMPERATURE, topK: 50, topP: 0.95, seed: 17, stopTokenIds: [] as number[] };

  it("gives TRL's repeated-prompt generation: the same tokens (same seed) and log-probs", () => {
    torch.tidy(() => {
      const suppress = nonSampledTokenIds(s.model, s.processor.tokenizer);
      const shared = rollout(s.model, s.prompts, {
        ...sampling,
        numGenerations: G,
        maxNewTokens: 12,
        suppressTokenIds: suppress,
      });
      const repeated = repeatPrompts(s.model, s.prompts, G);
      const separate = generate(s.model, repeated, {
        ...sampling,
        doSample: true,
        maxNewTokens: 12,
        suppressTokenIds: suppress,
      });
      expect(shared.tokens).toEqual(separate.tokens);
      shared.logprobs.forEach((row, r) =>
        row.forEach((lp, k) => expect(Math.abs(lp - separate.logprobs[r]![k]!)).toBeLessThan(LOGPROB_TOLERANCE)),
      );
      // Rows are TRL's order: prompt b's completions adjacent; sampling gave them different tokens.
      expect(shared.promptIndex).toEqual([0, 0, 0, 1, 1, 1]);
      expect(new Set(shared.tokens.slice(0, G).map((t) => t.join(','))).size).toBeGreaterThan(1);
    });
  });

  it('runs the vision tower once per image and prefills B rows, then decodes B·G rows one token at a time', () => {
    torch.tidy(() => {
      const images = imageCount(s);
      let forwardShapes: number[][] = [];
      const vision = visionCalls(s.model, () => {
        forwardShapes = recordCalls(
          s.model,
          'forward',
          (args) => (args[0] as ModelInputs).inputIds.shape,
          () => rollout(s.model, s.prompts, { ...sampling, numGenerations: G, maxNewTokens: 5 }),
        );
      });
      expect(vision).toEqual([images]);
      const [b, p] = s.prompts.inputIds.shape as [number, number];
      expect(forwardShapes[0]).toEqual([b, p]); // the prefill: B prompts, not B·G
      expect(forwardShapes.slice(1)).toEqual(Array(4).fill([b * G, 1]));
      // TRL's layout encodes every image G times.
      const repeated = visionCalls(s.model, () =>
        generate(s.model, repeatPrompts(s.model, s.prompts, G), { maxNewTokens: 1 }),
      );
      expect(repeated).toEqual([images * G]);
    });
  });

  it('never samples suppressed tokens, even when a bias makes them dominate; log-probs stay unsuppressed', () => {
    const suppress = nonSampledTokenIds(s.model, s.processor.tokenizer);
    const visionIds = nonSampledTokenIds(s.model);
    expect(suppress).toContain(s.padTokenId);
    expect(visionIds.length).toBeGreaterThan(0);
    const head = s.model.lmHead();
    const vocab = head.weight.shape[0]!;
    const bias = torch.zeros([vocab]).keep();
    const boost = torch.tensor(suppress, { dtype: 'int64' });
    bias.indexPut_([boost], torch.full([suppress.length], 50, { dtype: 'float32' }));
    boost.dispose();
    // The module whose lmHead() the forward reads (InternVL's LLM; its lmHead() delegates there).
    const owner: { lmHead: CausalLM['lmHead'] } =
      s.model instanceof InternVLChatModel ? s.model.language_model : s.model;
    const original = owner.lmHead.bind(owner);
    owner.lmHead = () => ({ weight: original().weight, bias });
    try {
      torch.tidy(() => {
        const options = { ...sampling, numGenerations: 2, maxNewTokens: 6 };
        // Without suppression the biased tokens are all the model says.
        const free = rollout(s.model, s.prompts, { ...options, suppressTokenIds: [] });
        expect(free.tokens.flat().every((t) => suppress.includes(t))).toBe(true);
        const kept = rollout(s.model, s.prompts, { ...options, suppressTokenIds: suppress });
        expect(kept.tokens.flat().some((t) => suppress.includes(t))).toBe(false);
        // The default suppresses the model's vision tokens.
        const byDefault = rollout(s.model, s.prompts, options);
        expect(byDefault.tokens.flat().some((t) => visionIds.includes(t))).toBe(false);
        // The chosen tokens' log-probs are under the biased policy itself: the suppressed mass
        // (bias 50 / T) makes them tiny; a full forward with the same head recomputes them.
        expect(Math.max(...kept.logprobs.flat())).toBeLessThan(-30);
        expectMatchesFullForward(s, kept, 2);
      });
    } finally {
      owner.lmHead = original;
      bias.dispose();
    }
  });

  it('returns old log-probs equal to a full forward over prompt + completion (log_softmax(logits / T))', () => {
    torch.tidy(() => {
      const out = rollout(s.model, s.prompts, {
        ...sampling,
        numGenerations: G,
        maxNewTokens: 10,
        suppressTokenIds: nonSampledTokenIds(s.model, s.processor.tokenizer),
      });
      expectMatchesFullForward(s, out, G);
    });
  });

  it('flags completions cut at maxNewTokens as truncated, and those that stop as not', () => {
    torch.tidy(() => {
      const cut = rollout(s.model, s.prompts, { ...sampling, numGenerations: G, maxNewTokens: 3 });
      expect(cut.tokens.every((t) => t.length === 3)).toBe(true);
      expect(cut.truncated).toEqual(Array(2 * G).fill(true));
      expect(cut.finishReasons).toEqual(Array(2 * G).fill('length'));
      // Greedy: every completion of prompt 0 starts with the same token; make it the stop token.
      const greedy = { doSample: false, stopTokenIds: [] as number[], numGenerations: G };
      const first = rollout(s.model, s.prompts, { ...greedy, maxNewTokens: 1 }).tokens[0]![0]!;
      const stopped = rollout(s.model, s.prompts, { ...greedy, maxNewTokens: 4, stopTokenIds: [first] });
      for (let r = 0; r < G; r++) {
        expect(stopped.tokens[r]).toEqual([first]);
        expect(stopped.truncated[r]).toBe(false);
        expect(stopped.finishReasons[r]).toBe('stop');
      }
      for (let r = G; r < 2 * G; r++) {
        const t = stopped.tokens[r]!;
        expect(stopped.truncated[r]).toBe(t[t.length - 1] !== first);
        expect(stopped.truncated[r]).toBe(t.length === 4 && !t.includes(first));
      }
      // collateRollouts reads the same flag off the tokens.
      const batch = collateRollouts(repeatPrompts(s.model, s.prompts, G), stopped.tokens, {
        padTokenId: s.padTokenId,
        stopTokenIds: [first],
      });
      expect(batch.truncated).toEqual(stopped.truncated);
    });
  });

  it('rejects bad options with their names', () => {
    torch.tidy(() => {
      expect(() => rollout(s.model, s.prompts, { numGenerations: 0, maxNewTokens: 2 })).toThrow(/numGenerations/);
      expect(() => rollout(s.model, s.prompts, { numGenerations: 2, maxNewTokens: 0 })).toThrow(/maxNewTokens/);
      expect(() =>
        rollout(s.model, s.prompts, { numGenerations: 2, maxNewTokens: 2, suppressTokenIds: [1 << 20] }),
      ).toThrow(/suppressTokenIds/);
      const right = { ...s.prompts, attentionMask: s.prompts.attentionMask!.flip([1]) };
      expect(() => rollout(s.model, right, { numGenerations: 2, maxNewTokens: 2 })).toThrow(/pad prompts on the left/);
    });
  });
});

describe('sampling with suppressed tokens', () => {
  const logits = (): Tensor => torch.tensor([[2.0, 1.0, 0.5, -1.0, 0.0]]);

  it.each([[[0]], [[3, 4]], [[0, 2, 4]]])(
    'draws the others with softmax frequencies renormalised over them (suppressed %j)',
    (suppress) => {
      torch.manualSeed(3);
      torch.tidy(() => {
        const n = 20000;
        const batch = logits().expand([n, 5]).contiguous();
        const choice = chooseNext(batch, { doSample: true, temperature: 1.3, suppressTokenIds: suppress });
        const tokens = choice.tokens.toArray() as number[];
        const weights = (logits().div(1.3).exp().squeeze(0).toArray() as number[]).map((w, v) =>
          suppress.includes(v) ? 0 : w,
        );
        const total = weights.reduce((a, b) => a + b, 0);
        weights.forEach((w, v) => {
          const p = w / total;
          const freq = tokens.filter((t) => t === v).length / n;
          expect(Math.abs(freq - p)).toBeLessThan(4 * Math.sqrt((p * (1 - p)) / n) + 1e-3);
        });
        // The log-probs are the unsuppressed softmax's.
        const full = logits().div(1.3).logSoftmax(-1).squeeze(0).toArray() as number[];
        const lps = choice.logprobs.toArray() as number[];
        tokens.slice(0, 50).forEach((t, i) => expect(lps[i]).toBeCloseTo(full[t]!, 5));
      });
    },
  );
});

function imageCount(s: Setup): number {
  return s.model instanceof QwenVLForConditionalGeneration
    ? s.prompts.imageGridThw!.shape[0]!
    : s.prompts.pixelValues!.shape[0]!;
}

// The rollout's log-probs against TRL's recomputation: the repeated prompts + completions as one
// eval forward, log_softmax(logits / T) at each completion token; and the same through the loss
// layer's tokenLogps (what GrpoLoss reads), laid out as logprobsTensor lays the rollout's out.
function expectMatchesFullForward(s: Setup, out: { tokens: number[][]; logprobs: number[][] }, g: number): void {
  const batch = collateRollouts(repeatPrompts(s.model, s.prompts, g), out.tokens, {
    padTokenId: s.padTokenId,
    stopTokenIds: [],
  });
  const forward = torch.noGrad(() =>
    s.model.forward({
      inputIds: batch.inputIds,
      attentionMask: batch.attentionMask,
      pixelValues: batch.pixelValues,
      imageGridThw: batch.imageGridThw,
      imageFlags: batch.imageFlags,
    }),
  );
  const logp = forward.logits!.div(TEMPERATURE).logSoftmax(-1);
  const p = batch.promptLength;
  out.tokens.forEach((row, r) =>
    row.forEach((token, k) => {
      const full = logp
        .select(0, r)
        .select(0, p + k - 1)
        .select(0, token)
        .item();
      expect(Math.abs(out.logprobs[r]![k]! - full)).toBeLessThan(LOGPROB_TOLERANCE);
    }),
  );
  const viaLoss = tokenLogps(forward.hidden, s.model.lmHead(), batch.targets, { temperature: TEMPERATURE });
  const ours = logprobsTensor(out.logprobs, p);
  expect(ours.shape).toEqual(viaLoss.shape);
  const diff = ours.sub(viaLoss).abs().max().item();
  expect(diff).toBeLessThan(LOGPROB_TOLERANCE);
}
