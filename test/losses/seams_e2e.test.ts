// The seams end to end, with no hand-made tensor: preference pairs (several images, text only) →
// processor → data.collatePairs → policy forward → losses.PreferenceLoss (MPO: sigmoid 0.8 + bco_pair
// 0.2 + sft 1.0) → backward, with (a) a separately loaded frozen reference model (another checkpoint)
// read through its own LM head, and (b) LoRA with the policy's adapters disabled as the reference.
// Checked against the formulas (trl_peft.md §1.4 / §1.5) written here on the models' materialised
// logits, in float64: log_softmax, gather at the targets, row sums, then (r = policy - reference)
//   sigmoid  -log σ(β (r_c - r_r))     bco_pair  -log σ(β r_c - D) - log σ(-(β r_r - D))
//   sft      -Σ chosen token log-probs / chosen tokens,   loss = Σ_k w_k mean_pairs(loss_k),
// with D = 0 in TRL's current form and, in the legacy form losses.MPO follows, the running mean of
// the batch-mean reward, which after one update from a fresh state is mean(β r_c, β r_r) itself.
// Gradients with respect to the hidden states, the LM head and the final norm stay in float64 and
// agree to ~1e-12; the layers below the final RMSNorm (which normalises in float32, as Hugging
// Face's does) receive them through a float32 cast, so there the two paths agree to float32 precision.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { adapters, data, losses, models, processing, tiny, torch } from '../../lib/index.js';
import type { Tensor } from '../../lib/torch/index.js';
import { perturb } from '../adapters/helpers.js';
import { assistantTurn as reply, randomImage as image, userTurn as ask } from '../processing/chats.js';
import { arr, expectAllClose, expectClose, IGNORE } from './helpers.js';

const F = torch.nn.functional;
const rows = (t: Tensor): number[][] => t.toArray() as number[][];
const BETA = 0.1;
const WEIGHTS = { sigmoid: 0.8, bco_pair: 0.2, sft: 1.0 };
// Legacy (InternVL's MPO: shifted bco_pair) and current; chunks of one pair each: the chunked path.
const MPO = { ...losses.MPO, beta: BETA, chunkSize: 8 };
const CONFIGS = [
  { name: 'legacy', shift: true, config: MPO },
  { name: 'current', shift: false, config: { ...MPO, trlVersion: 'current' as const } },
];

