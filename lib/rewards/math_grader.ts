// Math-answer equivalence as mathruler's `grade_answer` decides it (hiyouga/MathRuler grader.py and
// math_normalize.py, themselves from OpenAI prm800k and Hendrycks' MATH), which verl's geo3k reward
// calls. An answer is correct when (a) the MATH normalisation of both strings is equal, or (b) the
// prm800k normalisation is equal, or (c) element by element (tuples and intervals split) the
// difference is zero; fractions must then match exactly (unreduced ones are wrong), and an integer
// ground truth needs an integer answer. Step (c) is sympy's `simplify(a - b) == 0` in the source;
// here the difference is evaluated at sample points (math_expr.ts), and LaTeX goes to text through
// latex_text.ts instead of pylatexenc.
import { expressionsEqual } from './math_expr.js';
import { latexToText } from './latex_text.js';
import { pythonFloat, pythonRound } from './python.js';

/** mathruler `extract_boxed_content`: the last `\boxed{...}` (balanced braces), trimmed; the string 'None' when absent. */
export function extractBoxedContent(text: string): string {
  const start = text.lastIndexOf('\\boxed{');
  if (start === -1) return 'None';
  const content = text.slice(start + '\\boxed{'.length);
  let depth = 0;
  for (let i = 0; i < content.length; i++) {
    if (content[i] === '{') depth += 1;
    else if (content[i] === '}') depth -= 1;
    if (depth === -1) return content.slice(0, i).trim();
  }
  return 'None';
}

// ---- Hendrycks MATH normalisation (math_normalize.py) ----

class NormalizeFailure extends Error {}

/** `normalize_answer`: `\text{...}` unwrapped, then `_strip_string`; on a failure inside, the unwrapped answer. */
export function normalizeMathAnswer(answer: string): string {
  let s = answer.trim();
  const text = /^\\text\{([^\n]+?)\}$/.exec(s);
  if (text) s = text[1]!.trim();
  try {
    return stripString(s);
  } catch (error) {
    if (error instanceof NormalizeFailure) return s;
    throw error;
  }
}

function stripString(input: string): string {
  let s = input.replaceAll('\n', '').replaceAll('\\!', '').replaceAll('\\\\', '\\');
  s = s.replaceAll('tfrac', 'frac').replaceAll('dfrac', 'frac');
  s = s.replaceAll('\\left', '').replaceAll('\\right', '');
  s = s.replaceAll('^{\\circ}', '').replaceAll('^\\circ', '');
  s = s.replaceAll('\\$', '');
  s = removeRightUnits(s);
  s = s.replaceAll('\\%', '').replaceAll('%', '');
  s = s.replaceAll(' .', ' 0.').replaceAll('{.', '{0.');
  if (s.length === 0) return s;
  if (s[0] === '.') s = `0${s}`;
  const sides = s.split('=');
  if (sides.length === 2 && sides[0]!.length <= 2) s = sides[1]!; // "k = 3" -> "3"
  s = fixSqrt(s);
  s = s.replaceAll(' ', '');
  s = fixFracs(s);
  if (s === '0.5') s = '\\frac{1}{2}';
  return fixASlashB(s);
}

function removeRightUnits(s: string): string {
  if (!s.includes('\\text{ ')) return s;
  const parts = s.split('\\text{ ');
  if (parts.length !== 2) throw new NormalizeFailure('more than one unit');
  return parts[0]!;
}

// sqrt3 -> sqrt{3}
function fixSqrt(s: string): string {
  if (!s.includes('\\sqrt')) return s;
  const parts = s.split('\\sqrt');
  let out = parts[0]!;
  for (const part of parts.slice(1)) {
    if (part.length === 0) throw new NormalizeFailure('\\sqrt without argument');
    out += part[0] === '{' ? `\\sqrt${part}` : `\\sqrt{${part[0]}}${part.slice(1)}`;
  }
  return out;
}

// \frac12 -> \frac{1}{2}, \frac1{72} -> \frac{1}{72}
function fixFracs(s: string): string {
  const parts = s.split('\\frac');
  let out = parts[0]!;
  for (const part of parts.slice(1)) {
    out += '\\frac';
    if (part.length === 0) throw new NormalizeFailure('\\frac without argument');
    if (part[0] === '{') {
      out += part;
    } else {
      if (part.length < 2) return s;
      const [a, b] = [part[0]!, part[1]!];
      out += b !== '{' ? `{${a}}{${b}}${part.slice(2)}` : `{${a}}${b}${part.slice(2)}`;
    }
  }
  return out;
}

const CANONICAL_INT = /^-?(?:0|[1-9]\d*)$/;

// "3/4" -> "\frac{3}{4}" when both sides are integers written as Python would print them.
function fixASlashB(s: string): string {
  const parts = s.split('/');
  if (parts.length !== 2) return s;
  const [a, b] = parts as [string, string];
  if (!CANONICAL_INT.test(a) || !CANONICAL_INT.test(b) || a === '-0' || b === '-0') return s;
  return `\\frac{${a}}{${b}}`;
}

// ---- prm800k normalisation (grader.py `_normalize`) ----

const UNITS = [
  'degree',
  'cm',
  'centimeter',
  'meter',
  'mile',
  'second',
  'minute',
  'hour',
  'day',
  'week',
  'month',
  'year',
  'foot',
  'feet',
  'inch',
  'yard',
];

