// PEFT's name-matching rules over module names (tuners_utils.check_target_module_exists,
// utils.other.get_pattern_key). PEFT's patterns are Python regexes: the few Python-only spellings
// are translated, the rest is shared syntax.
const cache = new Map<string, RegExp | null>();

/** A Python regex as a JS RegExp anchored as `anchor` says, or null when it does not compile. */
export function compilePattern(pattern: string, anchor: (p: string) => string = (p) => p): RegExp | null {
  const source = anchor(pythonToJs(pattern));
  if (!cache.has(source)) {
    try {
      cache.set(source, new RegExp(source));
    } catch {
      cache.set(source, null);
    }
  }
  return cache.get(source)!;
}

const pythonToJs = (p: string): string =>
  p
    .replace(/\(\?P</g, '(?<')
    .replace(/\(\?P=(\w+)\)/g, '\\k<$1>')
    .replace(/\\A/g, '^')
    .replace(/\\Z/g, '$');

function mustCompile(pattern: string, anchor: (p: string) => string): RegExp {
  const re = compilePattern(pattern, anchor);
  if (re === null) throw new SyntaxError(`invalid regular expression '${pattern}'`);
  return re;
}

/** Python's re.fullmatch(pattern, name). */
export const fullMatch = (pattern: string, name: string): boolean =>
  mustCompile(pattern, (p) => `^(?:${p})$`).test(name);

/** PEFT's rule for target_modules / exclude_modules: a str is a full regex match, a list entry the exact name or a suffix after '.'. */
export function matchesModule(spec: string | readonly string[], name: string): boolean {
  if (typeof spec === 'string') return fullMatch(spec, name);
  return spec.some((entry) => name === entry || name.endsWith(`.${entry}`));
}

/** PEFT's get_pattern_key: the first rank/alpha pattern matching the whole name or a suffix after '.'. */
export function patternKey(patterns: Iterable<string>, name: string): string | undefined {
  for (const key of patterns) if (mustCompile(key, (p) => `^(?:.*\\.)?(?:${p})$`).test(name)) return key;
  return undefined;
}

/** Whether `name` lies at or under a modules_to_save entry (PEFT keeps adapters off those). */
export const underModuleToSave = (entry: string, name: string): boolean =>
  mustCompile(entry, (p) => `^(?:.*\\.)?(?:${p})(?:$|\\..*)`).test(name);

/**
 * The layer index PEFT reads from a module name for layers_to_transform: the first numbered segment
 * (`model.layers.3.mlp.up_proj` → 3), or the one after a layers_pattern entry.
 */
export function layerIndex(name: string, layersPattern: string | readonly string[] | null): number | null {
  const patterns = layersPattern === null ? [] : typeof layersPattern === 'string' ? [layersPattern] : layersPattern;
  const regexes =
    patterns.length === 0
      ? [mustCompile('.*?\\.[^.]*\\.(\\d+)\\.', (p) => `^${p}`)]
      : patterns.map((p) => mustCompile(`.*?\\.${p}\\.(\\d+)\\.`, (q) => `^${q}`));
  for (const re of regexes) {
    const m = re.exec(name);
    if (m !== null) return Number(m[1]);
  }
  return null;
}

export const escapeRegex = (text: string): string => text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
