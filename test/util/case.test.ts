// snake_case <-> camelCase: TRL / PEFT / HF names both ways, round trips, nested objects.
import { describe, expect, it } from 'vitest';
import { camelToSnake, snakeToCamel, toCamelKeys, toSnakeKeys } from '../../lib/util/index.js';

// Python names from TRL's DPOConfig / GRPOConfig, PEFT's LoraConfig and HF configs, with TRL's camelCase.
const KNOWN: Array<[string, string]> = [
  ['per_device_train_batch_size', 'perDeviceTrainBatchSize'],
  ['loss_type', 'lossType'],
  ['f_divergence_type', 'fDivergenceType'],
  ['adam_beta1', 'adamBeta1'],
  ['bf16', 'bf16'],
  ['top_k', 'topK'],
  ['lora_alpha', 'loraAlpha'],
  ['use_rslora', 'useRslora'],
  ['num_generations', 'numGenerations'],
  ['beta_2', 'beta_2'],
];

describe('name conversion', () => {
  it.each(KNOWN)('%s <-> %s', (snake, camel) => {
    expect(snakeToCamel(snake)).toBe(camel);
    expect(camelToSnake(camel)).toBe(snake);
  });

  it('leaves names of the other shape alone', () => {
    const notSnake = ['_name_or_path', 'URL', 'a__b', 'q_proj.lora_A', 'Already_Upper'];
    for (const name of notSnake) expect(snakeToCamel(name)).toBe(name);
    for (const name of ['_nameOrPath', 'URL', 'foo_Bar', 'model.layers']) expect(camelToSnake(name)).toBe(name);
    expect(snakeToCamel('loraAlpha')).toBe('loraAlpha');
    expect(camelToSnake('lora_alpha')).toBe('lora_alpha');
  });

  it('round trips every snake name built from random words and digits', () => {
    let seed = 7;
    const next = (n: number): number => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed % n;
    };
    const letters = (): string => 'abcxyz'.slice(next(3), 3 + next(3)) + (next(3) === 0 ? String(next(9)) : '');
    const word = (): string => (next(4) === 0 ? String(next(100)) : letters());
    for (let i = 0; i < 500; i++) {
      const snake = ['abc'.slice(next(3)) || 'q', ...Array.from({ length: next(4) }, word)].join('_');
      expect(camelToSnake(snakeToCamel(snake))).toBe(snake);
    }
  });
});

describe('nested keys', () => {
  const yaml = {
    per_device_train_batch_size: 2,
    loss_type: ['sigmoid', 'bco_pair'],
    lora: { lora_alpha: 16, rank_pattern: { 'model.layers.0.q_proj': 4 } },
    reward_funcs: [{ func_name: 'format_reward', weight_value: 1 }],
  };

  it('maps keys at every depth, arrays included, and keeps verbatim maps and values', () => {
    const camel = toCamelKeys(yaml, { verbatim: ['rank_pattern'] });
    expect(camel).toEqual({
      perDeviceTrainBatchSize: 2,
      lossType: ['sigmoid', 'bco_pair'],
      lora: { loraAlpha: 16, rankPattern: { 'model.layers.0.q_proj': 4 } },
      rewardFuncs: [{ funcName: 'format_reward', weightValue: 1 }],
    });
    expect(toSnakeKeys(camel, { verbatim: ['rankPattern'] })).toEqual(yaml);
  });

  it('refuses two keys that stand for one name, naming where', () => {
    expect(() => toCamelKeys({ lora: { lora_alpha: 1, loraAlpha: 2 } })).toThrow(
      /^lora: keys 'lora_alpha' and 'loraAlpha' both stand for 'loraAlpha'/,
    );
  });
});
