// parseConfig / ConfigError: every zod issue is reported with its key path, in one TypeError.
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { ConfigError, formatPath, parseConfig } from '../../lib/util/index.js';

const Schema = z.strictObject({
  loraAlpha: z.number(),
  targetModules: z.array(z.string()),
  nested: z.object({ maxPixels: z.number().int().positive() }).optional(),
});

const errorOf = (fn: () => unknown): ConfigError => {
  try {
    fn();
  } catch (error) {
    return error as ConfigError;
  }
  throw new Error('expected a throw');
};

describe('parseConfig', () => {
  it('returns the parsed value', () => {
    const good = { loraAlpha: 2, targetModules: [] };
    expect(parseConfig(Schema, good, 'cfg')).toEqual(good);
  });

  it('lists every problem with its path, unknown keys one by one', () => {
    const bad = { loraAlpha: 'x', targetModules: ['q', 3], nested: { maxPixels: -1 }, loraAplha: 1, extra: 2 };
    const error = errorOf(() => parseConfig(Schema, bad, 'a/config.json'));
    expect(error).toBeInstanceOf(ConfigError);
    expect(error).toBeInstanceOf(TypeError);
    expect(error.source).toBe('a/config.json');
    const paths = ['extra', 'loraAlpha', 'loraAplha', 'nested.maxPixels', 'targetModules[1]'];
    expect(error.problems.map((p) => p.path).sort()).toEqual(paths);
    expect(error.message.startsWith('a/config.json: invalid ')).toBe(true);
    for (const p of error.problems) expect(error.message).toContain(`invalid ${p.path}: ${p.message}`);
    expect(error.message.split('; ')).toHaveLength(5);
  });

  it('names keys in snake_case for files written that way, under a root', () => {
    const bad = { loraAlpha: 'x', targetModules: [], nested: { maxPixels: 0 } };
    const error = errorOf(() => parseConfig(Schema, bad, 'f', { keyCase: 'snake' }));
    expect(error.problems.map((p) => p.path).sort()).toEqual(['lora_alpha', 'nested.max_pixels']);
    const rooted = errorOf(() => parseConfig(z.array(z.string()), ['a', 1], 'chat', { root: 'samples[0].messages' }));
    expect(rooted.problems.map((p) => p.path)).toEqual(['samples[0].messages[1]']);
  });

  it('reports the value itself as (root)', () => {
    expect(errorOf(() => parseConfig(Schema, null, 'p.json')).message).toMatch(/^p\.json: invalid \(root\): /);
  });
});

describe('formatPath', () => {
  it('brackets indices and quotes names that are not identifiers', () => {
    expect(formatPath(['a', 0, 'b'])).toBe('a[0].b');
    expect(formatPath(['rankPattern', 'layers.0.q_proj'])).toBe('rankPattern["layers.0.q_proj"]');
    expect(formatPath([])).toBe('(root)');
    expect(formatPath([], { root: 'messages' })).toBe('messages');
  });
});
