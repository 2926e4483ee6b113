// Gradient checkpointing of transformer blocks: while a model trains, each block keeps only its
// input and recomputes its activations in backward (torch.checkpoint), trading one extra forward
// per block for activation memory that no longer grows with depth. Every tensor the block reads
// is passed as an input, so the autograd node owns it until backward (the caller's tidy scope
// frees its own handles long before).
import * as torch from '../torch/index.js';
import type { Tensor } from '../torch/index.js';
import type { Module } from './module.js';

/** Runs `block(...inputs)`, checkpointed when `owner` trains with autograd recording. */
export function checkpointed(owner: Module, block: (...inputs: Tensor[]) => Tensor, inputs: Tensor[]): Tensor {
  if (!owner.gradientCheckpointing || !owner.training || !torch.isGradEnabled()) return block(...inputs);
  return torch.checkpoint(block, inputs);
}
