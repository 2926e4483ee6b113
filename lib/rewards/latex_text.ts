// The part of pylatexenc 2.10's `latex2text` that mathruler's `_parse_latex` relies on, for math
// answers: `\frac{a}{b}` -> `a/b` (no parentheses, as pylatexenc writes it), `\sqrt[n]{x}` -> `√(x)`
// (the degree dropped, as its spec `√(%(2)s)` does), symbol macros to their Unicode characters,
// font and text macros to their argument, groups to their contents; other macros vanish and their
// `{...}` arguments are kept as plain groups.

const SYMBOLS: Readonly<Record<string, string>> = {
  pi: 'π',
  infty: '∞',
  cup: '∪',
  cap: '∩',
  cdot: '·',
  times: '×',
  div: '÷',
  pm: '±',
  mp: '∓',
  circ: '∘',
  neq: '≠',
  ne: '≠',
  le: '≤',
  leq: '≤',
  ge: '≥',
  geq: '≥',
  sin: 'sin',
  cos: 'cos',
  tan: 'tan',
  log: 'log',
  ln: 'ln',
  exp: 'exp',
  alpha: 'α',
  beta: 'β',
  gamma: 'γ',
  delta: 'δ',
  theta: 'θ',
  lambda: 'λ',
  mu: 'μ',
  sigma: 'σ',
  phi: 'φ',
  omega: 'ω',
};
const ONE_ARGUMENT = new Set([
  'text',
  'textrm',
  'textbf',
  'textit',
  'mathrm',
  'mathbf',
  'mathit',
  'mathsf',
  'mbox',
  'operatorname',
  'overline',
  'underline',
  'boxed',
]);
const FRACTIONS = new Set(['frac', 'nicefrac', 'textfrac', 'dfrac', 'tfrac']);

export interface LatexToTextOptions {
  /** Write `\frac{a}{b}` as `(a)/(b)`, keeping its meaning (pylatexenc writes `a/b`). */
  parenthesizeFractions?: boolean;
}

class Reader {
  at = 0;
  constructor(
    readonly s: string,
    readonly options: LatexToTextOptions,
  ) {}

  // One `{...}` group's text, or the next single character / macro when there is no brace.
  argument(): string {
    this.skipSpaces();
    if (this.s[this.at] === '{') return this.group();
    if (this.s[this.at] === '\\') return this.macro();
    const ch = this.s[this.at] ?? '';
    this.at += ch.length;
    return ch;
  }

  group(): string {
    this.at += 1; // '{'
    let out = '';
    while (this.at < this.s.length && this.s[this.at] !== '}') out += this.piece();
    this.at += 1; // '}'
    return out;
  }

  piece(): string {
    const ch = this.s[this.at]!;
    if (ch === '{') return this.group();
    if (ch === '\\') return this.macro();
    this.at += 1;
    return ch === '~' ? ' ' : ch;
  }

  macro(): string {
    const name = /^\\([a-zA-Z]+|.?)/.exec(this.s.slice(this.at))![1]!;
    this.at += 1 + name.length;
    if (FRACTIONS.has(name)) {
      const [num, den] = [this.argument(), this.argument()];
      return this.options.parenthesizeFractions ? `(${num})/(${den})` : `${num}/${den}`;
    }
    if (name === 'sqrt') {
      this.optional();
      return `√(${this.argument()})`;
    }
    if (ONE_ARGUMENT.has(name)) return this.argument();
    const symbol = SYMBOLS[name];
    if (symbol !== undefined) return symbol;
    if (/^[%$&#_{}]$/.test(name)) return name;
    if (name === ',' || name === ';' || name === ' ' || name === ':') return ' ';
    return '';
  }

  optional(): void {
    this.skipSpaces();
    if (this.s[this.at] !== '[') return;
    const end = this.s.indexOf(']', this.at);
    this.at = end === -1 ? this.s.length : end + 1;
  }

  skipSpaces(): void {
    while (this.s[this.at] === ' ') this.at += 1;
  }
}

/** LaTeX source to plain text, as `latex2text.LatexNodes2Text().latex_to_text` does for math answers. */
export function latexToText(latex: string, options: LatexToTextOptions = {}): string {
  const reader = new Reader(latex, options);
  let out = '';
  while (reader.at < latex.length) {
    if (latex[reader.at] === '}') {
      reader.at += 1; // an unbalanced brace is dropped
      continue;
    }
    out += reader.piece();
  }
  return out;
}
