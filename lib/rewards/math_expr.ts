// A small arithmetic parser and evaluator standing in for mathruler's sympy step
// (`sympy_parser.parse_expr` with implicit multiplication, then `simplify(a - b) == 0`). Instead of
// simplifying symbolically, two expressions are equal when their difference is ~0 at several points
// (each letter a variable, as sympy makes it a Symbol). Grammar, as Python with `^` read as `**`:
//   sum := product (('+'|'-') product)*     product := unary (('*'|'/')? unary)*   (no operator: implicit *)
//   unary := ('+'|'-') unary | power        power := postfix ('**' unary)?          postfix := atom '!'*
//   atom := number | name | name atom (implicit application: sqrt2) | name '(' sum ')' | '(' sum ')' | '[' sum ']'

type Node = (vars: ReadonlyMap<string, number>) => number;

const FUNCTIONS: Readonly<Record<string, (x: number) => number>> = {
  sqrt: Math.sqrt,
  sin: Math.sin,
  cos: Math.cos,
  tan: Math.tan,
  log: Math.log,
  ln: Math.log,
  exp: Math.exp,
  abs: Math.abs,
};
const CONSTANTS: Readonly<Record<string, number>> = { pi: Math.PI };
// Longest first, so that `sqrt` is read before a one-letter `s`.
const NAMES = [...Object.keys(FUNCTIONS), ...Object.keys(CONSTANTS)].sort((a, b) => b.length - a.length);

type Token = { kind: 'num'; value: number } | { kind: 'name'; value: string } | { kind: 'op'; value: string };

function tokenize(text: string): Token[] | null {
  const tokens: Token[] = [];
  let i = 0;
  while (i < text.length) {
    const rest = text.slice(i);
    const space = /^\s+/.exec(rest);
    const number = /^(?:\d+\.?\d*|\.\d+)/.exec(rest);
    if (space) {
      i += space[0].length;
    } else if (number) {
      tokens.push({ kind: 'num', value: Number(number[0]) });
      i += number[0].length;
    } else if (/^[a-z]/i.test(rest)) {
      // A run of letters is known names and single-letter symbols (sympy's split_symbols).
      const name = NAMES.find((n) => rest.startsWith(n)) ?? rest[0]!;
      tokens.push({ kind: 'name', value: name });
      i += name.length;
    } else if (rest.startsWith('**')) {
      tokens.push({ kind: 'op', value: '**' });
      i += 2;
    } else if ('+-*/^()[]!'.includes(rest[0]!)) {
      tokens.push({ kind: 'op', value: rest[0] === '^' ? '**' : rest[0]! });
      i += 1;
    } else {
      return null;
    }
  }
  return tokens;
}

class Parser {
  private at = 0;
  readonly symbols = new Set<string>();

  constructor(private readonly tokens: readonly Token[]) {}

  parseAll(): Node {
    const node = this.sum();
    if (this.at !== this.tokens.length) throw new SyntaxError('trailing input');
    return node;
  }

  private peek(): Token | undefined {
    return this.tokens[this.at];
  }

  private isOp(value: string): boolean {
    const t = this.peek();
    return t?.kind === 'op' && t.value === value;
  }

  private sum(): Node {
    let left = this.product();
    while (this.isOp('+') || this.isOp('-')) {
      const minus = this.isOp('-');
      this.at += 1;
      const l = left;
      const r = this.product();
      left = minus ? (v) => l(v) - r(v) : (v) => l(v) + r(v);
    }
    return left;
  }

  private product(): Node {
    let left = this.unary();
    for (;;) {
      let divide = false;
      if (this.isOp('*') || this.isOp('/')) {
        divide = this.isOp('/');
        this.at += 1;
      } else if (!this.startsAtom()) {
        return left;
      }
      const l = left;
      const r = this.unary();
      left = divide ? (v) => l(v) / r(v) : (v) => l(v) * r(v);
    }
  }

  private startsAtom(): boolean {
    const t = this.peek();
    return t !== undefined && (t.kind !== 'op' || t.value === '(' || t.value === '[');
  }

  private unary(): Node {
    if (this.isOp('-') || this.isOp('+')) {
      const minus = this.isOp('-');
      this.at += 1;
      const inner = this.unary();
      return minus ? (v) => -inner(v) : inner;
    }
    return this.power();
  }

  private power(): Node {
    const base = this.postfix();
    if (!this.isOp('**')) return base;
    this.at += 1;
    const exponent = this.unary();
    return (v) => base(v) ** exponent(v);
  }

  private postfix(): Node {
    let node = this.atom();
    while (this.isOp('!')) {
      this.at += 1;
      const inner = node;
      node = (v) => factorial(inner(v));
    }
    return node;
  }

  private atom(): Node {
    const t = this.peek();
    if (t === undefined) throw new SyntaxError('unexpected end');
    this.at += 1;
    if (t.kind === 'num') return () => t.value;
    if (t.kind === 'op') {
      const close = t.value === '(' ? ')' : t.value === '[' ? ']' : null;
      if (close === null) throw new SyntaxError(`unexpected ${t.value}`);
      const inner = this.sum();
      if (!this.isOp(close)) throw new SyntaxError(`expected ${close}`);
      this.at += 1;
      return inner;
    }
    const fn = FUNCTIONS[t.value];
    if (fn !== undefined) {
      // sqrt(2) takes its parenthesis only (sin(x)^2 squares the sine); applied implicitly, sqrt2.
      const arg = this.isOp('(') ? this.atom() : this.power();
      return (v) => fn(arg(v));
    }
    const constant = CONSTANTS[t.value];
    if (constant !== undefined) return () => constant;
    this.symbols.add(t.value);
    const name = t.value;
    return (v) => v.get(name)!;
  }
}

function factorial(n: number): number {
  if (!Number.isInteger(n) || n < 0) return Number.NaN;
  let out = 1;
  for (let k = 2; k <= n; k++) out *= k;
  return out;
}

/** Parses `text`; null when it is not an expression of this grammar (sympy would raise). */
export function parseExpression(text: string): { evaluate: Node; symbols: string[] } | null {
  const tokens = tokenize(text);
  if (tokens === null || tokens.length === 0) return null;
  try {
    const parser = new Parser(tokens);
    const evaluate = parser.parseAll();
    return { evaluate, symbols: [...parser.symbols].sort() };
  } catch {
    return null;
  }
}

// Fixed, irregular sample points, so that results repeat and no simple identity holds by accident.
const SAMPLE_POINTS = [0.7319, 1.4173, 2.2361, 0.3183, 1.9093];

/**
 * Whether `a - b` is zero as an expression: zero at every sample point where both sides are finite
 * (relative tolerance 1e-12, about what float64 evaluation keeps), with at least one such point.
 */
export function expressionsEqual(a: string, b: string): boolean {
  const diff = parseExpression(`(${a})-(${b})`);
  const left = parseExpression(a);
  const right = parseExpression(b);
  if (diff === null || left === null || right === null) return false;
  let checked = 0;
  for (let p = 0; p < SAMPLE_POINTS.length; p++) {
    const vars = new Map(diff.symbols.map((s, k) => [s, SAMPLE_POINTS[(p + k) % SAMPLE_POINTS.length]! + k]));
    const l = left.evaluate(vars);
    const r = right.evaluate(vars);
    if (!Number.isFinite(l) || !Number.isFinite(r)) continue;
    if (Math.abs(l - r) > 1e-12 * Math.max(1, Math.abs(l), Math.abs(r))) return false;
    checked += 1;
    if (diff.symbols.length === 0) break;
  }
  return checked > 0;
}
