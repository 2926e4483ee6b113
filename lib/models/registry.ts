// model_type → family. Adding a family is one entry here.
import type { ModelFamily } from './family.js';
import { qwen2Family } from './qwen2/family.js';
import { qwenVLFamily } from './qwen2_vl/family.js';
import { internVLFamily } from './internvl/family.js';

const FAMILIES: ModelFamily[] = [qwen2Family, qwenVLFamily, internVLFamily];

export function familyOf(modelType: unknown, where: string): ModelFamily {
  const family = FAMILIES.find((f) => f.modelTypes.includes(String(modelType)));
  if (family === undefined) {
    const known = FAMILIES.flatMap((f) => f.modelTypes).join(', ');
    throw new Error(`${where}: model_type '${String(modelType)}' is not supported (supported: ${known})`);
  }
  return family;
}

export const supportedModelTypes = (): string[] => FAMILIES.flatMap((f) => f.modelTypes);
