// InternViT (`vision_model.*`): a Conv2d patch embedding with a CLS token and learned absolute
// positions, then pre-norm blocks with LayerScale (`x + ls1 · attn(norm1(x))`, `x + ls2 · mlp(norm2(x))`).
// Attention is full (no mask), scaled on q before q·kᵀ, with the softmax in the activation dtype;
// InternViT-6B adds RMSNorm on q and k over the whole width before the head split. No final norm.
import * as torch from '../../torch/index.js';
import type { Tensor } from '../../torch/index.js';
import {
  Module,
  Linear,
  LayerNorm,
  RMSNorm,
  ModuleList,
  PatchConv,
  activation,
  checkpointed,
  type Activation,
  type ParamOptions,
} from '../../nn/index.js';
import { resizeBicubic } from './bicubic.js';
import type { InternVisionConfig } from './config.js';

const norm = (c: InternVisionConfig, o: ParamOptions): LayerNorm | RMSNorm =>
  c.normType === 'layer_norm'
    ? new LayerNorm(c.hiddenSize, c.layerNormEps, o)
    : new RMSNorm(c.hiddenSize, c.layerNormEps, o);

export class InternVisionEmbeddings extends Module {
  readonly class_embedding: Tensor;
  readonly patch_embedding: PatchConv;
  readonly position_embedding: Tensor;

  constructor(
    readonly config: InternVisionConfig,
    options: ParamOptions,
  ) {
    super();
    const { hiddenSize: d, patchSize: p, imageSize } = config;
    this.class_embedding = this.registerParameter('class_embedding', torch.empty([1, 1, d], options));
    this.patch_embedding = this.registerModule(
      'patch_embedding',
      new PatchConv(config.numChannels, d, [p, p], options),
    );
    this.position_embedding = this.registerParameter(
      'position_embedding',
      torch.empty([1, (imageSize / p) ** 2 + 1, d], options),
    );
  }

  /** Random CLS and position embeddings (nn.initWeights calls this; loading overwrites them). */
  resetParameters(std: number): void {
    torch.noGrad(() => {
      this.class_embedding.normal_(0, std);
      this.position_embedding.normal_(0, std);
    });
  }

  /** pixels [T, C, H, W] to [T, 1 + (H/p)(W/p), D]: CLS, then patches row-major, plus positions. */
  forward(pixelValues: Tensor): Tensor {
    return torch.tidy(() => {
      const dtype = this.patch_embedding.weight.dtype;
      const patches = this.patch_embedding.forward(pixelValues.to(dtype));
      const [t, d, h, w] = patches.shape as [number, number, number, number];
      const tokens = torch.cat(
        [this.class_embedding.expand([t, 1, d]).to(dtype), patches.flatten(2).transpose(1, 2)],
        1,
      );
      return tokens.add(this.positions(h, w).to(dtype));
    });
  }

  /** [1, 1 + h·w, D]: the CLS position, then the patch grid resized to h × w. */
  positions(h: number, w: number): Tensor {
    return torch.tidy(() => {
      const side = this.config.imageSize / this.config.patchSize;
      const [cls, grid] = this.position_embedding.split([1, side * side], 1) as [Tensor, Tensor];
      const resized = resizeBicubic(grid.reshape([side, side, -1]), h, w).reshape([1, h * w, -1]);
      return torch.cat([cls, resized.to(cls.dtype)], 1);
    });
  }
}

export class InternAttention extends Module {
  readonly qkv: Linear;
  readonly proj: Linear;
  readonly q_norm: RMSNorm | null;
  readonly k_norm: RMSNorm | null;

  constructor(
    readonly config: InternVisionConfig,
    options: ParamOptions,
  ) {
    super();
    const d = config.hiddenSize;
    this.qkv = this.registerModule('qkv', new Linear(d, 3 * d, { ...options, bias: config.qkvBias }));
    this.q_norm = config.qkNorm ? this.registerModule('q_norm', new RMSNorm(d, config.qkNormEps, options)) : null;
    this.k_norm = config.qkNorm ? this.registerModule('k_norm', new RMSNorm(d, config.qkNormEps, options)) : null;
    this.proj = this.registerModule('proj', new Linear(d, d, options));
  }

