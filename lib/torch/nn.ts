// torch.nn namespace; modules arrive with the VLM stack (lib/nn), the functional forms live here,
// each naming itself in any error (a null options object included).
import { namedOps } from './args.js';
import * as F from './nn_functional.js';

export const functional = namedOps(F);
