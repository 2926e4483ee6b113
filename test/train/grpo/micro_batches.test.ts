// GRPO micro-batches (each prompt with its completions packed in one row, lib/train/grpo/
// micro_batches.ts + group_forward.ts) against what TRL runs: every completion its own row, its
// prompt and image repeated (collateRollouts over the prompts repeated G times). Float64 tiny
// Qwen2-VL and InternVL, prompts with and without an image: the GRPO loss (token and sequence
// level, off-policy old log-probs, so ratios leave 1 and clipping engages) and every parameter's
// gradient agree; each image goes through the vision tower once per micro-batch instead of G times.
// RMSNorm and Qwen's vision rotary round through float32 whatever the dtype, and packing sums a
// prompt token's gradients before that rounding, so the two paths agree to 1e-7, not to the last
// bit (test/train/pair_forward.test.ts shows the exact agreement with those casts removed).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { losses, models, processing, tiny, torch } from '../../../lib/index.js';
import type { Tensor } from '../../../lib/torch/index.js';
import type { DecodedRecord } from '../../../lib/data/images.js';
import type { PromptRecord } from '../../../lib/data/records.js';
import { collateRollouts } from '../../../lib/data/rollouts.js';
import { logprobsTensor } from '../../../lib/generation/rollout.js';
import { groupForward } from '../../../lib/train/group_forward.js';
import type { ScoredGeneration } from '../../../lib/train/grpo/generation.js';
import { microBatches } from '../../../lib/train/grpo/micro_batches.js';
import { encodePrompts, padTokenOf, rolloutInputs, type EncodedPrompt } from '../../../lib/train/grpo/prompts.js';
import { randomImage, userTurn } from '../../processing/chats.js';

