// What `bf16` means here, against the recipe's torch_dtype (the dtype the weights are loaded in):
//
//   bf16   torch_dtype  training
//   false  float32      float32 throughout
//   false  bfloat16     pure bf16: bf16 weights updated in place (AdamW's moments stay float32), as
//                       a model loaded with torch_dtype bfloat16 trains without an optimizer wrapper
//   true   float32      mixed: float32 masters copied from the loaded weights, the model cast to
//                       bf16 for forward and backward (DeepSpeed bf16 / Apex O2)
//   true   bfloat16     mixed: the masters are the bf16 weights upcast (exact); InternVL's scripts
//                       (torch_dtype bf16 + --bf16 under DeepSpeed) train this way
//   true   float64 / float16 weights, or fp16: refused (no float16 loss scaling here)
//
// Mixed precision (lib/optim/mixed_precision.ts): gradients arrive in bf16 on the model's
// parameters (accumulated there across micro-batches and clipped there, norm in float32, as Apex
// O2), each step upcasts them into the float32 masters, AdamW runs on the masters with float32
// state, and the parameters become the masters rounded to bf16. Frozen parameters and a separate
// reference model are cast to bf16 too, so the policy and its reference score in one precision;
// buffers (rotary frequencies, 4-bit quantisation state) keep their dtype, as a model loaded in
// bfloat16 has them.
//
// Checkpoints, as DeepSpeed bf16 writes them under transformers' Trainer: the model (or adapter)
// files hold the weights the model computes with, bf16 (config torch_dtype bfloat16), which are the
// masters rounded; optimizer.safetensors holds the float32 masters (`state.<name>.master`) beside
// the moments, and resume restores them bit for bit. withFloat32Weights writes the float32 weights
// instead (DeepSpeed's zero_to_fp32), e.g. for a final save of a float32 checkpoint.
import * as torch from '../torch/index.js';
import type { DType, Tensor } from '../torch/index.js';
import type { CausalLM } from '../models/index.js';
import { isFloating } from '../nn/module.js';
import { MixedPrecisionOptimizer } from '../optim/mixed_precision.js';
import type { GroupOptions, Optimizer } from '../optim/index.js';

export interface PrecisionArgs {
  bf16: boolean;
  fp16?: boolean;
}

export interface PrecisionParts {
  args: PrecisionArgs;
  /** The policy (adapters injected), loaded in its torch_dtype. */
  model: CausalLM;
  /** A separate frozen reference, cast with the policy. */
  refModel?: CausalLM | null;
}

/**
 * The optimizer the training loop steps: `optimizer` itself without bf16, else a
 * MixedPrecisionOptimizer over it (float32 masters of its parameters, the models cast to bf16).
 * Call it once, after the optimizer is built over the trainable parameters and before any step.
 */
export function applyPrecision<O extends GroupOptions>(parts: PrecisionParts, optimizer: Optimizer<O>): Optimizer<O> {
  const { args, model, refModel } = parts;
  if (args.fp16 === true) {
    const both = args.bf16 ? 'bf16 and fp16 are both set; at most one can be (transformers refuses it too). ' : '';
    throw new TypeError(`${both}fp16 mixed precision (float16 with loss scaling) is not supported: use bf16`);
  }
  if (!args.bf16) return optimizer;
  checkWeightDtype(model, 'the model');
  if (refModel) checkWeightDtype(refModel, 'the reference model');
  const mixed = new MixedPrecisionOptimizer(optimizer, { computeDtype: 'bfloat16' });
  castParameters(model, 'bfloat16');
  if (refModel) castParameters(refModel, 'bfloat16');
  return mixed;
}

/**
 * Runs `save` while every floating parameter of `model` is float32 and each trainable one holds its
 * master exactly; then puts the bf16 weights back (the masters rounded, the rest as they were). A
 * plain optimizer needs no swap: `save` just runs.
 */
export async function withFloat32Weights<T>(
  model: CausalLM,
  optimizer: Optimizer<GroupOptions>,
  save: () => Promise<T>,
): Promise<T> {
  if (!(optimizer instanceof MixedPrecisionOptimizer)) return save();
  const dtypes = new Map<Tensor, DType>(model.parameters().map((p) => [p, p.dtype]));
  const masters = new Map(optimizer.paramGroups.flatMap((g) => g.params).map((p, i) => [p, optimizer.masters[i]!]));
  torch.noGrad(() => {
    for (const p of dtypes.keys()) {
      if (!isFloating(p.dtype)) continue;
      const master = masters.get(p);
      p.setData(master === undefined ? p.to({ dtype: 'float32' }) : master.clone());
    }
  });
  try {
    return await save();
  } finally {
    torch.noGrad(() => {
      for (const [p, dtype] of dtypes) if (p.dtype !== dtype) p.setData(p.to({ dtype }));
    });
  }
}

function checkWeightDtype(model: CausalLM, what: string): void {
  const odd = model.parameters().find((p) => p.dtype === 'float16' || p.dtype === 'float64');
  if (odd === undefined) return;
  throw new TypeError(
    `bf16: ${what} has ${odd.dtype} weights; bf16 mixed precision starts from float32 or bfloat16 weights ` +
      `(set torch_dtype float32 or bfloat16), or set bf16 false to train in ${odd.dtype}`,
  );
}

// Floating parameters only: buffers keep their dtype, as fromPretrained with dtype bfloat16 leaves them.
function castParameters(model: CausalLM, dtype: DType): void {
  torch.noGrad(() => {
    for (const p of model.parameters()) if (isFloating(p.dtype) && p.dtype !== dtype) p.setData(p.to({ dtype }));
  });
}
