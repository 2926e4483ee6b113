// snake_case <-> camelCase for configuration keys: Hugging Face files, PEFT's adapter_config.json and
// YAML recipes use Python's names (per_device_train_batch_size), our schemas the same names in
// camelCase (perDeviceTrainBatchSize). Each direction converts only names of its own shape, so
// `_name_or_path` or `URL` pass unchanged, and the two directions invert each other on those shapes.

// Lowercase words joined by single underscores; a word may hold or be digits (adam_beta2, beta_2).
const SNAKE = /^[a-z][a-z0-9]*(?:_[a-z0-9]+)*$/;
// Starts lowercase; an underscore only before a digit (snake 'beta_2' is camel 'beta_2').
const CAMEL = /^[a-z](?:[a-zA-Z0-9]|_(?=[0-9]))*$/;

export const snakeToCamel = (name: string): string =>
  SNAKE.test(name) ? name.replace(/_([a-z])/g, (_, c: string) => c.toUpperCase()) : name;

export const camelToSnake = (name: string): string =>
  CAMEL.test(name) ? name.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`) : name;

export interface KeyCaseOptions {
  /**
   * Keys (in either case) whose values are copied unchanged: maps keyed by data rather than by
   * field names, such as PEFT's rank_pattern (module names) or a reward table.
   */
  verbatim?: Iterable<string>;
}

/** A copy of `value` with the keys of every nested plain object in camelCase. */
export const toCamelKeys = (value: unknown, options: KeyCaseOptions = {}): unknown =>
  mapKeys(value, snakeToCamel, new Set(options.verbatim), '');

/** A copy of `value` with the keys of every nested plain object in snake_case. */
export const toSnakeKeys = (value: unknown, options: KeyCaseOptions = {}): unknown =>
  mapKeys(value, camelToSnake, new Set(options.verbatim), '');

function mapKeys(value: unknown, rename: (key: string) => string, verbatim: Set<string>, path: string): unknown {
  if (Array.isArray(value)) return value.map((v, i) => mapKeys(v, rename, verbatim, `${path}[${i}]`));
  if (!isPlainObject(value)) return value;
  const out: Record<string, unknown> = {};
  const from = new Map<string, string>();
  for (const [key, v] of Object.entries(value)) {
    const renamed = rename(key);
    const clash = from.get(renamed);
    if (clash !== undefined) {
      throw new TypeError(`${path || '(root)'}: keys '${clash}' and '${key}' both stand for '${renamed}'`);
    }
    from.set(renamed, key);
    const keep = verbatim.has(key) || verbatim.has(renamed);
    out[renamed] = keep ? v : mapKeys(v, rename, verbatim, path === '' ? key : `${path}.${key}`);
  }
  return out;
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  if (typeof v !== 'object' || v === null) return false;
  const proto: unknown = Object.getPrototypeOf(v);
  return proto === Object.prototype || proto === null;
}
