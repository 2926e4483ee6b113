// The Qwen2 / Qwen3 decoder stack (`model.*` in checkpoints): token embeddings, pre-norm blocks of
// grouped-query attention with RoPE and a SwiGLU MLP, and the final RMSNorm. Positions come in as
// ids (1-D [B, Q], or M-RoPE [3, B, Q]) and become one cos/sin table shared by every layer.
import * as torch from '../../torch/index.js';
import type { Tensor } from '../../torch/index.js';
import {
  Module,
  Linear,
  Embedding,
  RMSNorm,
  ModuleList,
  activation,
  applyRotary,
  attend,
  checkpointed,
  cosSin,
  inverseFrequencies,
  mropeAngles,
  rotaryAngles,
  type Activation,
  type CosSin,
  type KVCache,
  type ParamOptions,
} from '../../nn/index.js';
import type { TextConfig } from './config.js';

export class Qwen2Attention extends Module {
  readonly q_proj: Linear;
  readonly k_proj: Linear;
  readonly v_proj: Linear;
  readonly o_proj: Linear;
  readonly q_norm: RMSNorm | null;
  readonly k_norm: RMSNorm | null;
  /** Set to receive this layer's attention probabilities [B, H, Q, K] on each forward (see AttendOptions.onWeights). */
  attentionProbe: ((weights: Tensor) => void) | null = null;

  constructor(
    readonly config: TextConfig,
    readonly layerIndex: number,
    options: ParamOptions,
  ) {
    super();
    const { hiddenSize: d, numHeads: h, numKvHeads: kv, headDim: hd, qkvBias } = config;
    this.q_proj = this.registerModule('q_proj', new Linear(d, h * hd, { ...options, bias: qkvBias }));
    this.k_proj = this.registerModule('k_proj', new Linear(d, kv * hd, { ...options, bias: qkvBias }));
    this.v_proj = this.registerModule('v_proj', new Linear(d, kv * hd, { ...options, bias: qkvBias }));
    // Qwen2's o_proj never has a bias; Qwen3's follows attention_bias like q/k/v.
    this.o_proj = this.registerModule('o_proj', new Linear(h * hd, d, { ...options, bias: config.qkNorm && qkvBias }));
    this.q_norm = config.qkNorm ? this.registerModule('q_norm', new RMSNorm(hd, config.rmsNormEps, options)) : null;
    this.k_norm = config.qkNorm ? this.registerModule('k_norm', new RMSNorm(hd, config.rmsNormEps, options)) : null;
  }

  /** x [B, Q, D] to [B, Q, D]; keys/values join `cache` when given. */
  forward(x: Tensor, rotary: CosSin, mask: Tensor | null, cache?: KVCache): Tensor {
    return torch.tidy(() => {
      const [b, q] = x.shape as [number, number];
      const { numHeads: h, numKvHeads: kv, headDim: hd } = this.config;
      const heads = (t: Tensor, n: number, norm: RMSNorm | null): Tensor => {
        const split = t.view([b, q, n, hd]);
        return (norm ? norm.forward(split) : split).transpose(1, 2);
      };
      const queries = applyRotary(heads(this.q_proj.forward(x), h, this.q_norm), rotary);
      let keys = applyRotary(heads(this.k_proj.forward(x), kv, this.k_norm), rotary);
      let values = heads(this.v_proj.forward(x), kv, null);
      if (cache) [keys, values] = cache.update(this.layerIndex, keys, values);
      const out = attend(queries, keys, values, {
        mask,
        dropout: this.config.attentionDropout,
        training: this.training,
        ...(this.attentionProbe ? { onWeights: this.attentionProbe } : {}),
      });
      return this.o_proj.forward(out.transpose(1, 2).reshape([b, q, h * hd]));
    });
  }
}

export class Qwen2MLP extends Module {
  readonly gate_proj: Linear;
  readonly up_proj: Linear;
  readonly down_proj: Linear;
  readonly act: Activation;

  constructor(hidden: number, intermediate: number, act: string, options: ParamOptions & { bias?: boolean }) {
    super();
    this.gate_proj = this.registerModule('gate_proj', new Linear(hidden, intermediate, { bias: false, ...options }));
    this.up_proj = this.registerModule('up_proj', new Linear(hidden, intermediate, { bias: false, ...options }));
    this.down_proj = this.registerModule('down_proj', new Linear(intermediate, hidden, { bias: false, ...options }));
    this.act = activation(act);
  }

  /** down(act(gate(x)) * up(x)) */
  forward(x: Tensor): Tensor {
    return torch.tidy(() => this.down_proj.forward(this.act(this.gate_proj.forward(x)).mul(this.up_proj.forward(x))));
  }
}