/** prm800k `_normalize`: units, `$`, `%`, words and LaTeX removed, spaces and braces dropped, lowercased. */
export function normalizeExpression(input: string): string {
  let s = input;
  const text = /^\\text\{([^\n]+?)\}$/.exec(s);
  if (text) s = text[1]!;
  s = s.replaceAll('\\%', '%').replaceAll('\\$', '$').replaceAll('$', '').replaceAll('%', '');
  s = s.replaceAll(' or ', ' , ').replaceAll(' and ', ' , ');
  s = s.replaceAll('million', '*10^6').replaceAll('billion', '*10^9').replaceAll('trillion', '*10^12');
  for (const unit of UNITS) s = s.replace(new RegExp(`${unit}(es)?(s)? *(\\^[0-9]+)?`, 'g'), '');
  s = s.replace(/\^ *\\circ/g, '');
  if (s.length > 0 && s[0] === '{' && s[s.length - 1] === '}') s = s.slice(1, -1);
  s = s.replace(/,\\! */g, '');
  const asFloat = pythonFloat(s);
  if (asFloat !== null && isNearInt(asFloat)) s = BigInt(pythonRound(asFloat)).toString();
  if (s.includes('\\')) s = parseLatex(s);
  s = s.replace(/- */g, '-');
  s = s.replace(/([0-9]) +([0-9])/g, '$1+$2'); // a mixed number: 7 3/4 -> 7+3/4
  s = s.replaceAll(' ', '').replaceAll('{', '').replaceAll('}', '').toLowerCase();
  if (strIsInt(s)) s = strToInt(s);
  return s;
}

function parseLatex(expr: string): string {
  let s = expr.replaceAll('\\tfrac', '\\frac').replaceAll('\\dfrac', '\\frac').replaceAll('\\frac', ' \\frac');
  s = latexToText(s);
  s = s.replaceAll('√', 'sqrt').replaceAll('π', 'pi').replaceAll('∞', 'inf').replaceAll('∪', 'U');
  return s.replaceAll('·', '*').replaceAll('×', '*').trim();
}

// Python's `abs(x - int(round(x))) <= 1e-7`, false where round raises (inf, nan).
function isNearInt(x: number): boolean {
  return Number.isFinite(x) && Math.abs(x - pythonRound(x)) <= 1e-7;
}

function stripFormattedCommas(expr: string): string {
  let s = expr;
  for (;;) {
    const next = s.replace(/(\d)(,)(\d\d\d)($|\D)/g, '$1$3$4');
    if (next === s) return s;
    s = next;
  }
}

function strIsInt(s: string): boolean {
  const x = pythonFloat(stripFormattedCommas(s));
  return x !== null && isNearInt(x);
}

// `int(float(x.replace(",", "")))`: truncation, as the source does.
function strToInt(s: string): string {
  const x = pythonFloat(s.replaceAll(',', ''));
  return x === null ? s : BigInt(Math.trunc(x)).toString();
}

// ---- equality ----

const TUPLE_CHARS = '()[]';

function splitTuple(expr: string): string[] {
  const s = stripFormattedCommas(expr);
  if (s.length === 0) return [];
  const inner = s.slice(1, -1);
  if (
    s.length > 2 &&
    TUPLE_CHARS.includes(s[0]!) &&
    TUPLE_CHARS.includes(s[s.length - 1]!) &&
    ![...TUPLE_CHARS].some((ch) => inner.includes(ch))
  ) {
    return inner.split(',').map((e) => e.trim());
  }
  return [s];
}

const isFrac = (expr: string): boolean => /^-?[0-9]+[^\n]?\/0*[1-9][0-9]*[^\n]?$/.test(expr);

// mathruler refuses to hand sympy text with more than two letters or towers of powers.
function shouldAllowEval(expr: string): boolean {
  const letters = new Set([...expr.replaceAll('sqrt', '').replaceAll('frac', '')].filter((ch) => /\p{L}/u.test(ch)));
  if (letters.size > 2) return false;
  if (expr.includes('^{') || expr.includes('^(')) return false;
  return !/\^[0-9]+\^/.test(expr) && !/\^[0-9][0-9]+/.test(expr);
}

function equalAsExpressions(truth: string, given: string): boolean {
  return shouldAllowEval(`(${truth})-(${given})`) && expressionsEqual(truth, given);
}

/** mathruler `grade_answer(given, truth)`. */
export function gradeAnswer(given: string | null, truth: string): boolean {
  if (given === null) return false;
  if (normalizeMathAnswer(truth) === normalizeMathAnswer(given)) return true;
  const t = normalizeExpression(truth);
  const g = normalizeExpression(given);
  if (t === g) return true;
  if (g.length === 0) return false;
  const truthElems = splitTuple(t);
  const givenElems = splitTuple(g);
  // A tuple needs the same brackets: (1,2) is not [1,2].
  if (truthElems.length > 1 && (t[0] !== g[0] || t[t.length - 1] !== g[g.length - 1])) return false;
  if (truthElems.length !== givenElems.length) return false;
  return truthElems.every((te, i) => {
    const ge = givenElems[i]!;
    if (isFrac(te) && isFrac(ge)) return te === ge; // unreduced fractions are not accepted
    if (strIsInt(te) !== strIsInt(ge)) return false; // an integer answer must be matched exactly
    return equalAsExpressions(te, ge);
  });
}
