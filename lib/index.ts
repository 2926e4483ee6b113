// vlalign's public surface.
export * as torch from './torch/index.js';
