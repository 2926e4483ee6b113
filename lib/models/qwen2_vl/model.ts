// Qwen2VLForConditionalGeneration / Qwen2_5_VLForConditionalGeneration: the vision tower's merged
// patch features replace the `<|image_pad|>` embeddings in prompt order, and the Qwen2 decoder runs
// with M-RoPE positions from get_rope_index. Module names follow the legacy hub layout
// (`visual.*`, `model.*`, `lm_head.weight`); the loader maps the newer `model.language_model.*` one.
import * as torch from '../../torch/index.js';
import type { Tensor } from '../../torch/index.js';
import { Module, Linear, type KVCache, type LmHead, type ParamOptions } from '../../nn/index.js';
import {
  decoderMask,
  type CausalLM,
  type CausalLMOutput,
  type ForwardOptions,
  type ModelInputs,
} from '../causal_lm.js';
import { parseConfig } from '../../util/config_error.js';
import { boundedInt, SIZE_BOUNDS, tokenId, type Json } from '../config_schema.js';
import { parseTextConfig, type TextConfig } from '../qwen2/config.js';
import { Qwen2Model } from '../qwen2/decoder.js';
import { z } from 'zod';
import { ropeIndex, type RopeTokens } from './rope_index.js';
import { parseVisionConfig, type VisionConfig } from './vision_config.js';
import { QwenVisionTower, type VisionOutput } from './vision.js';
import type { Grid } from './vision_layout.js';
import { lockstepOf } from '../lockstep.js';

const tokenSchema = z
  .object({
    image_token_id: tokenId.default(151655),
    video_token_id: tokenId.default(151656),
    vision_start_token_id: tokenId.default(151652),
    vision_config: z.record(z.string(), z.unknown()).default({}),
    text_config: z.record(z.string(), z.unknown()).optional(),
    spatial_merge_size: boundedInt(SIZE_BOUNDS.patch).optional(),
  })
  .loose();

export class QwenVLForConditionalGeneration extends Module implements CausalLM {
  readonly visual: QwenVisionTower;
  readonly model: Qwen2Model;
  readonly lm_head: Linear | null;
  readonly visionConfig: VisionConfig;
  readonly textConfig: TextConfig;
  readonly tokens: RopeTokens;

  constructor(
    readonly rawConfig: Json,
    options: ParamOptions = {},
  ) {
    super();
    const family = rawConfig.model_type === 'qwen2_5_vl' ? 'qwen2_5_vl' : 'qwen2_vl';
    const where = `${family} config.json`;
    const c = parseConfig(tokenSchema, rawConfig, where);
    // Newer saves nest the text fields under text_config; older ones keep them at the top level.
    // Qwen2VLConfig's own defaults differ from Qwen2Config's (rms_norm_eps 1e-5, rope_theta 1e6).
    const text = { rms_norm_eps: 1e-5, rope_theta: 1e6, ...rawConfig, ...(c.text_config ?? {}), model_type: 'qwen2' };
    this.textConfig = parseTextConfig(text, where);
    if (!this.textConfig.mropeSection)
      throw new Error(`${where}: rope_scaling.mrope_section is required for ${family}`);
    this.visionConfig = parseVisionConfig(family, c.vision_config as Json, where);
    this.tokens = {
      imageTokenId: c.image_token_id,
      videoTokenId: c.video_token_id,
      visionStartTokenId: c.vision_start_token_id,
      spatialMergeSize: this.visionConfig.spatialMergeSize,
    };
    this.visual = this.registerModule('visual', new QwenVisionTower(this.visionConfig, options));
    this.model = this.registerModule('model', new Qwen2Model(this.textConfig, options));
    this.lm_head = this.textConfig.tieWordEmbeddings
      ? null
      : this.registerModule(
          'lm_head',
          new Linear(this.textConfig.hiddenSize, this.textConfig.vocabSize, { ...options, bias: false }),
        );
  }

  get modelType(): string {
    return this.visionConfig.family;
  }

  // Read at each call: adapters may swap lm_head (modulesToSave) and back.
  lmHead(): LmHead {
    return { weight: (this.lm_head ?? this.model.embed_tokens).weight, bias: this.lm_head?.bias ?? null };
  }

  outputWeight(): Tensor {
    return this.lmHead().weight;
  }

  /** Image features [tokens, D] for pixel values [N, 1176] and grids [images, 3]. */
  encodeImages(pixelValues: Tensor, imageGridThw: Tensor, options: { intermediates?: boolean } = {}): VisionOutput {
    return this.visual.forward(pixelValues, gridsOf(imageGridThw), options);
  }

