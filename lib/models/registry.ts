// model_type → family. Adding a family is one entry here.
import { byModelType, supportedModelTypes as typesOf } from '../util/model_type.js';
import type { ModelFamily } from './family.js';
import { qwen2Family } from './qwen2/family.js';
import { qwenVLFamily } from './qwen2_vl/family.js';
import { internVLFamily } from './internvl/family.js';

const FAMILIES: ModelFamily[] = [qwen2Family, qwenVLFamily, internVLFamily];

/** The family serving `modelType`; `where` names the config in the error. */
export const familyOf = (modelType: unknown, where: string): ModelFamily => byModelType(FAMILIES, modelType, where);

export const supportedModelTypes = (): string[] => typesOf(FAMILIES);
