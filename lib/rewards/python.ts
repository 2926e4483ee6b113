// The few Python built-ins whose exact behaviour the anchored rewards depend on.

// float(): surrounding whitespace, a sign, digits with single underscores between them, an optional
// fraction and exponent; or inf / infinity / nan in any case.
const DIGITS = String.raw`\d(?:_?\d)*`;
const DECIMAL = new RegExp(String.raw`^[+-]?(?:${DIGITS}(?:\.(?:${DIGITS})?)?|\.${DIGITS})(?:[eE][+-]?${DIGITS})?$`);
const SPECIAL = /^([+-]?)(inf|infinity|nan)$/i;

/** Python's `float(text)` for a str, or null where Python raises ValueError. */
export function pythonFloat(text: string): number | null {
  const s = text.trim();
  if (DECIMAL.test(s)) return Number(s.replaceAll('_', ''));
  const special = SPECIAL.exec(s);
  if (special === null) return null;
  if (special[2]!.toLowerCase() === 'nan') return Number.NaN;
  return special[1] === '-' ? Number.NEGATIVE_INFINITY : Number.POSITIVE_INFINITY;
}

/** Python 3's `round(x)`: to the nearest integer, exact halves to the even one. */
export function pythonRound(x: number): number {
  if (Math.abs(x % 1) === 0.5) return 2 * Math.round(x / 2);
  return Math.round(x);
}

/** Python's truthiness of a float: nonzero (NaN is truthy). */
export function truthy(x: number | null): x is number {
  return x !== null && x !== 0;
}
