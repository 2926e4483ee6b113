// tiny: random checkpoints of every family in the real Hugging Face layout.
export { writeTinyCheckpoint, TINY_FAMILIES, type TinyOptions } from './checkpoint.js';
export { tinyConfig } from './configs.js';
export { writeTinyTokenizer, type TinyFamily } from './tokenizer.js';
