// The Qwen vision tower's per-segment attention (segments of equal length batched, one attention per
// length) against one attention over all rows with the block-diagonal mask of nn.segmentMask (the
// transformers-shaped [N, N] form): outputs and gradients, float64, to 1e-10, for images of mixed
// sizes (equal sizes apart, a two-frame grid) and Qwen2.5-VL's ragged windows.
import { describe, expect, it } from 'vitest';
import * as torch from '../../lib/torch/index.js';
import type { Tensor } from '../../lib/torch/index.js';
import { applyRotary, attend, cosSin, initWeights, segmentMask, type CosSin } from '../../lib/nn/index.js';
import { imageSegments, patchPositions, windowLayout, type Grid } from '../../lib/models/qwen2_vl/vision_layout.js';
import { QwenVisionTower } from '../../lib/models/qwen2_vl/vision.js';
import type { VisionConfig } from '../../lib/models/qwen2_vl/vision_config.js';
import { segmentAttention, segmentIndex, segmentPlan } from '../../lib/models/qwen2_vl/segment_attention.js';

const TOL = 1e-10;

function maxDiff(a: Tensor, b: Tensor): number {
  expect(a.shape).toEqual(b.shape);
  return torch.tidy(() => a.sub(b).abs().max().item() as number);
}

// One masked attention over all N rows: q, k, v [N, H, hd] to [N, H·hd].
function denseAttention(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | null): Tensor {
  return torch.tidy(() => {
    const heads = (t: Tensor): Tensor => t.transpose(0, 1).unsqueeze(0);
    const out = attend(heads(q), heads(k), heads(v), { mask });
    return out.squeeze(0).transpose(0, 1).reshape([q.shape[0]!, -1]);
  });
}

describe('segmentPlan', () => {
  it('keeps rows in place when equal lengths are adjacent', () => {
    expect(segmentPlan([0, 4, 8, 12, 14])).toEqual({
      groups: [
        { count: 3, length: 4 },
        { count: 1, length: 2 },
      ],
      order: null,
    });
  });

  it('gathers the segments of one length together, lengths by first appearance', () => {
    // Segments [0,2) [2,5) [5,7) [7,8): lengths 2, 3, 2, 1.
    const plan = segmentPlan([0, 2, 5, 7, 8]);
    expect(plan.groups).toEqual([
      { count: 2, length: 2 },
      { count: 1, length: 3 },
      { count: 1, length: 1 },
    ]);
    expect([...plan.order!]).toEqual([0, 1, 5, 6, 2, 3, 4, 7]);
  });
});

describe('segmentAttention', () => {
  const cases: Array<[string, number[]]> = [
    ['equal lengths apart', [0, 3, 8, 11, 13, 18, 19]],
    ['one length', [0, 4, 8, 12]],
    ['one segment', [0, 7]],
  ];
  it.each(cases)('equals the block-masked attention and its gradients (%s)', (_, cu) => {
    torch.tidy(() => {
      torch.manualSeed(1);
      const n = cu[cu.length - 1]!;
      const [q, k, v] = [0, 1, 2].map(() => torch.randn([n, 3, 4], { dtype: 'float64' }).requiresGrad_(true)) as [
        Tensor,
        Tensor,
        Tensor,
      ];
      const cotangent = torch.randn([n, 12], { dtype: 'float64' });
      const plan = segmentPlan(cu);
      const ours = segmentAttention(q, k, v, plan, segmentIndex(plan, 'cpu'));
      const dense = denseAttention(q, k, v, segmentMask(cu, 'float64'));
      expect(maxDiff(ours, dense)).toBeLessThan(TOL);
      const gradOurs = torch.autograd.grad(ours.mul(cotangent).sum(), [q, k, v]);
      const gradDense = torch.autograd.grad(dense.mul(cotangent).sum(), [q, k, v]);
      gradOurs.forEach((g, i) => expect(maxDiff(g!, gradDense[i]!)).toBeLessThan(TOL));
      // The mask matters here (several segments): attending over all rows gives other numbers.
      if (cu.length > 2) expect(maxDiff(denseAttention(q, k, v, null), dense)).toBeGreaterThan(1e-3);
    });
  });

  it('refuses a plan that does not cover the rows', () => {
    torch.tidy(() => {
      const q = torch.zeros([5, 1, 2], { dtype: 'float64' });
      expect(() => segmentAttention(q, q, q, segmentPlan([0, 2, 4]), null)).toThrow(/cover 4 rows but q has 5/);
    });
  });
});

// Tiny towers: 2-px patches (rows of 3·2·2·2 = 24 values); Qwen2.5-VL windows of 2×2 merged units,
// block 1 attending over whole images.
const BASE = {
  width: 32,
  numHeads: 4,
  intermediateSize: 48,
  outHiddenSize: 24,
  inChannels: 3,
  patchSize: 2,
  temporalPatchSize: 2,
  spatialMergeSize: 2,
};
const CONFIGS: VisionConfig[] = [
  { ...BASE, family: 'qwen2_vl', depth: 2, hiddenAct: 'quick_gelu', windowSize: 0, fullAttentionBlocks: [] },
  { ...BASE, family: 'qwen2_5_vl', depth: 3, hiddenAct: 'silu', windowSize: 8, fullAttentionBlocks: [1] },
];
// Image segments of 60, 32 (two frames of 16), 60 and 32 rows: equal sizes apart, so rows are
// gathered; the 3×5 merged grids cut into windows of 4, 2 and 1 merged units.
const GRIDS: Grid[] = [
  [1, 6, 10],
  [2, 4, 4],
  [1, 6, 10],
  [1, 4, 8],
];

