// vlalign's public surface.
export * as torch from './torch/index.js';
export * as losses from './losses/index.js';