const root = mkdtempSync(join(tmpdir(), 'vlalign-grpo-mb-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

const G = 3;
const TOL = 1e-7;

function records(): Array<DecodedRecord<PromptRecord>> {
  const record = (id: string, q: string, images: number): PromptRecord => ({
    kind: 'prompt',
    id,
    prompt: userTurn(q, images),
    images: [],
    columns: {},
    source: { file: 'test.jsonl', line: Number(id) },
  });
  return [
    { index: 0, record: record('1', 'Where is the cat?', 1), pixels: [randomImage(56, 56, 7)] },
    { index: 1, record: record('2', 'Count to three, please.', 0), pixels: [] },
  ];
}

// G completions per prompt of different lengths, ordinary vocabulary ids; old log-probs off the
// current policy's by up to 0.4 nats; advantages of both signs.
function generation(prompts: number): ScoredGeneration {
  let seed = 11;
  const next = () => {
    seed = (seed * 1103515245 + 12345) % 2 ** 31;
    return seed / 2 ** 31;
  };
  const completions = Array.from({ length: prompts * G }, (_, i) => {
    const length = 2 + ((i * 5) % 6);
    const tokens = Array.from({ length }, () => 20 + Math.floor(next() * 400));
    return { prompt: Math.floor(i / G), tokens, logprobs: tokens.map(() => -6 + next()), truncated: false };
  });
  const advantages = completions.map((_, i) => (i % 2 === 0 ? 1 : -1) * (0.3 + i / 10));
  return { completions, advantages, metrics: {}, table: [] };
}

// TRL's layout: one left-padded row per completion, the prompt (and its images) repeated.
function separateRows(processor: processing.Processor, prompts: EncodedPrompt[], gen: ScoredGeneration) {
  const repeated = gen.completions.map((c) => prompts[c.prompt]!);
  const inputs = rolloutInputs(processor, repeated);
  const rows = collateRollouts(
    inputs,
    gen.completions.map((c) => c.tokens),
    { padTokenId: padTokenOf(processor), stopTokenIds: [] },
  );
  const oldLogps = logprobsTensor(
    gen.completions.map((c) => c.logprobs),
    rows.promptLength,
  );
  return { inputs, rows, oldLogps };
}

function grads(loss: Tensor, params: Tensor[]): Array<Tensor | null> {
  return torch.autograd
    .grad(loss, params, { allowUnused: true, retainGraph: true })
    .map((g) => (g === null ? null : g.detach()));
}

describe.each(['qwen2_vl', 'internvl'] as const)('%s: GRPO micro-batches', (family) => {
  let model: models.CausalLM;
  let processor: processing.Processor;
  let prompts: EncodedPrompt[];
  let visionRows: number[];
  beforeAll(async () => {
    const dir = join(root, family);
    await tiny.writeTinyCheckpoint(dir, family, { seed: 3 });
    model = (await models.fromPretrained(dir)).to({ dtype: 'float64' }).eval();
    processor = await processing.fromPretrained(dir, { tiling: { maxNum: 1 } });
    prompts = await encodePrompts(processor, records(), null);
    for (const p of prompts) {
      if (p.pixelValues) {
        const cast = p.pixelValues.to({ dtype: 'float64' });
        p.pixelValues.dispose();
        p.pixelValues = cast;
      }
    }
    const vision = (family === 'qwen2_vl'
      ? (model as models.QwenVLForConditionalGeneration).visual
      : (model as models.InternVLChatModel).vision_model) as unknown as {
      forward: (x: Tensor, ...rest: unknown[]) => unknown;
    };
    const forward = vision.forward.bind(vision);
    visionRows = [];
    vision.forward = (x: Tensor, ...rest: unknown[]) => {
      visionRows.push(x.shape[0]!);
      return forward(x, ...rest);
    };
  }, 120_000);
  afterAll(() => model.dispose());

  for (const level of ['token', 'sequence'] as const) {
    it(`packed groups give the separate rows' loss and gradients (${level} level), images once`, () => {
      const gen = generation(prompts.length);
      const objective = new losses.GrpoLoss({ lossType: 'grpo', epsilon: 0.1, importanceSamplingLevel: level });
      const params = model.parameters().filter((p) => p.requiresGrad);
      const head = model.lmHead();
      torch.tidy(() => {
        visionRows.length = 0;
        const { inputs, rows, oldLogps } = separateRows(processor, prompts, gen);
        const hidden = model.forward({ ...rows, pixelValues: inputs.pixelValues }, { logits: false }).hidden;
        const separate = objective.compute(
          { hidden, targets: rows.targets, advantages: torch.tensor(gen.advantages), oldLogps },
          head,
        );
        const separateVision = visionRows.splice(0);

        const [batch] = microBatches(processor, prompts, gen, {
          size: gen.completions.length,
          keepOldLogps: true,
          maskTruncated: false,
          ignoreIndex: -100,
        });
        const packedHidden = groupForward(model, batch!.packed);
        const packed = objective.compute(
          { ...packedHidden, advantages: batch!.advantages, oldLogps: batch!.oldLogps! },
          head,
        );
        const packedVision = visionRows.splice(0);
        batch!.release();

        expect(Math.abs((packed.loss.item() as number) - (separate.loss.item() as number))).toBeLessThan(TOL);
        expect(packed.metrics['clip_ratio/region_mean']).toBeGreaterThan(0);
        const [a, b] = [grads(packed.loss, params), grads(separate.loss, params)];
        let compared = 0;
        a.forEach((g, k) => {
          expect(g === null).toBe(b[k] === null);
          if (g && b[k]) {
            expect(g.sub(b[k]!).abs().max().item() as number).toBeLessThan(TOL);
            compared++;
          }
        });
        expect(compared).toBeGreaterThan(params.length / 2);
        // One image: G copies through the vision tower separately, one when packed.
        const sum = (xs: number[]) => xs.reduce((s, x) => s + x, 0);
        expect(sum(separateVision)).toBe(G * sum(packedVision));
        expect(sum(packedVision)).toBeGreaterThan(0);
      });
    }, 120_000);
  }

  it('micro-batches of fewer completions than a group split it, each part with its prompt; losses add up', () => {
    const gen = generation(prompts.length);
    const objective = new losses.GrpoLoss({ lossType: 'dapo', epsilon: 0.1 });
    const head = model.lmHead();
    const options = { keepOldLogps: true, maskTruncated: false, ignoreIndex: -100 };
    const total = (size: number) =>
      torch.tidy(() => {
        const batches = microBatches(processor, prompts, gen, { ...options, size });
        const tokens = batches.reduce((n, b) => n + b.tokens, 0);
        const rows = batches.reduce((n, b) => n + b.counts.rows!, 0);
        const sum = batches
          .map((b) => {
            const out = objective.compute(
              { ...groupForward(model, b.packed), advantages: b.advantages, oldLogps: b.oldLogps! },
              head,
              { normalisers: { tokens, rows } },
            );
            b.release();
            return out.loss.item() as number;
          })
          .reduce((s, x) => s + x, 0);
        return { sum, count: batches.length };
      });
    const whole = total(gen.completions.length);
    const split = total(2);
    expect(whole.count).toBe(1);
    expect(split.count).toBe(3);
    expect(Math.abs(split.sum - whole.sum)).toBeLessThan(TOL);
  }, 120_000);

  it('mask_truncated_completions: a truncated completion keeps its tokens but gets no targets', () => {
    const gen = generation(prompts.length);
    gen.completions[1]!.truncated = true;
    const [masked] = microBatches(processor, prompts, gen, {
      size: gen.completions.length,
      keepOldLogps: false,
      maskTruncated: true,
      ignoreIndex: -100,
    });
    const targets = masked!.packed.targets.toArray() as number[][];
    expect(targets[1]!.every((t) => t === -100)).toBe(true);
    expect(targets[0]!.filter((t) => t !== -100)).toEqual(gen.completions[0]!.tokens);
    expect(masked!.oldLogps).toBeNull();
    expect(masked!.tokens).toBe(gen.completions.reduce((n, c, i) => n + (i === 1 ? 0 : c.tokens.length), 0));
    masked!.release();
  });
});
