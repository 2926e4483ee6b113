// torch.nn namespace; modules arrive with the VLM stack (lib/nn), the functional forms live here.
export * as functional from './nn_functional.js';
