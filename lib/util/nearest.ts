// The nearest valid name for a misspelt one ("unknown key 'learning_rat' (did you mean 'learning_rate'?)").
// Damerau-Levenshtein distance (optimal string alignment: a swap of two neighbours costs 1, as in
// "lerning" / "learning"), with a cut-off that grows with the name's length so that short names are
// not "corrected" into unrelated ones.

/** Edit distance counting insertions, deletions, substitutions and swaps of adjacent characters. */
export function editDistance(a: string, b: string): number {
  const rows = a.length + 1;
  const cols = b.length + 1;
  // Three rolling rows: a swap looks two rows back.
  let twoBack = new Array<number>(cols).fill(0);
  let prev = Array.from({ length: cols }, (_, j) => j);
  for (let i = 1; i < rows; i++) {
    const cur = new Array<number>(cols).fill(0);
    cur[0] = i;
    for (let j = 1; j < cols; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let d = Math.min(prev[j]! + 1, cur[j - 1]! + 1, prev[j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) d = Math.min(d, twoBack[j - 2]! + 1);
      cur[j] = d;
    }
    twoBack = prev;
    prev = cur;
  }
  return prev[cols - 1]!;
}

/**
 * The candidate closest to `name`, or undefined when none is close: at most max(1, ⌊len/3⌋) edits
 * (case-insensitive), or a candidate that `name` is a prefix or suffix of (`rat` → `learning_rate`
 * is not offered, `learning` → `learning_rate` is). Ties keep the first candidate given.
 */
export function nearestName(name: string, candidates: Iterable<string>): string | undefined {
  const list = [...candidates];
  const lower = name.toLowerCase();
  const limit = Math.max(1, Math.floor(name.length / 3));
  let best: string | undefined;
  let bestDistance = Number.POSITIVE_INFINITY;
  for (const candidate of list) {
    const d = editDistance(lower, candidate.toLowerCase());
    if (d < bestDistance) {
      best = candidate;
      bestDistance = d;
    }
  }
  if (best !== undefined && bestDistance <= limit) return best;
  if (lower.length >= 4) {
    for (const candidate of list) {
      const c = candidate.toLowerCase();
      if (c.startsWith(lower) || c.endsWith(lower)) return candidate;
    }
  }
  return undefined;
}

/** " (did you mean 'x'?)" or '' — the tail of an unknown-name message. */
export function didYouMean(name: string, candidates: Iterable<string>): string {
  const near = nearestName(name, candidates);
  return near === undefined ? '' : ` (did you mean '${near}'?)`;
}
