// vlalign's public surface.
export * as torch from './torch/index.js';
export * as nn from './nn/index.js';
export * as quant from './quant/index.js';
export * as models from './models/index.js';
export * as processing from './processing/index.js';
export * as generation from './generation/index.js';
export * as losses from './losses/index.js';
export * as tiny from './tiny/index.js';
export * as adapters from './adapters/index.js';
export * as optim from './optim/index.js';
export * as data from './data/index.js';
export * as train from './train/index.js';
export * as rewards from './rewards/index.js';
export * as evaluation from './eval/index.js';
export * as distributed from './distributed/index.js';
export * as pipelines from './pipelines/index.js';
