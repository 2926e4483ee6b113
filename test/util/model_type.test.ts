// byModelType: the lookup both registries (model families, processors) use, and its one error wording.
import { describe, expect, it } from 'vitest';
import { byModelType } from '../../lib/util/index.js';

const TABLE = [
  { modelTypes: ['qwen2_vl', 'qwen2_5_vl'], name: 'qwen' },
  { modelTypes: ['internvl_chat', 'internvl'], name: 'internvl' },
];

describe('byModelType', () => {
  it('finds the entry serving a type', () => {
    expect(byModelType(TABLE, 'qwen2_5_vl', 'c').name).toBe('qwen');
    expect(byModelType(TABLE, 'internvl', 'c').name).toBe('internvl');
  });

  it('names the config, the type and every supported type', () => {
    const supported = '\\(supported: qwen2_vl, qwen2_5_vl, internvl_chat, internvl\\)';
    const unknown = new RegExp(`^d/config.json: model_type 'llava' is not supported ${supported}$`);
    expect(() => byModelType(TABLE, 'llava', 'd/config.json')).toThrow(unknown);
    expect(() => byModelType(TABLE, 'llava', 'd', 'has no processor')).toThrow(/model_type 'llava' has no processor/);
    expect(() => byModelType(TABLE, 3, 'd')).toThrow(/model_type 3 is not supported/);
    expect(() => byModelType(TABLE, undefined, 'd')).toThrow(new RegExp(`^d: no model_type ${supported}$`));
  });
});
