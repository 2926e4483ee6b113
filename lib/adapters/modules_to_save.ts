// modules_to_save (PEFT's ModulesToSaveWrapper): a module trained in full beside the adapter. The
// model holds a trainable copy while adapters are enabled and the frozen original while they are
// disabled; both sit at the same path, so their tensors keep the checkpoint names.
import type { Tensor } from '../torch/index.js';
import { Embedding, LayerNorm, Linear, RMSNorm, type Module } from '../nn/index.js';

export class SavedModule {
  constructor(
    readonly path: string,
    /** The frozen module of the base model. */
    readonly original: Module,
    /** The trainable copy, saved with the adapter. */
    readonly copy: Module,
  ) {}

  /** The copy's parameters and persistent buffers by their names inside the module. */
  stateDict(): Map<string, Tensor> {
    return this.copy.stateDict();
  }
}

/**
 * A fresh module of the same kind with the same values. Modules are classes with typed fields, so a
 * copy is built by constructor: the kinds that modules_to_save is used for (heads, embeddings, norms).
 */
export function cloneModule(module: Module, path: string): Module {
  const copy = construct(module, path);
  copy.loadStateDict(module.stateDict());
  copy.training = module.training;
  return copy;
}

function construct(m: Module, path: string): Module {
  // Exact classes only: a subclass (a LoraLinear, a model's own layer) may compute something else.
  if (m instanceof Linear && m.constructor === Linear)
    return new Linear(m.inFeatures, m.outFeatures, { bias: m.bias !== null, ...placement(m.weight) });
  if (m instanceof Embedding && m.constructor === Embedding)
    return new Embedding(m.numEmbeddings, m.embeddingDim, placement(m.weight));
  if (m instanceof LayerNorm && m.constructor === LayerNorm)
    return new LayerNorm(m.dim, m.eps, { bias: m.bias !== null, ...placement(m.weight) });
  if (m instanceof RMSNorm && m.constructor === RMSNorm) return new RMSNorm(m.dim, m.eps, placement(m.weight));
  throw new TypeError(
    `modulesToSave: '${path}' is a ${m.constructor.name}; Linear, Embedding, LayerNorm and RMSNorm modules can be saved`,
  );
}

const placement = (t: Tensor): { dtype: Tensor['dtype']; device: Tensor['device'] } => ({
  dtype: t.dtype,
  device: t.device,
});
