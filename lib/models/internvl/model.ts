// InternVLChatModel (InternVL 2.5 / 3 / 3.5): InternViT tiles → pixel shuffle → `mlp1` → rows that
// replace the `<IMG_CONTEXT>` embeddings in order, then a Qwen2 / Qwen3 LLM with plain 1-D positions.
// Module names are the remote-code checkpoint's (`vision_model.*`, `mlp1.*`, `language_model.*`);
// the family maps the transformers-native names onto them.
import * as torch from '../../torch/index.js';
import type { Tensor } from '../../torch/index.js';
import { Module, type KVCache, type LmHead, type ParamOptions } from '../../nn/index.js';
import type { CausalLM, CausalLMOutput, ForwardOptions, ModelInputs } from '../causal_lm.js';
import type { Json } from '../config_schema.js';
import { Qwen2ForCausalLM } from '../qwen2/causal_lm.js';
import type { TextConfig } from '../qwen2/config.js';
import { checkGeometry, parseInternVLConfig, type InternVLConfig } from './config.js';
import { pixelShuffle, VisionProjector } from './projector.js';
import { InternVisionModel } from './vision.js';
import { lockstepOf } from '../lockstep.js';

export interface InternVLOptions {
  /** The tokenizer's `<IMG_CONTEXT>` id (remote-code configs do not carry it). */
  imgContextTokenId?: number;
}

export interface ImageFeatures {
  /** [tiles, tokens per tile, D_llm]: the rows written over `<IMG_CONTEXT>`. */
  embeds: Tensor;
  /** With `intermediates`: the ViT hidden state fed to the projector [tiles, 1 + N, D_vit]. */
  vitHidden?: Tensor;
}

export class InternVLChatModel extends Module implements CausalLM {
  readonly vision_model: InternVisionModel;
  readonly mlp1: VisionProjector;
  readonly language_model: Qwen2ForCausalLM;
  readonly config: InternVLConfig;
  /** `<IMG_CONTEXT>`: null until known (from the native config, the options, or set by the caller). */
  imgContextTokenId: number | null;

  constructor(
    readonly rawConfig: Json,
    options: ParamOptions & InternVLOptions = {},
  ) {
    super();
    this.config = parseInternVLConfig(rawConfig);
    checkGeometry(this.config, `${this.config.modelType} config.json`);
    const { vision, text } = this.config;
    const params: ParamOptions = { dtype: options.dtype, device: options.device };
    this.imgContextTokenId = options.imgContextTokenId ?? this.config.imgContextTokenId;
    this.vision_model = this.registerModule('vision_model', new InternVisionModel(vision, params));
    const shuffled = vision.hiddenSize * Math.round(1 / this.config.downsampleRatio) ** 2;
    this.mlp1 = this.registerModule(
      'mlp1',
      new VisionProjector(shuffled, text.hiddenSize, this.config.projectorAct, params),
    );
    this.language_model = this.registerModule(
      'language_model',
      new Qwen2ForCausalLM(text, this.config.textRaw, params),
    );
  }

  get modelType(): string {
    return this.config.modelType;
  }

  get textConfig(): TextConfig {
    return this.language_model.textConfig;
  }

  lmHead(): LmHead {
    return this.language_model.lmHead();
  }

  outputWeight(): Tensor {
    return this.language_model.outputWeight();
  }

  /** Tiles [T, 3, S, S] to LLM rows [T, (S/p · ratio)², D_llm] (extract_feature). */
  encodeImages(pixelValues: Tensor, options: { intermediates?: boolean } = {}): ImageFeatures {
    return torch.tidy(() => {
      const layers = this.config.vision.numLayers;
      const select = this.config.selectLayer;
      const vitHidden = this.vision_model.forward(pixelValues, select < 0 ? layers + 1 + select : select);
      const embeds = this.projectVit(vitHidden);
      return options.intermediates ? { embeds, vitHidden } : { embeds };
    });
  }

