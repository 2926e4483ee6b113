// The parameterised building blocks: Linear, Embedding, Conv patch embeddings, Dropout. Each owns
// tensors named as in torch.nn (`weight`, `bias`), so checkpoint names line up without mapping.
import * as torch from '../torch/index.js';
import type { Tensor } from '../torch/index.js';
import { Module } from './module.js';
import type { ParamOptions } from './options.js';

export class Linear extends Module {
  readonly weight: Tensor;
  readonly bias: Tensor | null;

  constructor(
    readonly inFeatures: number,
    readonly outFeatures: number,
    options: ParamOptions & { bias?: boolean } = {},
  ) {
    super();
    this.weight = this.registerParameter('weight', torch.empty([outFeatures, inFeatures], options));
    this.bias = (options.bias ?? true) ? this.registerParameter('bias', torch.empty([outFeatures], options)) : null;
  }

  forward(x: Tensor): Tensor {
    return torch.nn.functional.linear(x, this.weight, this.bias);
  }
}

export class Embedding extends Module {
  readonly weight: Tensor;

  constructor(
    readonly numEmbeddings: number,
    readonly embeddingDim: number,
    options: ParamOptions = {},
  ) {
    super();
    this.weight = this.registerParameter('weight', torch.empty([numEmbeddings, embeddingDim], options));
  }

  forward(ids: Tensor): Tensor {
    return torch.nn.functional.embedding(ids, this.weight);
  }
}

/**
 * A patch embedding convolution whose kernel equals its stride (ViT / Qwen Conv3d): non-overlapping
 * patches, so the conv is a matmul of flattened patches with the flattened kernel.
 */
export class PatchConv extends Module {
  readonly weight: Tensor;
  readonly bias: Tensor | null;

  constructor(
    inChannels: number,
    outChannels: number,
    readonly kernel: readonly number[],
    options: ParamOptions & { bias?: boolean } = {},
  ) {
    super();
    this.weight = this.registerParameter('weight', torch.empty([outChannels, inChannels, ...kernel], options));
    this.bias = (options.bias ?? true) ? this.registerParameter('bias', torch.empty([outChannels], options)) : null;
  }

  /** Image(s) [B, C, ...spatial] to feature maps [B, out, ...spatial / kernel]. */
  forward(x: Tensor): Tensor {
    const F = torch.nn.functional;
    return this.kernel.length === 2
      ? F.conv2d(x, this.weight, this.bias, { stride: this.kernel })
      : F.conv3d(x, this.weight, this.bias, { stride: this.kernel });
  }

  /** Already-flattened patches [N, C·prod(kernel)] to [N, out]. */
  forwardPatches(patches: Tensor): Tensor {
    return torch.tidy(() =>
      torch.nn.functional.linear(patches, this.weight.reshape([this.weight.shape[0]!, -1]), this.bias),
    );
  }
}

export class Dropout extends Module {
  // Writable: trainers switch dropout off (TRL's disable_dropout) without rebuilding the model.
  constructor(public p = 0.1) {
    super();
  }

  forward(x: Tensor): Tensor {
    return this.training && this.p > 0 ? torch.nn.functional.dropout(x, this.p, true) : x;
  }
}