export class Qwen2DecoderLayer extends Module {
  readonly self_attn: Qwen2Attention;
  readonly mlp: Qwen2MLP;
  readonly input_layernorm: RMSNorm;
  readonly post_attention_layernorm: RMSNorm;

  constructor(config: TextConfig, layerIndex: number, options: ParamOptions) {
    super();
    this.self_attn = this.registerModule('self_attn', new Qwen2Attention(config, layerIndex, options));
    this.mlp = this.registerModule(
      'mlp',
      new Qwen2MLP(config.hiddenSize, config.intermediateSize, config.hiddenAct, options),
    );
    this.input_layernorm = this.registerModule(
      'input_layernorm',
      new RMSNorm(config.hiddenSize, config.rmsNormEps, options),
    );
    this.post_attention_layernorm = this.registerModule(
      'post_attention_layernorm',
      new RMSNorm(config.hiddenSize, config.rmsNormEps, options),
    );
  }

  forward(h: Tensor, rotary: CosSin, mask: Tensor | null, cache?: KVCache): Tensor {
    return torch.tidy(() => {
      const attended = h.add(this.self_attn.forward(this.input_layernorm.forward(h), rotary, mask, cache));
      return attended.add(this.mlp.forward(this.post_attention_layernorm.forward(attended)));
    });
  }
}

export interface DecoderInputs {
  inputsEmbeds: Tensor;
  /** [B, Q] for 1-D RoPE or [3, B, Q] for M-RoPE, absolute positions of the Q new tokens. */
  positionIds: Tensor;
  /** Additive [B, 1, Q, K] mask (see nn.causalMask). */
  mask: Tensor | null;
  cache?: KVCache;
  outputHiddenStates?: boolean;
}

export interface DecoderOutput {
  /** Final RMSNorm output [B, Q, D], the input of lm_head. */
  hidden: Tensor;
  /** With outputHiddenStates: the embeddings, each layer's output except the last, then `hidden`. */
  hiddenStates?: Tensor[];
}

export class Qwen2Model extends Module {
  readonly embed_tokens: Embedding;
  readonly layers: ModuleList<Qwen2DecoderLayer>;
  readonly norm: RMSNorm;
  readonly invFreq: Tensor;

  constructor(
    readonly config: TextConfig,
    options: ParamOptions = {},
  ) {
    super();
    this.embed_tokens = this.registerModule(
      'embed_tokens',
      new Embedding(config.vocabSize, config.hiddenSize, options),
    );
    this.layers = this.registerModule(
      'layers',
      new ModuleList(Array.from({ length: config.numLayers }, (_, i) => new Qwen2DecoderLayer(config, i, options))),
    );
    this.norm = this.registerModule('norm', new RMSNorm(config.hiddenSize, config.rmsNormEps, options));
    this.invFreq = this.registerBuffer('inv_freq', inverseFrequencies(config.headDim, config.ropeTheta), false);
  }

  /** cos/sin [B, Q, hd] (cast to the activation dtype) from position ids, broadcast over heads. */
  rotary(positionIds: Tensor, dtype: Tensor['dtype']): CosSin {
    return torch.tidy(() => {
      const angles = rotaryAngles(positionIds, this.invFreq.to(positionIds.device));
      const mixed = this.config.mropeSection ? mropeAngles(angles, this.config.mropeSection) : angles;
      const { cos, sin } = cosSin(mixed, dtype);
      return { cos: cos.unsqueeze(1), sin: sin.unsqueeze(1) };
    });
  }

  forward(inputs: DecoderInputs): DecoderOutput {
    return torch.tidy(() => {
      const rotary = this.rotary(inputs.positionIds, inputs.inputsEmbeds.dtype);
      const states: Tensor[] = [];
      let h = inputs.inputsEmbeds;
      for (const layer of this.layers) {
        if (inputs.outputHiddenStates) states.push(h);
        h = inputs.cache
          ? layer.forward(h, rotary, inputs.mask, inputs.cache)
          : checkpointed(this, (x, cos, sin, mask) => layer.forward(x, { cos: cos!, sin: sin! }, mask ?? null), [
              h,
              rotary.cos,
              rotary.sin,
              ...(inputs.mask ? [inputs.mask] : []),
            ]);
      }
      inputs.cache?.advance(inputs.inputsEmbeds.shape[1]!);
      const hidden = this.norm.forward(h);
      if (inputs.outputHiddenStates) states.push(hidden);
      return inputs.outputHiddenStates ? { hidden, hiddenStates: states } : { hidden };
    });
  }
}