  /** ViT hidden states [T, 1 + S², D_vit] to LLM rows: drop CLS, pixel shuffle, mlp1. */
  projectVit(vitHidden: Tensor): Tensor {
    return torch.tidy(() => {
      const [t, n, d] = vitHidden.shape as [number, number, number];
      const side = Math.round(Math.sqrt(n - 1));
      if (side * side !== n - 1) throw new Error(`${this.modelType}: ${n - 1} patch tokens do not form a square grid`);
      const grid = vitHidden.narrow(1, 1, n - 1).reshape([t, side, side, d]);
      return this.mlp1.forward(pixelShuffle(grid, this.config.downsampleRatio, this.config.psVersion));
    });
  }

  /**
   * Input embeddings with the kept tiles' rows written over the `<IMG_CONTEXT>` tokens, in order.
   * `startsSequence` (no cached tokens before these): a model in lockstep (lockstep.ts) runs its
   * vision tower here whenever any rank has images.
   */
  embed(inputs: ModelInputs, startsSequence = true): Tensor {
    return torch.tidy(() => {
      const embeds = this.language_model.model.embed_tokens.forward(inputs.inputIds);
      const lockstep = startsSequence ? lockstepOf(this) : null;
      const anyRank = lockstep?.any(Boolean(inputs.pixelValues)) ?? false;
      if (!inputs.pixelValues) return anyRank ? embeds.add(this.#idleVision(embeds.device).to(embeds.dtype)) : embeds;
      if (this.imgContextTokenId === null) {
        throw new Error(
          `${this.modelType}: imgContextTokenId is not set (pass the tokenizer's <IMG_CONTEXT> id as an option or set model.imgContextTokenId)`,
        );
      }
      const rows = this.#keptTiles(
        this.encodeImages(inputs.pixelValues).embeds,
        inputs.imageFlags ?? undefined,
      ).reshape([-1, embeds.shape[2]!]);
      const slots = inputs.inputIds.eq(this.imgContextTokenId);
      const count = slots.sum().item();
      if (count !== rows.shape[0]) {
        throw new Error(
          `${this.modelType}: the prompt has ${count} <IMG_CONTEXT> tokens (id ${this.imgContextTokenId}) but the kept tiles give ${rows.shape[0]} rows`,
        );
      }
      return embeds.indexPut_([slots], rows.to(embeds.dtype));
    });
  }

  // 0 x the features of one zero tile (a tile whose image_flag is 0, as InternVL pads text-only
  // batches): ViT, pixel shuffle and mlp1 run as on a rank with images, nothing changes.
  #idleVision(device: Tensor['device']): Tensor {
    const side = this.config.vision.imageSize;
    return this.encodeImages(torch.zeros([1, 3, side, side], { device }))
      .embeds.sum()
      .mul(0);
  }

  // image_flags [T] or [T, 1]: tiles flagged 0 (text-only padding tiles in training batches) are dropped.
  #keptTiles(features: Tensor, imageFlags: Tensor | undefined): Tensor {
    if (!imageFlags) return features;
    const flags = imageFlags.reshape([-1]);
    if (flags.shape[0] !== features.shape[0]) {
      throw new Error(`${this.modelType}: image_flags has ${flags.shape[0]} entries for ${features.shape[0]} tiles`);
    }
    return features.indexSelect(0, flags.eq(1).nonzero().reshape([-1]));
  }

  forward(inputs: ModelInputs, options: ForwardOptions = {}): CausalLMOutput {
    const startsSequence = (options.cache?.length ?? 0) === 0;
    return torch.tidy(() => this.language_model.forwardEmbeds(this.embed(inputs, startsSequence), inputs, options));
  }

  decodePositions(cache: KVCache | null, attentionMask: Tensor, steps: number): Tensor {
    return this.language_model.decodePositions(cache, attentionMask, steps);
  }
}
