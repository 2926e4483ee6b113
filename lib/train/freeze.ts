// Freezing as the seeds do it, before adapters are injected (getPeftModel freezes all but the
// adapters anyway, so these flags matter for full fine-tunes):
//   freezeVisionTower (VL-RLHF) and freezeBackbone (InternVL): the vision encoder without its
//     projector: Qwen2-VL `visual.*` except `visual.merger.*`, InternVL `vision_model.*`;
//   freezeMlp (InternVL): the projector: InternVL `mlp1.*`, Qwen2-VL `visual.merger.*`;
//   freezeLlm (InternVL): the language model with its lm_head (InternVL freezes `language_model`,
//     which holds lm_head; its unfreeze_lm_head would re-enable it): InternVL `language_model.*`,
//     Qwen2-VL `model.*` and `lm_head.*`.
import type { CausalLM } from '../models/causal_lm.js';

export interface FreezeOptions {
  freezeVisionTower?: boolean;
  freezeBackbone?: boolean;
  freezeLlm?: boolean;
  freezeMlp?: boolean;
}

type Part = 'vision' | 'projector' | 'llm';

// Which part a parameter belongs to, by the family's checkpoint names.
function partOf(name: string): Part {
  if (name.startsWith('visual.merger.') || name.startsWith('mlp1.')) return 'projector';
  if (name.startsWith('visual.') || name.startsWith('vision_model.')) return 'vision';
  return 'llm';
}

/** Sets requires_grad false on the frozen parts; returns the parameter counts after it. */
export function applyFreezing(model: CausalLM, options: FreezeOptions): { trainable: number; total: number } {
  const frozen = new Set<Part>();
  if (options.freezeVisionTower || options.freezeBackbone) frozen.add('vision');
  if (options.freezeMlp) frozen.add('projector');
  if (options.freezeLlm) frozen.add('llm');
  let trainable = 0;
  let total = 0;
  for (const [name, p] of model.namedParameters()) {
    if (frozen.has(partOf(name))) p.requiresGrad_(false);
    total += p.numel();
    if (p.requiresGrad) trainable += p.numel();
  }
  return { trainable, total };
}