// The tower as it was with dense masks: the same modules, attention over all rows with the
// [1, 1, N, N] block-diagonal mask (or none, to show the mask matters).
function denseTower(tower: QwenVisionTower, pixels: Tensor, grids: readonly Grid[], masked = true): Tensor {
  return torch.tidy(() => {
    const c = tower.config;
    const unit = c.spatialMergeSize ** 2;
    const windows =
      c.family === 'qwen2_5_vl'
        ? windowLayout(grids, c.spatialMergeSize, c.windowSize / c.spatialMergeSize / c.patchSize)
        : null;
    const order = windows && torch.tensor(windows.windowIndex).long();
    const permute = (t: Tensor): Tensor =>
      order ? t.view([-1, unit, t.shape[1]!]).indexSelect(0, order).flatten(0, 1) : t;
    const { rows, cols } = patchPositions(grids, c.spatialMergeSize);
    const angles = torch.cat(
      [
        torch.tensor(rows).float().unsqueeze(1).mul(tower.invFreq),
        torch.tensor(cols).float().unsqueeze(1).mul(tower.invFreq),
      ],
      1,
    );
    const table = cosSin(permute(angles));
    const rotary: CosSin = { cos: table.cos.unsqueeze(1), sin: table.sin.unsqueeze(1) };
    const maskOf = (cu: readonly number[]): Tensor | null => (masked ? segmentMask(cu, 'float64') : null);
    const imageMask = maskOf(imageSegments(grids));
    const windowMask = windows && maskOf(windows.cuWindowSeqlens);
    let h = permute(tower.patch_embed.forward(pixels));
    tower.blocks.items.forEach((block, i) => {
      const mask = windows && !c.fullAttentionBlocks.includes(i) ? windowMask : imageMask;
      const x = block.norm1.forward(h);
      const n = x.shape[0]!;
      const [q, k, v] = block.attn.qkv.forward(x).view([n, 3, c.numHeads, -1]).unbind(1) as [Tensor, Tensor, Tensor];
      const rotate = (t: Tensor): Tensor => applyRotary(t.float(), rotary).to(t.dtype);
      h = h.add(block.attn.proj.forward(denseAttention(rotate(q), rotate(k), v, mask)));
      h = h.add(block.mlp.forward(block.norm2.forward(h)));
    });
    const embeds = tower.merger.forward(h);
    return order ? embeds.indexSelect(0, order.argsort()) : embeds;
  });
}

// Gradients of `loss` by name, pixels first, taken from .grad after one backward.
function gradients(tower: QwenVisionTower, pixels: Tensor, loss: Tensor): Map<string, Tensor> {
  tower.zeroGrad();
  pixels.grad = null;
  loss.backward();
  return new Map([
    ['pixels', pixels.grad!],
    ...[...tower.namedParameters()].map(([name, p]) => [name, p.grad!] as [string, Tensor]),
  ]);
}

function towerOf(config: VisionConfig): QwenVisionTower {
  torch.manualSeed(2);
  const tower = new QwenVisionTower(config, { dtype: 'float64' });
  initWeights(tower, 0.2);
  return tower;
}

describe.each(CONFIGS)('$family vision tower', (config) => {
  const rows = GRIDS.reduce((n, [t, h, w]) => n + t * h * w, 0);

  it.each([false, true])(
    'outputs and gradients (pixels, every weight) equal the dense block-masked tower; checkpointing %s',
    (checkpointing) => {
      const tower = towerOf(config);
      try {
        tower.train().gradientCheckpointing_(checkpointing);
        torch.tidy(() => {
          torch.manualSeed(3);
          const pixels = torch.randn([rows, 24], { dtype: 'float64' }).requiresGrad_(true);
          const ours = tower.forward(pixels, GRIDS).embeds;
          const dense = denseTower(tower, pixels, GRIDS);
          expect(ours.shape).toEqual([rows / 4, BASE.outHiddenSize]);
          expect(maxDiff(ours, dense)).toBeLessThan(TOL);
          expect(maxDiff(denseTower(tower, pixels, GRIDS, false), dense)).toBeGreaterThan(1e-3);

          // backward, not torch.grad: a checkpointed block hands its weights' gradients to .grad.
          const cotangent = torch.randnLike(ours);
          const gradOurs = gradients(tower, pixels, ours.mul(cotangent).sum());
          const gradDense = gradients(tower, pixels, dense.mul(cotangent).sum());
          expect([...gradOurs.keys()]).toEqual(['pixels', ...[...tower.namedParameters()].map(([name]) => name)]);
          const off = [...gradOurs].filter(([name, g]) => !(maxDiff(g, gradDense.get(name)!) < TOL));
          expect(off.map(([name]) => name)).toEqual([]);
          // Every weight is reached (none of the compared gradients is trivially zero).
          const zero = [...gradDense].filter(([, g]) => (g.abs().max().item() as number) === 0);
          expect(zero.map(([name]) => name)).toEqual([]);
        });
      } finally {
        tower.dispose();
      }
    },
  );
});
