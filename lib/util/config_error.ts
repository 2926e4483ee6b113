// One error for every rejected configuration (a config.json, a LoraConfig, a chat sample): it names
// the source and lists EVERY problem with its key path, so one run shows the user all there is to fix.
import type { z } from 'zod';
import { camelToSnake } from './case.js';

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
  throw new ConfigError(source, configProblems(result.error.issues, format));
}

/** zod issues as problems; an unrecognised-keys issue becomes one problem per key. */
export function configProblems(issues: readonly z.core.$ZodIssue[], format: IssueFormat = {}): ConfigProblem[] {
  return issues.flatMap((issue) => {
    if (issue.code === 'unrecognized_keys') {
      return issue.keys.map((key) => ({ path: formatPath([...issue.path, key], format), message: 'unknown key' }));
    }
    return [{ path: formatPath(issue.path, format), message: issue.message }];
  });
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
