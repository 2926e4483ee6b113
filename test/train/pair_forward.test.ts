// pairForward against the separate-rows computation (collatePairs + model.forward), float64 tiny
// models: the MPO loss (sigmoid 0.8 + bco_pair 0.2 + sft 1) and every parameter gradient, vision
// tower included, agree to 1e-10; the vision tower reads each pair's images once instead of twice.
//
// RMSNorm normalises in float32 whatever the dtype (Hugging Face's cast order). In the packed form a
// prompt token's gradient is the sum of what the chosen and the rejected tokens send it, rounded to
// float32 once; separate rows round the two halves apart and add them later. Both are right to float32
// precision, and the difference has nothing to do with packing, so the exact comparison runs with a
// float64 RMSNorm (patched here), and likewise the Qwen vision attention, which rotates q and k in
// float32 and casts back.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { data, losses, models, nn, processing, tiny, torch } from '../../lib/index.js';
import type { Tensor } from '../../lib/torch/index.js';
import { packPairs } from '../../lib/data/pack_pairs.js';
import { pairForward } from '../../lib/train/pair_forward.js';
import { assistantTurn as reply, randomImage as image, userTurn as ask } from '../processing/chats.js';

const root = mkdtempSync(join(tmpdir(), 'vlalign-pair-forward-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

function float64RmsNorm(this: nn.RMSNorm, x: Tensor): Tensor {
  return torch.tidy(() => this.weight.mul(x.mul(x.square().mean(-1, true).add(this.eps).rsqrt())));
}
type VisionAttention = nn.Module & { rotate(t: Tensor, rotary: nn.CosSin): Tensor };
// The attention rotates q and k in float32 and casts back; here in x's own dtype.
function float64Rotate(this: VisionAttention, t: Tensor, rotary: nn.CosSin): Tensor {
  return nn.applyRotary(t, { cos: rotary.cos.to({ dtype: t.dtype }), sin: rotary.sin.to({ dtype: t.dtype }) });
}
const patched: Array<[Record<string, unknown>, string, unknown]> = [];
function patch(target: object, method: string, replacement: unknown): void {
  const record = target as Record<string, unknown>;
  patched.push([record, method, record[method]]);
  record[method] = replacement;
}
afterEach(() => {
  for (const [target, method, original] of patched.splice(0).reverse()) target[method] = original;
});
function exactFloat64(model: models.CausalLM): void {
  patch(nn.RMSNorm.prototype, 'forward', float64RmsNorm);
  if (model instanceof models.QwenVLForConditionalGeneration) {
    const [block] = model.visual.blocks as unknown as Iterable<{ attn: VisionAttention }>;
    patch(Object.getPrototypeOf(block!.attn), 'rotate', float64Rotate);
  }
}

const CONFIG = {
  lossType: ['sigmoid', 'bco_pair', 'sft'],
  lossWeights: [0.8, 0.2, 1],
  beta: 0.1,
  trlVersion: 'current' as const,
};

interface PairSpec {
  q: string;
  images: processing.image.RgbImage[];
  chosen: string;
  rejected: string;
}

// Different prompt and completion lengths; pair 0's rejected is longer than its chosen.
const FAMILIES = {
  qwen2_vl: {
    side: 'left' as const,
    pairs: [
      { q: 'What is it?', images: [image(56, 56, 1)], chosen: 'A pattern.', rejected: 'A cat sitting on a red mat.' },
      {
        q: 'Describe the picture in detail.',
        images: [image(84, 56, 2)],
        chosen: 'Noise, mostly grey.',
        rejected: 'No.',
      },
      { q: 'Say hello.', images: [], chosen: 'Hello there!', rejected: 'Bye.' },
    ],
    vision: (m: models.CausalLM) => (m as models.QwenVLForConditionalGeneration).visual,
  },
  internvl: {
    side: 'right' as const,
    pairs: [
      { q: 'What is it?', images: [image(56, 56, 3)], chosen: 'A pattern.', rejected: 'A cat sitting on a red mat.' },
      { q: 'Say hello to everyone here.', images: [], chosen: 'Hello there, all!', rejected: 'Bye.' },
    ],
    vision: (m: models.CausalLM) => (m as models.InternVLChatModel).vision_model,
  },
};

async function batches(processor: processing.Processor, pairs: PairSpec[]) {
  const side = (key: 'chosen' | 'rejected') =>
    processor.process(
      pairs.map((p) => ({ prompt: ask(p.q, p.images.length), completion: reply(p[key]), images: p.images })),
    );
  return { chosen: await side('chosen'), rejected: await side('rejected') };
}

/** Loss and gradients of every parameter that receives one. */
function lossAndGrads(loss: Tensor, params: Array<[string, Tensor]>) {
  const grads = torch.autograd.grad(
    loss,
    params.map(([, p]) => p),
    { allowUnused: true, retainGraph: true },
  );
  return { loss: loss.item() as number, grads: grads.map((g) => g?.detach() ?? null) };
}

function maxDiff(a: Tensor, b: Tensor): number {
  return a.sub(b).abs().max().item() as number;
}

describe.each(Object.keys(FAMILIES) as Array<keyof typeof FAMILIES>)('%s: pairForward', (family) => {
  const spec = FAMILIES[family];
  let model: models.CausalLM;
  let processor: processing.Processor;
  let input: Awaited<ReturnType<typeof batches>>;
  let visionRows: number[];
  beforeAll(async () => {
    const dir = join(root, family);
    await tiny.writeTinyCheckpoint(dir, family, { seed: 5 });
    model = (await models.fromPretrained(dir)).to({ dtype: 'float64' }).eval();
    processor = await processing.fromPretrained(dir, { paddingSide: spec.side, tiling: { maxNum: 1 } });
    input = await batches(processor, spec.pairs);
    // Count what the vision tower reads: one entry per call, the rows (patches / tiles) it gets.
    const vision = spec.vision(model);
    const forward = vision.forward.bind(vision) as (...args: unknown[]) => unknown;
    visionRows = [];
    (vision as unknown as { forward: unknown }).forward = (x: Tensor, ...rest: unknown[]) => {
      visionRows.push(x.shape[0]!);
      return forward(x, ...rest);
    };
  }, 120_000);
  afterAll(() => model.dispose());

  const run = (exactNorm: boolean, ref: 'precomputed' | 'model') =>
    torch.tidy(() => {
      if (exactNorm) exactFloat64(model);
      const params = [...model.namedParameters()] as Array<[string, Tensor]>;
      const head = model.lmHead();
      const P = spec.pairs.length;
      const refChosenLogps = torch.tensor(Float64Array.from({ length: P }, (_, i) => -20 - 3 * i));
      const refRejectedLogps = torch.tensor(Float64Array.from({ length: P }, (_, i) => -25 + 2 * i));

      visionRows.length = 0;
      const rows = data.collatePairs(processor, input.chosen, input.rejected);
      const separateRef = torch.noGrad(() => model.forward(rows, { logits: false }).hidden);
      const out = model.forward(rows, { logits: false });
      const separateVision = [...visionRows];
      const reference = (hidden: Tensor) =>
        ref === 'precomputed' ? { refChosenLogps, refRejectedLogps } : { ref: { hidden, head } };
      const separate = new losses.PreferenceLoss(CONFIG).compute(
        { hidden: out.hidden, targets: rows.targets, ...reference(separateRef) },
        head,
      );

      visionRows.length = 0;
      const packed = packPairs(processor, input.chosen, input.rejected);
      const packedRef = torch.noGrad(() => pairForward(model, packed).hidden);
      const pf = pairForward(model, packed);
      const packedVision = [...visionRows];
      const single = new losses.PreferenceLoss(CONFIG).compute(
        { hidden: pf.hidden, targets: pf.targets, ...reference(packedRef) },
        head,
      );
      // The same reference log-probs either way.
      const logps = (h: Tensor, t: Tensor) => losses.sequenceLogps(h, head, t);
      const refDiff = maxDiff(logps(separateRef, rows.targets), logps(packedRef, pf.targets));
      return {
        separate: lossAndGrads(separate.loss, params),
        packed: lossAndGrads(single.loss, params),
        names: params.map(([n]) => n),
        refDiff,
        margins: single.metrics['rewards/margins']!,
        separateVision,
        packedVision,
      };
    });

  function expectSame(r: ReturnType<typeof run>, tol: number, images = true) {
    expect(Math.abs(r.packed.loss - r.separate.loss), 'loss').toBeLessThan(tol);
    let reached = 0;
    r.names.forEach((name, k) => {
      const [a, b] = [r.packed.grads[k], r.separate.grads[k]];
      expect(a === null, `${name} gets a gradient on both paths or neither`).toBe(b === null);
      if (a && b) {
        expect(maxDiff(a, b), name).toBeLessThan(tol);
        if ((b.abs().max().item() as number) > 0) reached++;
      }
    });
    const vision = r.names.filter((n, k) => /^(visual|vision_model)\./.test(n) && r.separate.grads[k] !== null);
    expect(vision.length > 0, 'vision tower parameters receive gradients').toBe(images);
    expect(reached).toBeGreaterThan(r.separate.grads.filter((g) => g !== null).length / 2);
  }

  it('loss and every gradient equal separate rows (precomputed reference); vision once per pair', () => {
    const r = run(true, 'precomputed');
    expect(Math.abs(r.margins)).toBeGreaterThan(1e-3); // the reference differs: every loss term is at work
    expectSame(r, 1e-10);
    const chosenRows = input.chosen.pixelValues!.shape[0]!;
    expect(r.packedVision).toEqual([chosenRows, chosenRows]); // reference forward + policy forward
    expect(r.separateVision).toEqual([2 * chosenRows, 2 * chosenRows]);
  }, 300_000);

  it('with the real float32 RMSNorm (and vision rotary) the two agree to float32 precision', () => {
    const r = run(false, 'precomputed');
    // Gradients rounded to float32 once (packed) or per half (separate rows): relative 2^-23 per
    // rounding, through a few layers; the loss itself is a float64 sum of the same values.
    expect(Math.abs(r.packed.loss - r.separate.loss)).toBeLessThan(1e-9);
    r.names.forEach((name, k) => {
      const [a, b] = [r.packed.grads[k], r.separate.grads[k]];
      if (a && b) expect(maxDiff(a, b), name).toBeLessThan(1e-5 * Math.max(1e-3, b.abs().max().item() as number));
    });
  }, 300_000);

  it("text-only pairs (no images) give the separate rows' loss and gradients", async () => {
    const text = spec.pairs.map((p) => ({ ...p, images: [] }));
    const saved = input;
    input = await batches(processor, text);
    try {
      expect(input.chosen.pixelValues).toBeNull();
      const r = run(true, 'precomputed');
      expectSame(r, 1e-10, false);
      expect([r.packedVision, r.separateVision]).toEqual([[], []]);
    } finally {
      input = saved;
    }
  }, 300_000);

  it('additiveMask: refused with a KV cache, in the wrong shape or dtype', () => {
    torch.tidy(() => {
      const inputIds = torch.tensor([[5, 6, 7]], { dtype: 'int64' });
      const ok = torch.zeros([1, 1, 3, 3], { dtype: 'float64' });
      expect(() => model.forward({ inputIds, additiveMask: ok }, { cache: new nn.KVCache() })).toThrow(
        /additiveMask .*cannot be used with a KV cache/,
      );
      expect(() => model.forward({ inputIds, additiveMask: torch.zeros([1, 1, 3, 2], { dtype: 'float64' }) })).toThrow(
        /expected additiveMask of shape \[1,1,3,3\] but received \[1,1,3,2\]/,
      );
      expect(() => model.forward({ inputIds, additiveMask: ok.float() })).toThrow(
        /activation dtype float64 but received float32/,
      );
      // nn.causalMask given explicitly is the default; an all-zero mask lets token 0 see the others.
      const causal = model.forward({ inputIds }, { logits: false }).hidden;
      const given = nn.causalMask(3, 3, null, 'float64');
      expect(maxDiff(causal, model.forward({ inputIds, additiveMask: given }, { logits: false }).hidden)).toBe(0);
      const open = model.forward({ inputIds, additiveMask: ok }, { logits: false }).hidden;
      expect(maxDiff(causal.select(1, 0), open.select(1, 0))).toBeGreaterThan(1e-6);
    });
  });

  it('with the reference from pairForward under noGrad', () => {
    const r = run(true, 'model');
    expect(r.refDiff).toBeLessThan(1e-10);
    expectSame(r, 1e-10);
  }, 300_000);
});
