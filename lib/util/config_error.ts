// One error for every rejected configuration (a config.json, a LoraConfig, a chat sample): it names
// the source and lists EVERY problem with its key path, so one run shows the user all there is to fix.
import type { z } from 'zod';
import { camelToSnake } from './case.js';
import { didYouMean } from './nearest.js';

export interface ConfigProblem {
  /** Where in the value: `a.b[0].c`, or `(root)` for the value itself. */
  readonly path: string;
  readonly message: string;
}

/** A TypeError (wrong input, as sharp's invalidParameterError) with the problems kept for callers. */
export class ConfigError extends TypeError {
  override readonly name = 'ConfigError';

  constructor(
    readonly source: string,
    readonly problems: readonly ConfigProblem[],
  ) {
    super(`${source}: ${problems.map((p) => `invalid ${p.path}: ${p.message}`).join('; ')}`);
  }
}

export interface IssueFormat {
  /** Prefix of every path (`samples[0].messages` → `samples[0].messages[1].content`). */
  root?: string;
  /** 'snake': name keys as the user wrote them in a snake_case file while the schema is camelCase. */
  keyCase?: 'snake';
}

/** Parses `value` with `schema`; on failure a ConfigError naming `source` and every issue. */
export function parseConfig<S extends z.ZodType>(
  schema: S,
  value: unknown,
  source: string,
  format: IssueFormat = {},
): z.output<S> {
  const result = schema.safeParse(value);
  if (result.success) return result.data;
  throw new ConfigError(source, configProblems(result.error.issues, format, schema));
}

/**
 * zod issues as problems; an unrecognised-keys issue becomes one problem per key, which names the
 * nearest valid key of the object at that path when `schema` is given ("unknown key (did you mean
 * 'learning_rate'?)").
 */
export function configProblems(
  issues: readonly z.core.$ZodIssue[],
  format: IssueFormat = {},
  schema?: z.ZodType,
): ConfigProblem[] {
  return issues.flatMap((issue) => {
    if (issue.code === 'unrecognized_keys') {
      const known = schema === undefined ? [] : knownKeysAt(schema, issue.path);
      const names = format.keyCase === 'snake' ? known.map(camelToSnake) : known;
      return issue.keys.map((key) => ({
        path: formatPath([...issue.path, key], format),
        message: `unknown key${didYouMean(key, names)}`,
      }));
    }
    return [{ path: formatPath(issue.path, format), message: snakeKeysIn(issue.message, format, schema) }];
  });
}

// A cross-field check's message names other keys in the schema's camelCase ("lossWeights has 3
// entries but lossType has 1"); a snake_case file's error names them as the file spells them.
function snakeKeysIn(message: string, format: IssueFormat, schema: z.ZodType | undefined): string {
  if (format.keyCase !== 'snake' || schema === undefined) return message;
  const keys = allKeys(schema);
  return message.replace(/\b[a-z][a-z0-9]*(?:[A-Z][a-z0-9]*)+\b/g, (word) =>
    keys.has(word) ? camelToSnake(word) : word,
  );
}

const keysCache = new WeakMap<z.ZodType, Set<string>>();

/** Every field name of every object schema inside `schema` (nested objects, arrays, unions, pipes). */
function allKeys(schema: z.ZodType): Set<string> {
  let keys = keysCache.get(schema);
  if (keys === undefined) {
    keys = new Set();
    const seen = new Set<z.ZodType>();
    const visit = (s: z.ZodType): void => {
      for (const o of objectsOf(s)) {
        if (seen.has(o)) continue;
        seen.add(o);
        const def = defOf(o);
        if (def.element) visit(def.element);
        for (const [key, field] of Object.entries(def.shape ?? {})) {
          keys!.add(key);
          visit(field);
        }
      }
    };
    visit(schema);
    keysCache.set(schema, keys);
  }
  return keys;
}

// The zod 4 definitions knownKeysAt looks through: wrappers hold innerType, pipes (transforms) in.
interface Def {
  type: string;
  innerType?: z.ZodType;
  in?: z.ZodType;
  shape?: Record<string, z.ZodType>;
  element?: z.ZodType;
  options?: z.ZodType[];
}
const defOf = (schema: z.ZodType): Def => (schema as unknown as { _zod: { def: Def } })._zod.def;

/** The field names of the object schema(s) at `path` inside `schema` (through defaults, pipes, unions). */
export function knownKeysAt(schema: z.ZodType, path: readonly PropertyKey[]): string[] {
  let current: z.ZodType[] = [schema];
  for (const segment of path) {
    current = current.flatMap(objectsOf).flatMap((s) => {
      const def = defOf(s);
      if (typeof segment === 'number') return def.type === 'array' && def.element ? [def.element] : [];
      const field = def.type === 'object' ? def.shape?.[String(segment)] : undefined;
      return field === undefined ? [] : [field];
    });
  }
  return [...new Set(current.flatMap(objectsOf).flatMap((s) => Object.keys(defOf(s).shape ?? {})))];
}

// The object (or array) schemas a schema stands for once its wrappers are taken off.
function objectsOf(schema: z.ZodType): z.ZodType[] {
  const def = defOf(schema);
  if (def.type === 'object' || def.type === 'array') return [schema];
  if (def.type === 'union') return (def.options ?? []).flatMap(objectsOf);
  if (def.type === 'pipe') return def.in === undefined ? [] : objectsOf(def.in);
  return def.innerType === undefined ? [] : objectsOf(def.innerType);
}

const IDENTIFIER = /^[A-Za-z_$][\w$]*$/;

/** `a.b[0].c`: indices in brackets, names that are not identifiers quoted. */
export function formatPath(path: readonly PropertyKey[], format: IssueFormat = {}): string {
  let out = format.root ?? '';
  for (const segment of path) {
    if (typeof segment === 'number') out += `[${segment}]`;
    else if (typeof segment === 'string' && IDENTIFIER.test(segment)) {
      out += `${out === '' ? '' : '.'}${format.keyCase === 'snake' ? camelToSnake(segment) : segment}`;
    } else out += `[${JSON.stringify(String(segment))}]`;
  }
  return out === '' ? '(root)' : out;
}
