// Shared by the adapter and QLoRA tests.
import * as torch from '../../lib/torch/index.js';
import type { LoraModel } from '../../lib/adapters/index.js';

/** Non-zero B (and a varied DoRA magnitude), so the adapter changes the output. */
export function perturb(peft: LoraModel, seed = 1): void {
  torch.manualSeed(seed);
  torch.noGrad(() => {
    for (const layer of peft.layers.values()) {
      layer.lora_B.weight.normal_(0, 0.05);
      layer.lora_magnitude_vector?.mul_(torch.rand(layer.lora_magnitude_vector.shape).mul(0.2).add(0.9));
    }
  });
}
