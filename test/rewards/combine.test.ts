// The reward plumbing (trainers_anchor.md 3.5, 1.9; trl_peft.md 3.2 step 5): TRL's batch signature
// and nansum of weighted rewards (None -> NaN), verl's compute_score form and data_source dispatch,
// the registry, and failures (throw, NaN) reported with name and row, counted, scored 0.
import { describe, expect, it, vi } from 'vitest';
import * as rewards from '../../lib/rewards/index.js';
import type { NamedReward, RewardBatch } from '../../lib/rewards/index.js';

const batchOf = (completions: string[], columns: Record<string, unknown>[] = completions.map(() => ({}))) => ({
  prompts: completions.map(() => 'prompt'),
  completions,
  columns,
});
const lengthReward: NamedReward = { name: 'length', fn: (b) => b.completions.map((c) => rewards.textOf(c).length) };

describe('scoreRewards: TRL nansum of weight * reward', () => {
  it('weights each function, null is NaN and left out of the sum, a row of nulls sums to 0', async () => {
    const maybe: NamedReward = { name: 'maybe', fn: (b) => b.completions.map((c) => (c === 'bb' ? null : 10)) };
    const allNull: NamedReward = { name: 'none', fn: (b) => b.completions.map(() => null) };
    const scored = await rewards.scoreRewards([lengthReward, maybe, allNull], [1, 0.5, 3], batchOf(['a', 'bb', 'ccc']));
    expect(scored.names).toEqual(['length', 'maybe', 'none']);
    expect(scored.rewardsPerFunc).toEqual([
      [1, 10, Number.NaN],
      [2, Number.NaN, Number.NaN],
      [3, 10, Number.NaN],
    ]);
    expect(scored.rewards).toEqual([1 + 0.5 * 10, 2, 3 + 0.5 * 10]);
    expect(scored.failures).toEqual([]);
    const none = await rewards.scoreRewards([allNull], undefined, batchOf(['a', 'b']));
    expect(none.rewards).toEqual([0, 0]);
    expect(none.allNullRows).toEqual([0, 1]);
  });

  it('runs async functions (concurrently) like sync ones', async () => {
    let running = 0;
    let overlap = 0;
    const slow = (name: string, value: number): NamedReward => ({
      name,
      fn: async (b) => {
        running += 1;
        overlap = Math.max(overlap, running);
        await new Promise((resolve) => setTimeout(resolve, 20));
        running -= 1;
        return b.completions.map(() => value);
      },
    });
    const scored = await rewards.scoreRewards([slow('a', 1), slow('b', 2), lengthReward], undefined, batchOf(['xy']));
    expect(scored.rewards).toEqual([1 + 2 + 2]);
    expect(overlap).toBe(2);
  });

  it('a throwing function: the failing row is found by retrying rows alone, reported, counted, scored 0', async () => {
    const onFailure = vi.fn();
    const fragile: NamedReward = {
      name: 'fragile',
      fn: (b) =>
        b.completions.map((c) => {
          if (c === 'bad') throw new RangeError('cannot parse');
          return 1;
        }),
    };
    const scored = await rewards.scoreRewards([fragile, lengthReward], [2, 1], batchOf(['ok', 'bad', 'fine']), {
      onFailure,
    });
    expect(scored.rewardsPerFunc.map((row) => row[0])).toEqual([1, 0, 1]);
    expect(scored.rewards).toEqual([2 + 2, 0 + 3, 2 + 4]);
    expect(scored.failures).toEqual([{ name: 'fragile', index: 1, message: 'threw RangeError: cannot parse' }]);
    expect(scored.failureCounts).toEqual({ fragile: 1 });
    expect(onFailure).toHaveBeenCalledTimes(1);
  });

  it('NaN, an infinity, a string, a wrong count are failures; the step goes on', async () => {
    const odd: NamedReward = {
      name: 'odd',
      fn: () => [Number.NaN, Number.POSITIVE_INFINITY, 'x' as unknown as number],
    };
    const scored = await rewards.scoreRewards([odd, lengthReward], undefined, batchOf(['a', 'bb', 'ccc']));
    expect(scored.rewardsPerFunc.map((row) => row[0])).toEqual([0, 0, 0]);
    expect(scored.failures.map((f) => [f.name, f.index, f.message])).toEqual([
      ['odd', 0, 'returned NaN'],
      ['odd', 1, 'returned Infinity'],
      ['odd', 2, 'returned string "x"'],
    ]);
    const short: NamedReward = { name: 'short', fn: () => [1] };
    const cut = await rewards.scoreRewards([short], undefined, batchOf(['a', 'b']));
    // The whole-batch call fails (1 value for 2 rows); alone, each row gets its one value.
    expect(cut.rewards).toEqual([1, 1]);
    expect(cut.failures).toEqual([]);
    const rejecting: NamedReward = { name: 'rejecting', fn: async () => Promise.reject(new Error('offline')) };
    const down = await rewards.scoreRewards([rejecting, lengthReward], undefined, batchOf(['a', 'b']));
    expect(down.rewards).toEqual([1, 1]);
    expect(down.failureCounts).toEqual({ rejecting: 2 });
  });

  it('checks the batch and the weights up front, naming both counts', async () => {
    await expect(rewards.scoreRewards([lengthReward], [1, 2], batchOf(['a']))).rejects.toThrow(
      /expected 1 reward weights .* received 2/,
    );
    await expect(
      rewards.scoreRewards([lengthReward], undefined, { prompts: ['p'], completions: ['a', 'b'], columns: [{}, {}] }),
    ).rejects.toThrow(/expected 2 prompts .* received 1/);
    await expect(rewards.scoreRewards([lengthReward], [Number.NaN], batchOf(['a']))).rejects.toThrow(/weight 0/);
  });

  it('rewardFunctionMetrics: nanmean and Bessel nanstd per function, and its failures', async () => {
    const some: NamedReward = { name: 'some', fn: () => [1, null, 4] };
    const scored = await rewards.scoreRewards([some], undefined, batchOf(['a', 'b', 'c']));
    // Values 1 and 4: mean 2.5, sample variance ((1.5)^2 + (1.5)^2) / 1 = 4.5.
    expect(rewards.rewardFunctionMetrics(scored)).toEqual({
      'rewards/some/mean': 2.5,
      'rewards/some/std': Math.sqrt(4.5),
      'rewards/some/failures': 0,
    });
  });
});

