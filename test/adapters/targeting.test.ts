// PEFT's targeting rules, table-driven: exact names, suffixes, regex full match, exclusions,
// modules_to_save, layers_to_transform, rank / alpha patterns, 'all-linear'.
import { describe, expect, it } from 'vitest';
import { Linear, Module, ModuleList } from '../../lib/nn/index.js';
import {
  allLinearNames,
  getPeftModel,
  languageModelTargets,
  loraConfig,
  matchModule,
  rankAndAlpha,
  resolveTargets,
  type LoraConfigInput,
  type Match,
} from '../../lib/adapters/index.js';

const Q0 = 'model.layers.0.self_attn.q_proj';
const Q1 = 'model.layers.1.self_attn.q_proj';

const cases: Array<[string, LoraConfigInput, string, Match]> = [
  ['list: exact name', { targetModules: [Q0] }, Q0, 'target'],
  ['list: exact name of another layer', { targetModules: [Q0] }, Q1, 'none'],
  ['list: suffix after a dot', { targetModules: ['q_proj'] }, Q0, 'target'],
  ['list: a suffix must start at a dot', { targetModules: ['q_proj'] }, 'model.layers.0.self_attn.xq_proj', 'none'],
  ['list: dotted suffix', { targetModules: ['self_attn.q_proj'] }, Q0, 'target'],
  ['list: the name itself', { targetModules: ['lm_head'] }, 'lm_head', 'target'],
  [
    'list: suffix hits the vision tower too (peft#2615)',
    { targetModules: ['gate_proj'] },
    'visual.blocks.0.mlp.gate_proj',
    'target',
  ],
  ['regex: full match', { targetModules: String.raw`model\.layers\.\d+\.self_attn\.(q|v)_proj` }, Q1, 'target'],
  ['regex: no partial match', { targetModules: 'q_proj' }, Q0, 'none'],
  ['regex: no prefix match', { targetModules: String.raw`model\.layers\.0` }, Q0, 'none'],
  ['regex: .* prefix', { targetModules: '.*q_proj' }, Q0, 'target'],
  ['regex: Python named group', { targetModules: String.raw`.*\.(?P<kind>q|k)_proj` }, Q0, 'target'],
  ['exclude list: suffix', { targetModules: ['q_proj', 'k_proj'], excludeModules: ['q_proj'] }, Q0, 'excluded'],
  ['exclude list: other layer untouched', { targetModules: ['q_proj'], excludeModules: [Q1] }, Q0, 'target'],
  [
    'exclude regex',
    { targetModules: ['gate_proj'], excludeModules: '.*visual.*' },
    'visual.blocks.0.mlp.gate_proj',
    'excluded',
  ],
  [
    'modules_to_save are never targets',
    { targetModules: ['lm_head'], modulesToSave: ['lm_head'] },
    'lm_head',
    'excluded',
  ],
  ['modules_to_save cover their children', { targetModules: ['q_proj'], modulesToSave: ['self_attn'] }, Q0, 'excluded'],
  ['layersToTransform keeps listed layers', { targetModules: ['q_proj'], layersToTransform: [1] }, Q1, 'target'],
  ['layersToTransform drops others', { targetModules: ['q_proj'], layersToTransform: [1] }, Q0, 'none'],
  ['layersToTransform as one int', { targetModules: ['q_proj'], layersToTransform: 0 }, Q0, 'target'],
  [
    'layersToTransform: an exact entry bypasses it (PEFT)',
    { targetModules: [Q0], layersToTransform: [1] },
    Q0,
    'target',
  ],
  [
    'layersToTransform: first numbered segment, vision blocks too',
    { targetModules: ['qkv'], layersToTransform: [0] },
    'visual.blocks.0.attn.qkv',
    'target',
  ],
  [
    'layersPattern picks the segment',
    { targetModules: ['qkv'], layersToTransform: [0], layersPattern: 'layers' },
    'visual.blocks.0.attn.qkv',
    'none',
  ],
  [
    'layersPattern match',
    { targetModules: ['q_proj'], layersToTransform: [1], layersPattern: ['h', 'layers'] },
    Q1,
    'target',
  ],
];

describe('matchModule', () => {
  it.each(cases)('%s', (_, input, name, expected) => {
    const config = loraConfig(input);
    expect(matchModule(config, config.targetModules!, name)).toBe(expected);
  });
});

describe('rank and alpha patterns', () => {
  const config = loraConfig({
    r: 8,
    loraAlpha: 16,
    rankPattern: { 'layers.1.self_attn.q_proj': 32, v_proj: 4 },
    alphaPattern: { 'model.layers.0.self_attn.o_proj': 2, '.*mlp.*': 64 },
  });
  it.each([
    [Q0, 8, 16],
    [Q1, 32, 16],
    ['model.layers.0.self_attn.v_proj', 4, 16],
    ['model.layers.0.self_attn.o_proj', 8, 2],
    ['model.layers.3.self_attn.o_proj', 8, 16],
    ['model.layers.3.mlp.up_proj', 8, 64],
    ['model.layers.0.self_attn.xv_proj', 8, 16],
  ])('%s → r %d, alpha %d', (name, r, alpha) => {
    expect(rankAndAlpha(config, name)).toEqual({ r, alpha });
  });
});

