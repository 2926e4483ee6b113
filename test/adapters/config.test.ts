// LoraConfig: PEFT's defaults, validation messages that name the key, and adapter_config.json both ways.
import { describe, expect, it } from 'vitest';
import { PEFT_FORMAT_VERSION, fromPeftJson, loraConfig, toPeftJson } from '../../lib/adapters/index.js';
import { peftJsonText } from '../../lib/internal.js';

describe('LoraConfig', () => {
  it("has PEFT's defaults", () => {
    expect(loraConfig()).toEqual({
      r: 8,
      loraAlpha: 8,
      loraDropout: 0,
      bias: 'none',
      useRslora: false,
      useDora: false,
      initLoraWeights: true,
      targetModules: null,
      excludeModules: null,
      modulesToSave: null,
      rankPattern: {},
      alphaPattern: {},
      layersToTransform: null,
      layersPattern: null,
      fanInFanOut: false,
      loraBias: false,
      taskType: null,
      baseModelNameOrPath: null,
      revision: null,
      inferenceMode: false,
      peftVersion: null,
    });
  });

  it.each([
    [{ r: 0 }, /r: /],
    [{ loraDropout: 1 }, /loraDropout: /],
    [{ bias: 'some' }, /bias: /],
    [{ initLoraWeights: 'pissa' }, /initLoraWeights: expected true, false or 'gaussian'/],
    [{ targetModules: '(q_proj' }, /targetModules: not a valid regular expression/],
    [
      { targetModules: '.*q_proj', layersToTransform: [0] },
      /layersToTransform: cannot be used when targetModules is a regex/,
    ],
    [{ layersPattern: 'layers' }, /layersPattern: needs layersToTransform/],
    [{ rankPattern: { q_proj: 2.5 } }, /rankPattern\.q_proj: /],
    [{ taskType: 'CAUSAL' }, /taskType: /],
    [{ fanInFanOut: true }, /fanInFanOut: is only for Conv1D/],
    [{ loraAplha: 16 }, /loraAplha/],
  ])('rejects %j naming the key', (input, message) => {
    expect(() => loraConfig(input as never)).toThrow(message);
  });
});

describe('adapter_config.json', () => {
  const peftWritten = {
    alpha_pattern: {},
    auto_mapping: null,
    base_model_name_or_path: 'Qwen/Qwen2-VL-2B-Instruct',
    bias: 'none',
    corda_config: null,
    eva_config: null,
    exclude_modules: null,
    fan_in_fan_out: false,
    inference_mode: true,
    init_lora_weights: true,
    layer_replication: null,
    layers_pattern: null,
    layers_to_transform: null,
    loftq_config: {},
    lora_alpha: 16,
    lora_bias: false,
    lora_dropout: 0.05,
    megatron_config: null,
    megatron_core: 'megatron.core',
    modules_to_save: null,
    peft_type: 'LORA',
    peft_version: '0.17.1',
    qalora_group_size: 16,
    r: 8,
    rank_pattern: {},
    revision: null,
    target_modules: ['v_proj', 'q_proj'],
    target_parameters: null,
    task_type: 'CAUSAL_LM',
    trainable_token_indices: null,
    use_dora: false,
    use_qalora: false,
    use_rslora: false,
  };

  it('reads a file PEFT wrote, ignoring the inert keys of features vlalign lacks', () => {
    const c = fromPeftJson(peftWritten);
    expect(c).toMatchObject({
      r: 8,
      loraAlpha: 16,
      loraDropout: 0.05,
      targetModules: ['v_proj', 'q_proj'],
      taskType: 'CAUSAL_LM',
      baseModelNameOrPath: 'Qwen/Qwen2-VL-2B-Instruct',
      inferenceMode: true,
      peftVersion: '0.17.1',
    });
  });

  it('refuses settings it cannot honour, naming the PEFT key', () => {
    expect(() => fromPeftJson({ ...peftWritten, use_qalora: true })).toThrow(/use_qalora = true/);
    expect(() => fromPeftJson({ ...peftWritten, peft_type: 'IA3' })).toThrow(/peft_type is 'IA3'/);
    expect(() => fromPeftJson({ ...peftWritten, lora_alpha: 'x' })).toThrow(/lora_alpha: /);
    expect(() => fromPeftJson({ ...peftWritten, init_lora_weights: 'pissa' })).toThrow(/init_lora_weights: /);
    // Every problem, under the file's snake_case names (module names in rank_pattern kept as written).
    const twoProblems = { ...peftWritten, lora_alpha: 'x', rank_pattern: { q_proj: 0 } };
    expect(() => fromPeftJson(twoProblems, 'a/adapter_config.json')).toThrow(
      /^a\/adapter_config.json: invalid lora_alpha: .*; invalid rank_pattern\.q_proj: /,
    );
  });

  it("writes PEFT's snake_case keys, sets as sorted lists, peft_type and peft_version", () => {
    const json = toPeftJson(
      loraConfig({
        r: 16,
        loraAlpha: 32,
        targetModules: ['v_proj', 'q_proj', 'v_proj'],
        useDora: true,
        taskType: 'CAUSAL_LM',
      }),
    );
    expect(Object.keys(json).sort()).toEqual([
      'alpha_pattern',
      'base_model_name_or_path',
      'bias',
      'exclude_modules',
      'fan_in_fan_out',
      'inference_mode',
      'init_lora_weights',
      'layers_pattern',
      'layers_to_transform',
      'lora_alpha',
      'lora_bias',
      'lora_dropout',
      'modules_to_save',
      'peft_type',
      'peft_version',
      'r',
      'rank_pattern',
      'revision',
      'target_modules',
      'task_type',
      'use_dora',
      'use_rslora',
    ]);
    expect(json).toMatchObject({
      peft_type: 'LORA',
      peft_version: PEFT_FORMAT_VERSION,
      r: 16,
      lora_alpha: 32,
      target_modules: ['q_proj', 'v_proj'],
      use_dora: true,
    });
    expect(fromPeftJson(json)).toEqual({
      ...loraConfig({
        r: 16,
        loraAlpha: 32,
        targetModules: ['q_proj', 'v_proj'],
        useDora: true,
        taskType: 'CAUSAL_LM',
      }),
      peftVersion: PEFT_FORMAT_VERSION,
    });
  });

  it('text as json.dumps(indent=2, sort_keys=True): sorted keys at every level, Python floats, ASCII escapes', () => {
    const text = peftJsonText({ r: 8, lora_dropout: 0, b: { z: 1, a: [] }, alpha_pattern: {}, name: 'é' });
    expect(text).toBe(
      '{\n  "alpha_pattern": {},\n  "b": {\n    "a": [],\n    "z": 1\n  },\n  "lora_dropout": 0.0,\n  "name": "\\u00e9",\n  "r": 8\n}',
    );
  });
});