  /** x [T, N, D] to [T, N, D]. */
  forward(x: Tensor): Tensor {
    return torch.tidy(() => {
      const [t, n, d] = x.shape as [number, number, number];
      const h = this.config.numHeads;
      const hd = d / h;
      // qkv columns are (3, heads, head_dim): each third is one of q, k, v with heads flattened.
      const [q, k, v] = this.qkv.forward(x).split(d, -1) as [Tensor, Tensor, Tensor];
      const heads = (u: Tensor, normLayer: RMSNorm | null): Tensor =>
        (normLayer ? normLayer.forward(u) : u).reshape([t, n, h, hd]).transpose(1, 2);
      let weights = heads(q, this.q_norm)
        .mul(hd ** -0.5)
        .matmul(heads(k, this.k_norm).transpose(-2, -1))
        .softmax(-1);
      if (this.training && this.config.attentionDropout > 0)
        weights = torch.nn.functional.dropout(weights, this.config.attentionDropout, true);
      return this.proj.forward(weights.matmul(heads(v, null)).transpose(1, 2).reshape([t, n, d]));
    });
  }
}

export class InternMLP extends Module {
  readonly fc1: Linear;
  readonly fc2: Linear;
  readonly act: Activation;

  constructor(config: InternVisionConfig, options: ParamOptions) {
    super();
    this.fc1 = this.registerModule('fc1', new Linear(config.hiddenSize, config.intermediateSize, options));
    this.fc2 = this.registerModule('fc2', new Linear(config.intermediateSize, config.hiddenSize, options));
    this.act = activation(config.hiddenAct, 'vision_config.hidden_act');
  }

  forward(x: Tensor): Tensor {
    return torch.tidy(() => this.fc2.forward(this.act(this.fc1.forward(x))));
  }
}

export class InternVisionEncoderLayer extends Module {
  readonly attn: InternAttention;
  readonly mlp: InternMLP;
  readonly norm1: LayerNorm | RMSNorm;
  readonly norm2: LayerNorm | RMSNorm;
  readonly ls1: Tensor;
  readonly ls2: Tensor;

  constructor(config: InternVisionConfig, options: ParamOptions) {
    super();
    this.attn = this.registerModule('attn', new InternAttention(config, options));
    this.mlp = this.registerModule('mlp', new InternMLP(config, options));
    this.norm1 = this.registerModule('norm1', norm(config, options));
    this.norm2 = this.registerModule('norm2', norm(config, options));
    this.ls1 = this.registerParameter('ls1', torch.full([config.hiddenSize], config.layerScaleInit, options));
    this.ls2 = this.registerParameter('ls2', torch.full([config.hiddenSize], config.layerScaleInit, options));
  }

  forward(x: Tensor): Tensor {
    return torch.tidy(() => {
      const h = x.add(this.attn.forward(this.norm1.forward(x).to(x.dtype)).mul(this.ls1));
      return h.add(this.mlp.forward(this.norm2.forward(h).to(h.dtype)).mul(this.ls2));
    });
  }
}

export class InternVisionEncoder extends Module {
  readonly layers: ModuleList<InternVisionEncoderLayer>;

  constructor(config: InternVisionConfig, options: ParamOptions) {
    super();
    this.layers = this.registerModule(
      'layers',
      new ModuleList(Array.from({ length: config.numLayers }, () => new InternVisionEncoderLayer(config, options))),
    );
  }
}

export class InternVisionModel extends Module {
  readonly embeddings: InternVisionEmbeddings;
  readonly encoder: InternVisionEncoder;

  constructor(
    readonly config: InternVisionConfig,
    options: ParamOptions = {},
  ) {
    super();
    this.embeddings = this.registerModule('embeddings', new InternVisionEmbeddings(config, options));
    this.encoder = this.registerModule('encoder', new InternVisionEncoder(config, options));
  }

  /**
   * Tiles [T, C, H, W] to hidden states [T, 1 + N, D] after the first `layers` blocks (default all:
   * the last hidden state; hidden_states[k] of the reference is `layers = k`, 0 = the embeddings).
   */
  forward(pixelValues: Tensor, layers = this.config.numLayers): Tensor {
    if (pixelValues.shape.length !== 4)
      throw new Error(
        `InternVisionModel: pixel_values must be [tiles, 3, H, W], got [${pixelValues.shape.join(', ')}]`,
      );
    return torch.tidy(() => {
      let h = this.embeddings.forward(pixelValues);
      for (const layer of this.encoder.layers.items.slice(0, layers))
        h = checkpointed(this, (x) => layer.forward(x!), [h]);
      return h;
    });
  }
}