describe('textOf and columns', () => {
  it('reads strings, the last message of a conversation, and text parts of list contents', () => {
    expect(rewards.textOf('plain')).toBe('plain');
    expect(rewards.textOf([{ role: 'assistant', content: 'hi' }])).toBe('hi');
    expect(
      rewards.textOf([
        { role: 'assistant', content: [{ type: 'text', text: 'a' }, { type: 'image' }, { type: 'text', text: 'b' }] },
      ]),
    ).toBe('ab');
    expect(rewards.textOf([])).toBe('');
    expect(rewards.groundTruthOf({ reward_model: { ground_truth: 'x' }, solution: 'y' })).toBe('x');
    expect(rewards.groundTruthOf({ ground_truth: 0, solution: 'y' })).toBe(0);
    expect(rewards.groundTruthOf({ solution: 'y' })).toBe('y');
    expect(rewards.columnOf(batchOf(['a', 'b'], [{ k: 1 }, {}]), 'k')).toEqual([1, undefined]);
  });
});

describe('verl compute_score form', () => {
  it('passes data_source, the completion, ground truth and extra_info per row; dict extras are logged', async () => {
    const seen: unknown[][] = [];
    const logged: Record<string, unknown[]> = {};
    const fn = rewards.fromComputeScore(async (source, solution, truth, info) => {
      seen.push([source, solution, truth, info]);
      return source === 'dict' ? { score: 0.25, acc: true } : 1;
    });
    const batch: RewardBatch = {
      ...batchOf(
        ['s0', 's1'],
        [{ data_source: 'dict', reward_model: { ground_truth: 'g0' }, extra_info: { w: 1 } }, {}],
      ),
      logExtra: (key, values) => {
        logged[key] = [...values];
      },
    };
    expect(await fn(batch)).toEqual([0.25, 1]);
    expect(seen).toEqual([
      ['dict', 's0', 'g0', { w: 1 }],
      ['', 's1', undefined, undefined],
    ]);
    expect(logged).toEqual({ acc: [true, null] });
  });

  it('dispatch on data_source: known scorers, the fallback for unknown sources, told once per source', async () => {
    const told: string[] = [];
    const dispatch = rewards.dispatchOnDataSource({
      scorers: { 'hiyouga/geometry3k': () => 1, grounding: () => 2 },
      fallback: () => 0.5,
      onUnknownSource: (_source, message) => told.push(message),
    });
    expect(await dispatch('grounding', '', null, undefined)).toBe(2);
    expect(await dispatch('hiyouga/geometry3K', '', null, undefined)).toBe(0.5);
    expect(await dispatch('hiyouga/geometry3K', '', null, undefined)).toBe(0.5);
    expect(told).toEqual([
      "no reward scorer for data_source 'hiyouga/geometry3K' (did you mean 'hiyouga/geometry3k'?); using the fallback scorer (known: hiyouga/geometry3k, grounding)",
    ]);
    const strict = rewards.dispatchOnDataSource({ scorers: {} });
    expect(await strict('mmpr', '', null, undefined)).toBeNull(); // no fallback: not applicable, never a throw
  });
});