const root = mkdtempSync(join(tmpdir(), 'vlalign-seams-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

// Two pairs: a prompt with images, a text-only prompt. No chosen token is id 0 ('!'), which legacy
// TRL's NLL skips (ignore_index=0, trl_peft.md §1.5) and the current form trains.
const pairs = (images: processing.image.RgbImage[]) => [
  { prompt: ask('Compare the pictures.', images.length), images, chosen: 'The first is square.', rejected: 'A cat!' },
  { prompt: ask('Say hello.', 0), images: [], chosen: 'Hello.', rejected: 'No, thank you.' },
];

async function pairBatch(processor: processing.Processor, images: processing.image.RgbImage[]) {
  const side = (key: 'chosen' | 'rejected') =>
    processor.process(pairs(images).map((p) => ({ prompt: p.prompt, completion: reply(p[key]), images: p.images })));
  return data.collatePairs(processor, await side('chosen'), await side('rejected'));
}

/** log p(target) [R, T] from materialised logits [R, T, V]; 0 where the target is ignored. */
function targetLogps(logits: Tensor, targets: Tensor): Tensor {
  const picked = logits.logSoftmax(-1).gather(2, targets.clamp(0).unsqueeze(2)).squeeze(2);
  return torch.where(targets.ne(IGNORE), picked, 0);
}

/** The MPO loss from the formulas, on the policy's and the reference's logits. */
function mpoFromFormulas(policyLogits: Tensor, refLogits: Tensor, targets: Tensor, pairs: number, shift: boolean) {
  const tokens = targetLogps(policyLogits, targets);
  const policy = tokens.sum(1);
  const ref = targetLogps(refLogits, targets).sum(1);
  const rc = policy.narrow(0, 0, pairs).sub(ref.narrow(0, 0, pairs)); // chosen rows, then rejected rows
  const rr = policy.narrow(0, pairs, pairs).sub(ref.narrow(0, pairs, pairs));
  const sigmoid = F.logsigmoid(rc.sub(rr).mul(BETA)).neg().mean();
  const d = shift ? torch.cat([rc, rr]).mul(BETA).mean().detach() : torch.zeros([], { dtype: rc.dtype });
  const bcoPair = F.logsigmoid(rc.mul(BETA).sub(d))
    .add(F.logsigmoid(rr.mul(BETA).sub(d).neg()))
    .neg()
    .mean();
  const chosenTokens = targets.narrow(0, 0, pairs).ne(IGNORE).sum().item() as number;
  const sft = tokens.narrow(0, 0, pairs).sum().neg().div(chosenTokens);
  return sigmoid.mul(WEIGHTS.sigmoid).add(bcoPair.mul(WEIGHTS.bco_pair)).add(sft.mul(WEIGHTS.sft));
}

// InternVL gets one image: each is a 448 tile of 1,025 ViT tokens, slow in float64 on two cores.
const FAMILIES = {
  qwen2_vl: {
    images: [image(56, 56, 1), image(84, 56, 2)],
    norm: 'model.norm.weight',
    deep: ['model.layers.0.mlp.down_proj.weight', 'visual.patch_embed.proj.weight'],
  },
  internvl: {
    images: [image(56, 56, 1)],
    norm: 'language_model.model.norm.weight',
    deep: [
      'language_model.model.layers.0.mlp.down_proj.weight',
      'mlp1.1.weight',
      'vision_model.embeddings.patch_embedding.weight',
    ],
  },
} as const;

interface Compared {
  /** float64 all the way: the hidden states, the LM head, the final norm. */
  exact: Tensor[];
  /** Reached through the final RMSNorm's float32 computation. */
  deep: Tensor[];
}

// The library's loss and the formulas' loss from one forward, and their gradients.
function compare(fused: Tensor, eager: Tensor, inputs: Compared, what: string): void {
  const expected = eager.item() as number;
  expectClose(fused.item() as number, expected, 1e-12 * Math.max(1, Math.abs(expected)), `${what} loss`);
  const all = [...inputs.exact, ...inputs.deep];
  const got = torch.autograd.grad(fused, all, { retainGraph: true });
  const want = torch.autograd.grad(eager, all, { retainGraph: true });
  all.forEach((_, k) => {
    const [g, w] = [arr(got[k]!), arr(want[k]!)];
    const scale = w.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
    expect(scale, `${what} gradient ${k} reaches its tensor`).toBeGreaterThan(0);
    const rtol = k < inputs.exact.length ? 1e-12 : 1e-6;
    expectAllClose(g, w, rtol * scale, 0, `${what} gradient ${k}`);
  });
}

const FAMILY_NAMES = Object.keys(FAMILIES) as Array<keyof typeof FAMILIES>;

describe.each(FAMILY_NAMES)('%s: pairs → collatePairs → model → MPO loss → backward', (family) => {
  const names = FAMILIES[family];
  let policyDir: string;
  let refDir: string;
  let batch: data.PairBatch;
  beforeAll(async () => {
    [policyDir, refDir] = [join(root, `${family}-policy`), join(root, `${family}-ref`)];
    await tiny.writeTinyCheckpoint(policyDir, family, { seed: 5 });
    await tiny.writeTinyCheckpoint(refDir, family, { seed: 6 }); // other weights, its own LM head
    const processor = await processing.fromPretrained(policyDir, { tiling: { maxNum: 1 } });
    batch = await pairBatch(processor, names.images);
    expect(batch.pairs).toBe(2);
    expect(rows(batch.targets).slice(0, 2).flat()).not.toContain(0);
  });

  const load = async (dir: string): Promise<models.CausalLM> =>
    (await models.fromPretrained(dir)).to({ dtype: 'float64' }).eval();
  const param = (model: models.CausalLM, name: string): Tensor => {
    const p = new Map(model.namedParameters()).get(name);
    if (!p) throw new Error(`${family} has no parameter ${name}`);
    return p;
  };

  it('(a) full fine-tune against a separately loaded frozen reference with its own head', async () => {
    const policy = await load(policyDir);
    const reference = (await load(refDir)).requiresGrad_(false);
    try {
      torch.tidy(() => {
        const ref = torch.noGrad(() => reference.forward(batch));
        const out = policy.forward(batch);
        for (const { name, shift, config } of CONFIGS) {
          const loss = new losses.PreferenceLoss(config).compute(
            { hidden: out.hidden, targets: batch.targets, ref: { hidden: ref.hidden, head: reference.lmHead() } },
            policy.lmHead(),
          );
          const eager = mpoFromFormulas(out.logits!, ref.logits!, batch.targets, batch.pairs, shift);
          // The reference differs from the policy, so r is not 0 and every term is at work.
          expect(Math.abs(loss.metrics['rewards/margins']!)).toBeGreaterThan(1e-3);
          compare(
            loss.loss,
            eager,
            {
              exact: [out.hidden, policy.lmHead().weight, param(policy, names.norm)],
              deep: names.deep.map((n) => param(policy, n)),
            },
            name,
          );
        }
        expect(reference.parameters().every((p) => p.grad === null)).toBe(true);
      });
    } finally {
      policy.dispose();
      reference.dispose();
    }
  }, 180_000);

  it('(b) LoRA with the policy itself, adapters disabled, as the reference', async () => {
    const model = await load(policyDir);
    const targetModules = adapters.languageModelTargets(model);
    const peft = adapters.getPeftModel(model, { r: 4, loraAlpha: 8, targetModules });
    perturb(peft, 3); // B != 0: the adapted policy differs from its base
    try {
      torch.tidy(() => {
        const [ref, refHead] = peft.withAdaptersDisabled(
          () => [torch.noGrad(() => model.forward(batch)), model.lmHead()] as const,
        );
        const out = model.forward(batch);
        const picked = /layers\.0\.self_attn\.q_proj|layers\.2\.mlp\.down_proj/;
        const lora = peft.trainableParameters().filter(([n]) => picked.test(n));
        expect(lora.length).toBe(4); // lora_A and lora_B of two layers
        for (const { name, shift, config } of CONFIGS) {
          const loss = new losses.PreferenceLoss(config).compute(
            { hidden: out.hidden, targets: batch.targets, ref: { hidden: ref.hidden, head: refHead } },
            model.lmHead(),
          );
          const eager = mpoFromFormulas(out.logits!, ref.logits!, batch.targets, batch.pairs, shift);
          expect(Math.abs(loss.metrics['rewards/margins']!)).toBeGreaterThan(1e-4);
          compare(loss.loss, eager, { exact: [out.hidden], deep: lora.map(([, p]) => p) }, name);
        }
      });
    } finally {
      peft.dispose();
    }
  }, 180_000);
});
