// The Qwen2-VL / Qwen2.5-VL vision tower (`visual.*`): patch embedding, pre-norm ViT blocks with
// 2-D rotary attention that never crosses images (nor, in Qwen2.5-VL's windowed blocks, windows),
// and the 2×2 patch merger that produces one LLM token per merge block.
import * as torch from '../../torch/index.js';
import type { Tensor } from '../../torch/index.js';
import {
  Module,
  Linear,
  LayerNorm,
  RMSNorm,
  ModuleDict,
  ModuleList,
  PatchConv,
  activation,
  applyRotary,
  checkpointed,
  cosSin,
  inverseFrequencies,
  type Activation,
  type CosSin,
  type ParamOptions,
} from '../../nn/index.js';
import { Qwen2MLP } from '../qwen2/decoder.js';
import type { VisionConfig } from './vision_config.js';
import { imageSegments, patchPositions, windowLayout, type Grid } from './vision_layout.js';
import {
  segmentAttention,
  segmentIndex,
  segmentPlan,
  type SegmentIndex,
  type SegmentPlan,
} from './segment_attention.js';

const EPS = 1e-6;
const norm = (c: VisionConfig, dim: number, o: ParamOptions): LayerNorm | RMSNorm =>
  c.family === 'qwen2_vl' ? new LayerNorm(dim, EPS, o) : new RMSNorm(dim, EPS, o);

class VisionAttention extends Module {
  readonly qkv: Linear;
  readonly proj: Linear;

  constructor(
    readonly width: number,
    readonly numHeads: number,
    options: ParamOptions,
  ) {
    super();
    this.qkv = this.registerModule('qkv', new Linear(width, 3 * width, options));
    this.proj = this.registerModule('proj', new Linear(width, width, options));
  }

  /** x [N, W]; rotary in float32 [N, 1, hd]; rows attend within the plan's segments. */
  forward(x: Tensor, rotary: CosSin, segments: Segments): Tensor {
    return torch.tidy(() => {
      const n = x.shape[0]!;
      const [q, k, v] = this.qkv.forward(x).view([n, 3, this.numHeads, -1]).unbind(1) as [Tensor, Tensor, Tensor];
      const [rq, rk] = [this.rotate(q, rotary), this.rotate(k, rotary)];
      return this.proj.forward(segmentAttention(rq, rk, v, segments.plan, segments.index));
    });
  }

  /** q or k [N, H, hd]: rotated in float32 and cast back, as the reference does. */
  rotate(t: Tensor, rotary: CosSin): Tensor {
    return torch.tidy(() => applyRotary(t.float(), rotary).to(t.dtype));
  }
}

class VisionMLP extends Module {
  readonly fc1: Linear;
  readonly fc2: Linear;
  readonly act: Activation;

  constructor(width: number, hidden: number, act: string, options: ParamOptions) {
    super();
    this.fc1 = this.registerModule('fc1', new Linear(width, hidden, options));
    this.fc2 = this.registerModule('fc2', new Linear(hidden, width, options));
    this.act = activation(act, 'vision_config.hidden_act');
  }

  forward(x: Tensor): Tensor {
    return torch.tidy(() => this.fc2.forward(this.act(this.fc1.forward(x))));
  }
}

class VisionBlock extends Module {
  readonly norm1: LayerNorm | RMSNorm;
  readonly norm2: LayerNorm | RMSNorm;
  readonly attn: VisionAttention;
  readonly mlp: VisionMLP | Qwen2MLP;

  constructor(c: VisionConfig, options: ParamOptions) {
    super();
    this.norm1 = this.registerModule('norm1', norm(c, c.width, options));
    this.norm2 = this.registerModule('norm2', norm(c, c.width, options));
    this.attn = this.registerModule('attn', new VisionAttention(c.width, c.numHeads, options));
    this.mlp = this.registerModule(
      'mlp',
      c.family === 'qwen2_vl'
        ? new VisionMLP(c.width, c.intermediateSize, c.hiddenAct, options)
        : new Qwen2MLP(c.width, c.intermediateSize, c.hiddenAct, { ...options, bias: true }),
    );
  }

  forward(x: Tensor, rotary: CosSin, segments: Segments): Tensor {
    return torch.tidy(() => {
      const h = x.add(this.attn.forward(this.norm1.forward(x), rotary, segments));
      return h.add(this.mlp.forward(this.norm2.forward(h)));
    });
  }
}

class PatchMerger extends Module {
  readonly ln_q: LayerNorm | RMSNorm;
  // Checkpoint names are mlp.0 and mlp.2 (mlp.1 was the parameterless GELU).
  readonly mlp: ModuleDict<Linear>;

  constructor(c: VisionConfig, options: ParamOptions) {
    super();
    const merged = c.width * c.spatialMergeSize ** 2;
    this.ln_q = this.registerModule('ln_q', norm(c, c.width, options));
    this.mlp = this.registerModule(
      'mlp',
      new ModuleDict({ 0: new Linear(merged, merged, options), 2: new Linear(merged, c.outHiddenSize, options) }),
    );
  }