  /**
   * input embeddings with image rows written over the image-pad tokens, in order. `startsSequence`
   * (no cached tokens before these): a model in lockstep (lockstep.ts) runs its vision tower here
   * whenever any rank has images.
   */
  embed(inputs: ModelInputs, startsSequence = true): Tensor {
    return torch.tidy(() => {
      const embeds = this.model.embed_tokens.forward(inputs.inputIds);
      const lockstep = startsSequence ? lockstepOf(this) : null;
      const anyRank = lockstep?.any(Boolean(inputs.pixelValues)) ?? false;
      if (!inputs.pixelValues) return anyRank ? embeds.add(this.#idleVision(embeds.device).to(embeds.dtype)) : embeds;
      if (!inputs.imageGridThw) throw new Error(`${this.modelType}: pixelValues need imageGridThw`);
      const features = this.encodeImages(inputs.pixelValues, inputs.imageGridThw).embeds;
      const slots = inputs.inputIds.eq(this.tokens.imageTokenId);
      const count = slots.sum().item();
      if (count !== features.shape[0]) {
        throw new Error(
          `${this.modelType}: the prompt has ${count} image tokens but the images give ${features.shape[0]} features`,
        );
      }
      return embeds.indexPut_([slots], features.to(embeds.dtype));
    });
  }

  // 0 x the vision tower's output on the smallest grid it takes (one merged token: t 1, h = w = the
  // merge size) of zero patches: the tower's blocks run as on a rank with images, nothing changes.
  #idleVision(device: Tensor['device']): Tensor {
    const c = this.visionConfig;
    const m = c.spatialMergeSize;
    const width = c.inChannels * c.temporalPatchSize * c.patchSize * c.patchSize;
    const patches = torch.zeros([m * m, width], { dtype: this.visual.dtype, device });
    const grid = torch.tensor([[1, m, m]], { dtype: 'int64' });
    return this.encodeImages(patches, grid).embeds.sum().mul(0);
  }

  /** M-RoPE ids [3, B, L] and rope deltas [B, 1] of a prompt. */
  ropeIndex(
    inputIds: Tensor,
    attentionMask: Tensor | null,
    imageGridThw?: Tensor | null,
  ): { positionIds: Tensor; ropeDeltas: Tensor } {
    const rows = (t: Tensor): number[][] => t.toArray() as number[][];
    const grids = imageGridThw ? gridsOf(imageGridThw) : [];
    const { positions, deltas } = ropeIndex(rows(inputIds), attentionMask && rows(attentionMask), grids, this.tokens);
    const [b, l] = inputIds.shape as [number, number];
    const flat = new Int32Array(3 * b * l);
    positions.forEach((axis, a) => axis.forEach((row, i) => flat.set(row, (a * b + i) * l)));
    return torch.tidy(() => ({
      positionIds: torch
        .tensor(flat, { shape: [3, b, l] })
        .long()
        .to(inputIds.device),
      ropeDeltas: torch.tensor(deltas, { dtype: 'int64', shape: [b, 1] }).to(inputIds.device),
    }));
  }

  forward(inputs: ModelInputs, options: ForwardOptions = {}): CausalLMOutput {
    return torch.tidy(() => {
      const cache = options.cache;
      const past = cache?.length ?? 0;
      const embeds = this.embed(inputs, past === 0);
      const [b, q] = embeds.shape as [number, number];
      let positionIds = inputs.positionIds;
      if (!positionIds && past === 0) {
        const index = this.ropeIndex(inputs.inputIds, inputs.attentionMask ?? null, inputs.imageGridThw);
        positionIds = index.positionIds;
        if (cache) cache.ropeDeltas = index.ropeDeltas.keep();
      } else if (!positionIds) {
        positionIds = this.decodePositions(
          cache ?? null,
          inputs.attentionMask ?? torch.ones([b, past + q], { dtype: 'int64' }),
          q,
        );
      }
      const mask = decoderMask(inputs, embeds, cache, this.modelType);
      const out = this.model.forward({
        inputsEmbeds: embeds,
        positionIds,
        mask,
        cache,
        outputHiddenStates: options.outputHiddenStates,
      });
      if (options.logits === false) return out;
      const head = this.lmHead();
      return { ...out, logits: torch.nn.functional.linear(out.hidden, head.weight, head.bias) };
    });
  }

  /** Decoding: position = token index + rope delta of the row, the same on all three axes. */
  decodePositions(cache: KVCache | null, attentionMask: Tensor, steps: number): Tensor {
    return torch.tidy(() => {
      const b = attentionMask.shape[0]!;
      const past = cache?.length ?? attentionMask.shape[1]! - steps;
      const index = torch
        .arange(past, past + steps, { dtype: 'int64' })
        .unsqueeze(0)
        .expand([b, steps]);
      const deltas = cache?.ropeDeltas ?? torch.zeros([b, 1], { dtype: 'int64' });
      return index.add(deltas).unsqueeze(0).expand([3, b, steps]);
    });
  }
}

function gridsOf(imageGridThw: Tensor): Grid[] {
  const rows = imageGridThw.toArray() as number[][];
  return rows.map((r, i) => {
    if (r.length !== 3) throw new Error(`image_grid_thw row ${i}: expected (t, h, w), got ${JSON.stringify(r)}`);
    return [r[0]!, r[1]!, r[2]!] as const;
  });
}
