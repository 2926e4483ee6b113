// Plain text rewards: exact match against the ground truth, and format checks by regular expression
// (TRL's `think_format_reward` and ViRFT's / verl's format rewards are instances of the latter).
import { extractBoxedContent } from './math_grader.js';
import { groundTruthOf, perRow, type RewardFunction } from './types.js';

export interface ExactMatchOptions {
  /**
   * What of the completion to compare: 'all' (default), 'answer' (the first `<answer>...</answer>`,
   * else all) or 'boxed' (the last `\boxed{}`, else no answer).
   */
  extract?: 'all' | 'answer' | 'boxed';
  /** Compare case-insensitively. */
  ignoreCase?: boolean;
}

/** The part of a completion an exact match compares, trimmed; null when a requested box is absent. */
export function extractForMatch(text: string, extract: ExactMatchOptions['extract'] = 'all'): string | null {
  if (extract === 'answer') {
    const m = /<answer>([\s\S]*?)<\/answer>/.exec(text);
    return (m ? m[1]! : text).trim();
  }
  if (extract === 'boxed') {
    return text.includes('\\boxed{') ? extractBoxedContent(text) : null;
  }
  return text.trim();
}

/** 1 when the extracted completion equals the trimmed ground truth, else 0. */
export function exactMatch(options: ExactMatchOptions = {}): RewardFunction {
  const fold = (s: string) => (options.ignoreCase ? s.toLowerCase() : s);
  return perRow((content, row) => {
    const answer = extractForMatch(content, options.extract);
    const truth = groundTruthOf(row);
    if (answer === null || truth === undefined || truth === null) return 0;
    return fold(answer) === fold(String(truth).trim()) ? 1 : 0;
  });
}

export interface RegexFormatOptions {
  /** Require the whole completion to match (default, Python's `re.fullmatch`) or any part (`re.search`). */
  fullMatch?: boolean;
  /** Flags when `pattern` is a string ('s' for DOTALL, 'i', 'm', 'u'); a RegExp keeps its own. */
  flags?: string;
}

/** 1 when the completion matches `pattern`, else 0 (g / y flags are dropped: a test must not keep state). */
export function regexFormat(pattern: RegExp | string, options: RegexFormatOptions = {}): RewardFunction {
  const source = typeof pattern === 'string' ? pattern : pattern.source;
  const flags = (typeof pattern === 'string' ? (options.flags ?? '') : pattern.flags).replace(/[gy]/g, '');
  const regex = new RegExp(options.fullMatch === false ? source : `^(?:${source})$`, flags);
  return perRow((content) => (regex.test(content) ? 1 : 0));
}