  /** [N, W] rows in merge-block order to [N / merge², out]. */
  forward(x: Tensor): Tensor {
    return torch.tidy(() => {
      const [first, second] = [this.mlp.get('0'), this.mlp.get('2')];
      const merged = this.ln_q.forward(x).view([-1, first.inFeatures]);
      return second.forward(torch.nn.functional.gelu(first.forward(merged)));
    });
  }
}

/** Which rows attend to which: one image frame, or one Qwen2.5-VL window, per segment. */
interface Segments {
  plan: SegmentPlan;
  index: SegmentIndex | null;
}

const segmentsOf = (cuSeqlens: readonly number[], device: Tensor['device']): Segments => {
  const plan = segmentPlan(cuSeqlens);
  return { plan, index: segmentIndex(plan, device) };
};

export interface VisionOutput {
  /** [N / merge², out]: one row per LLM image token, in prompt order. */
  embeds: Tensor;
  /** Intermediates the golden tests compare: patch embeddings and the merger input. */
  patchEmbeds?: Tensor;
  preMerger?: Tensor;
}

export class QwenVisionTower extends Module {
  readonly patch_embed: PatchEmbed;
  readonly blocks: ModuleList<VisionBlock>;
  readonly merger: PatchMerger;
  readonly invFreq: Tensor;

  constructor(
    readonly config: VisionConfig,
    options: ParamOptions = {},
  ) {
    super();
    this.patch_embed = this.registerModule('patch_embed', new PatchEmbed(config, options));
    this.blocks = this.registerModule(
      'blocks',
      new ModuleList(Array.from({ length: config.depth }, () => new VisionBlock(config, options))),
    );
    this.merger = this.registerModule('merger', new PatchMerger(config, options));
    this.invFreq = this.registerBuffer(
      'inv_freq',
      inverseFrequencies(config.width / config.numHeads / 2, 10000),
      false,
    );
  }

  get dtype(): Tensor['dtype'] {
    return this.patch_embed.proj.weight.dtype;
  }

  /** pixelValues [N, C·T·P·P] and one (t, h, w) grid per image. */
  forward(pixelValues: Tensor, grids: readonly Grid[], options: { intermediates?: boolean } = {}): VisionOutput {
    return torch.tidy(() => {
      const c = this.config;
      const unit = c.spatialMergeSize ** 2;
      const patchEmbeds = this.patch_embed.forward(pixelValues.to(this.dtype));
      const windows =
        c.family === 'qwen2_5_vl'
          ? windowLayout(grids, c.spatialMergeSize, c.windowSize / c.spatialMergeSize / c.patchSize)
          : null;
      const order = windows && torch.tensor(windows.windowIndex).long();
      const permute = (t: Tensor): Tensor =>
        order ? t.view([-1, unit, t.shape[1]!]).indexSelect(0, order).flatten(0, 1) : t;
      const rotary = this.#rotary(grids, permute);
      const device = pixelValues.device;
      const images = segmentsOf(imageSegments(grids), device);
      const windowed = windows && segmentsOf(windows.cuWindowSeqlens, device);
      let h = permute(patchEmbeds);
      this.blocks.items.forEach((block, i) => {
        const segments = windowed && !c.fullAttentionBlocks.includes(i) ? windowed : images;
        // The permutations are checkpoint inputs so that a recomputing backward still holds them.
        const { order, restore } = segments.index ?? {};
        h = checkpointed(
          this,
          (x, cos, sin, o, r) =>
            block.forward(
              x,
              { cos: cos!, sin: sin! },
              { plan: segments.plan, index: o ? { order: o, restore: r! } : null },
            ),
          [h, rotary.cos, rotary.sin, ...(order ? [order, restore!] : [])],
        );
      });
      let embeds = this.merger.forward(h);
      if (order) embeds = embeds.indexSelect(0, order.argsort());
      return options.intermediates ? { embeds, patchEmbeds, preMerger: h } : { embeds };
    });
  }

  // cos/sin [N, 1, hd] of cat(row·f, col·f) per patch row, permuted like the rows.
  #rotary(grids: readonly Grid[], permute: (t: Tensor) => Tensor): CosSin {
    return torch.tidy(() => {
      const { rows, cols } = patchPositions(grids, this.config.spatialMergeSize);
      const f = this.invFreq;
      const angles = torch.cat(
        [torch.tensor(rows).float().unsqueeze(1).mul(f), torch.tensor(cols).float().unsqueeze(1).mul(f)],
        1,
      );
      const { cos, sin } = cosSin(permute(angles));
      return { cos: cos.unsqueeze(1), sin: sin.unsqueeze(1) };
    });
  }
}

class PatchEmbed extends Module {
  readonly proj: PatchConv;

  constructor(c: VisionConfig, options: ParamOptions) {
    super();
    this.proj = this.registerModule(
      'proj',
      new PatchConv(c.inChannels, c.width, [c.temporalPatchSize, c.patchSize, c.patchSize], {
        ...options,
        bias: false,
      }),
    );
  }

  forward(patches: Tensor): Tensor {
    return this.proj.forwardPatches(patches);
  }
}
