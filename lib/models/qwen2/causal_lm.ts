// Qwen2ForCausalLM / Qwen3ForCausalLM: the decoder plus lm_head (absent from the module tree when the
// embeddings are tied; the embedding weight then serves as the output projection).
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
import type { Json } from '../config_schema.js';
import type { TextConfig } from './config.js';
import { Qwen2Model } from './decoder.js';

export class Qwen2ForCausalLM extends Module implements CausalLM {
  readonly model: Qwen2Model;
  readonly lm_head: Linear | null;

  constructor(
    readonly textConfig: TextConfig,
    readonly rawConfig: Json,
    options: ParamOptions = {},
  ) {
    super();
    this.model = this.registerModule('model', new Qwen2Model(textConfig, options));
    this.lm_head = textConfig.tieWordEmbeddings
      ? null
      : this.registerModule(
          'lm_head',
          new Linear(textConfig.hiddenSize, textConfig.vocabSize, { ...options, bias: false }),
        );
  }

  get modelType(): string {
    return this.textConfig.modelType;
  }

  // Read at each call: adapters may swap lm_head (modulesToSave) and back.
  lmHead(): LmHead {
    return { weight: (this.lm_head ?? this.model.embed_tokens).weight, bias: this.lm_head?.bias ?? null };
  }

  outputWeight(): Tensor {
    return this.lmHead().weight;
  }

  logits(hidden: Tensor): Tensor {
    const head = this.lmHead();
    return torch.nn.functional.linear(hidden, head.weight, head.bias);
  }

  forward(inputs: ModelInputs, options: ForwardOptions = {}): CausalLMOutput {
    return torch.tidy(() => this.forwardEmbeds(this.model.embed_tokens.forward(inputs.inputIds), inputs, options));
  }

  /** The forward from input embeddings (VLMs call it after writing image features into them). */
  forwardEmbeds(
    inputsEmbeds: Tensor,
    inputs: Omit<ModelInputs, 'inputIds'>,
    options: ForwardOptions = {},
  ): CausalLMOutput {
    return torch.tidy(() => {
      const [b, q] = inputsEmbeds.shape as [number, number];
      const past = options.cache?.length ?? 0;
      const positionIds =
        inputs.positionIds ?? this.#positions(inputs.attentionMask ?? null, b, past, q, inputsEmbeds.device);
      const mask = decoderMask(inputs, inputsEmbeds, options.cache, this.modelType);
      const out = this.model.forward({
        inputsEmbeds,
        positionIds,
        mask,
        cache: options.cache,
        outputHiddenStates: options.outputHiddenStates,
      });
      return options.logits === false ? out : { ...out, logits: this.logits(out.hidden) };
    });
  }

  /**
   * Position = number of real tokens before this one, as transformers' generate numbers them; for
   * unpadded and right-padded rows that is the plain token index its forward uses.
   */
  #positions(attentionMask: Tensor | null, b: number, past: number, q: number, device: Tensor['device']): Tensor {
    if (attentionMask === null)
      return torch
        .arange(past, past + q, { dtype: 'int64', device })
        .unsqueeze(0)
        .expand([b, q]);
    return this.decodePositions(null, attentionMask, q);
  }

  decodePositions(_cache: KVCache | null, attentionMask: Tensor, steps: number): Tensor {
    return torch.tidy(() => {
      const k = attentionMask.shape[1]!;
      // Padding gets position 1, as in transformers (it is masked out anyway).
      const positions = attentionMask.long().cumsum(-1).sub(1).maskedFill(attentionMask.eq(0), 1);
      return positions.narrow(1, k - steps, steps);
    });
  }
}