class Attention extends Module {
  constructor() {
    super();
    this.registerModule('q_proj', new Linear(4, 4));
    this.registerModule('v_proj', new Linear(4, 4));
  }
}

class Toy extends Module {
  readonly layers = this.registerModule('layers', new ModuleList([new ToyLayer(), new ToyLayer()]));
  readonly lm_head = this.registerModule('lm_head', new Linear(4, 10, { bias: false }));
  outputWeight() {
    return this.lm_head.weight;
  }
}

class ToyLayer extends Module {
  readonly self_attn = this.registerModule('self_attn', new Attention());
  readonly mlp = this.registerModule('mlp', new Linear(4, 4));
}

describe('target resolution', () => {
  it("'all-linear' is every Linear but the output layer, also written in any case", () => {
    const toy = new Toy();
    const expected = [
      'layers.0.mlp',
      'layers.0.self_attn.q_proj',
      'layers.0.self_attn.v_proj',
      'layers.1.mlp',
      'layers.1.self_attn.q_proj',
      'layers.1.self_attn.v_proj',
    ];
    expect(allLinearNames(toy)).toEqual(expected);
    expect(resolveTargets(toy, loraConfig({ targetModules: 'ALL-LINEAR' }))).toEqual(expected);
  });

  it('null targets take the model type default (qwen2: q_proj, v_proj) or fail naming targetModules', () => {
    const qwen2 = Object.assign(new Toy(), { modelType: 'qwen2' });
    expect(resolveTargets(qwen2, loraConfig())).toEqual(['q_proj', 'v_proj']);
    expect(() => resolveTargets(new Toy(), loraConfig())).toThrow(
      /targetModules: no default target modules for model type 'unknown'/,
    );
  });

  it('languageModelTargets builds a regex over the decoder layers only', () => {
    const toy = new Toy();
    expect(() => languageModelTargets(toy)).not.toThrow();
    const regex = languageModelTargets(toy, ['q_proj']);
    expect(regex).toBe(String.raw`layers\.\d+\.(?:.*\.)?(?:q_proj)`);
    const config = loraConfig({ targetModules: regex });
    expect(matchModule(config, regex, 'layers.1.self_attn.q_proj')).toBe('target');
    expect(matchModule(config, regex, 'visual.layers.1.self_attn.q_proj')).toBe('none');
  });

  it('errors name the patterns when nothing matched, and refuse non-Linear targets', () => {
    expect(() => getPeftModel(new Toy(), { targetModules: ['k_proj'] })).toThrow(
      /targetModules \["k_proj"\] matched no module of Toy/,
    );
    expect(() => getPeftModel(new Toy(), { targetModules: ['q_proj'], excludeModules: ['q_proj'] })).toThrow(
      /2 module\(s\) were excluded by excludeModules \["q_proj"\]/,
    );
    expect(() => getPeftModel(new Toy(), { targetModules: ['q_proj'], layersToTransform: [5] })).toThrow(
      /layersToTransform is \[5\]/,
    );
    expect(() => getPeftModel(new Toy(), { targetModules: ['self_attn'] })).toThrow(
      /target 'layers.0.self_attn' is a Attention; only Linear layers/,
    );
  });
});

describe("target_modules 'auto' (VL-RLHF)", () => {
  it('is every language-model Linear but lm_head, on tiny Qwen2-VL and InternVL', async () => {
    const { mkdtempSync, rmSync } = await import('node:fs');
    const { tmpdir } = await import('node:os');
    const { join } = await import('node:path');
    const { writeTinyCheckpoint } = await import('../../lib/tiny/index.js');
    const { fromPretrained } = await import('../../lib/models/pretrained.js');
    const root = mkdtempSync(join(tmpdir(), 'vlalign-auto-'));
    try {
      for (const [family, lm] of [
        ['qwen2_vl', 'model.'],
        ['internvl', 'language_model.model.'],
      ] as const) {
        await writeTinyCheckpoint(join(root, family), family, { seed: 3 });
        const model = await fromPretrained(join(root, family));
        // Independent expectation: every Linear by its module tree, under the decoder prefix.
        const expected = [...model.namedModules()]
          .filter(([n, m]) => m instanceof Linear && n.startsWith(lm))
          .map(([n]) => n)
          .sort();
        expect(expected.length).toBeGreaterThan(0);
        const resolved = resolveTargets(model, loraConfig({ targetModules: 'auto' }));
        expect(resolved).toEqual(expected);
        const peft = getPeftModel(model, { targetModules: 'auto' });
        expect([...peft.layers.keys()].sort()).toEqual(expected);
        expect(peft.config.targetModules).toEqual(expected);
        model.dispose();
      }
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });
});