describe('registry', () => {
  it('creates built-ins by name, with snake_case options from a recipe, and names unknown ones', async () => {
    const registry = rewards.rewardRegistry;
    expect(registry.names()).toEqual(
      expect.arrayContaining(['virft_accuracy_iou', 'geo3k', 'internvl_grounding', 'mmpr_correctness', 'verl_default']),
    );
    const fmt = registry.create('regex_format', { pattern: 'A.*', flags: 's' });
    expect(await fmt.fn(batchOf(['A\nb', 'bA']))).toEqual([1, 0]);
    const geo = registry.create('geo3k', { format_score: 0.5 });
    expect(await geo.fn(batchOf(['\\boxed{2}'], [{ ground_truth: '2' }]))).toEqual([0.5]);
    expect(() => registry.create('geo3K')).toThrow(/unknown reward function 'geo3K' \(did you mean 'geo3k'\?\)/);
    expect(() => registry.create('geo3k', { format_scor: 1 })).toThrow(
      /format_scor: unknown key \(did you mean 'format_score'\?\)/,
    );
    expect(() => registry.create('virft_format', { x: 1 })).toThrow(/virft_format/);
  });

  it('users register their own; duplicates need replace; resolveRewards takes names, specs and functions', async () => {
    const registry = rewards.registerBuiltinRewards(new rewards.RewardRegistry());
    const mine = (b: RewardBatch) => b.completions.map(() => 7);
    registry.register('my_reward', mine);
    expect(() => registry.register('my_reward', mine)).toThrow(/already registered/);
    registry.register('my_reward', () => [8], { replace: true });
    expect(() => registry.register('bad name', mine)).toThrow(/reward name/);
    registry.registerFactory('scaled', (o) => (b) => b.completions.map(() => Number(o.factor)));
    const resolved = rewards.resolveRewards(
      ['my_reward', { name: 'scaled', options: { factor: 3 } }, mine, { name: 'named', fn: mine }],
      registry,
    );
    expect(resolved.map((r) => r.name)).toEqual(['my_reward', 'scaled', 'mine', 'named']);
    const scored = await rewards.scoreRewards(resolved, undefined, batchOf(['x']));
    expect(scored.rewardsPerFunc).toEqual([[8, 3, 7, 7]]);
  });

  it('verl_default: geo3k and grounding by data_source, unknown sources go to the fallback', async () => {
    const warn = vi.spyOn(console, 'warn').mockImplementation(() => {});
    const verl = rewards.rewardRegistry.create('verl_default');
    const out = await verl.fn(
      batchOf(
        ['<think>a</think>\\boxed{3}', '[0, 0, 500, 500]', '<think>a</think>\\boxed{4}'],
        [
          { data_source: 'hiyouga/geometry3k', reward_model: { ground_truth: '3' } },
          {
            data_source: 'grounding',
            reward_model: { ground_truth: [0, 0, 500, 500] },
            extra_info: { width: 10, height: 10 },
          },
          { data_source: 'MMPR-Tiny', reward_model: { ground_truth: '4' } },
        ],
      ),
    );
    expect(out).toEqual([1, 1, 1]);
    expect(warn).toHaveBeenCalledTimes(1);
    expect(String(warn.mock.calls[0]![0])).toMatch(/data_source 'MMPR-Tiny'.*fallback/);
    warn.mockRestore();
    const mmpr = rewards.rewardRegistry.create('verl_default', { fallback: 'mmpr_correctness' });
    const chart = await mmpr.fn(
      batchOf(['The value read off the bars: \\boxed{12.4}'], [{ data_source: 'chartqa', ground_truth: '12' }]),
    );
    expect(chart).toEqual([1]); // chartqa -> relaxed: within 5%
  });
});

describe('exact match and regex format', () => {
  it('exact match compares the trimmed completion (or its <answer> / last box) with the ground truth', async () => {
    const columns = [{ solution: 'Paris' }, { solution: 'Paris' }, { solution: 'Paris' }, {}];
    const completions = [' Paris ', '<answer>paris</answer>', 'I think \\boxed{Paris}', 'Paris'];
    expect(await rewards.exactMatch()(batchOf(completions, columns))).toEqual([1, 0, 0, 0]);
    expect(await rewards.exactMatch({ extract: 'answer', ignoreCase: true })(batchOf(completions, columns))).toEqual([
      1, 1, 0, 0,
    ]);
    expect(await rewards.exactMatch({ extract: 'boxed' })(batchOf(completions, columns))).toEqual([0, 0, 1, 0]);
  });

  it('regex format: fullmatch by default, search on request, g flag dropped', async () => {
    const texts = ['<think>x</think> answer', 'say <think>x</think>'];
    expect(await rewards.regexFormat(/<think>.*<\/think>.*/)(batchOf(texts))).toEqual([1, 0]);
    expect(await rewards.regexFormat('<think>', { fullMatch: false })(batchOf(texts))).toEqual([1, 1]);
    const sticky = rewards.regexFormat(/<think>/g, { fullMatch: false });
    expect(await sticky(batchOf([...texts, ...texts]))).toEqual([1, 1, 1, 1]);
  });
});
