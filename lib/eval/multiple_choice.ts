// The option letter a free-text answer picks, for multiple-choice benchmarks (ScienceQA, MMBench,
// MMMU, ...) prompted with "Answer with the option's letter from the given choices directly.".
// Models answer "B", "(B)", "B. a cat", "The answer is B." or "<answer>B</answer>"; the rules below
// accept those and refuse to guess where a capital letter is only an article ("A cat sits").

const LETTERS = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ';

/** The answer's span worth reading: the last `<answer>` or `\boxed{}` content when present, trimmed. */
function answerSpan(text: string): string {
  const tagged = [...text.matchAll(/<answer>([\s\S]*?)<\/answer>/g)].at(-1);
  if (tagged) return tagged[1]!.trim();
  const boxed = [...text.matchAll(/\\boxed\{([A-Za-z])\}/g)].at(-1);
  return boxed ? boxed[1]! : text.trim();
}

/**
 * The letter `text` picks among the first `options` letters (default 26), or null:
 * 1. the whole answer is a letter, optionally in parentheses and followed by `.`, `:` or `)`;
 * 2. it starts with such a letter followed by `.`, `:` or `)` ("B. a cat", "(B) a cat");
 * 3. the last "answer is B" / "answer: (B)" / "option B" / "choice B" phrase;
 * 4. else exactly one distinct letter written as an option, "(B)" or "B." / "B)" / "B:" anywhere.
 */
export function extractChoiceLetter(text: string, options = 26): string | null {
  const valid = LETTERS.slice(0, options);
  const pick = (letter: string | undefined) => (letter !== undefined && valid.includes(letter) ? letter : null);
  const span = answerSpan(text);
  const whole = /^\(?([A-Z])\)?[.:)]?$/.exec(span);
  if (whole) return pick(whole[1]);
  const leading = /^\(?([A-Z])(?:\)|[.:])/.exec(span);
  if (leading) return pick(leading[1]);
  const phrase = [...span.matchAll(/\b(?:[Aa]nswer(?: is)?|[Oo]ption|[Cc]hoice)\s*:?\s*\(?([A-Z])\b/g)].at(-1);
  if (phrase) return pick(phrase[1]);
  const marked = new Set([...span.matchAll(/\(([A-Z])\)|(?<![A-Za-z])([A-Z])[.:)](?!\w)/g)].map((m) => m[1] ?? m[2]!));
  return marked.size === 1 ? pick([...marked][0]) : null;
}

/**
 * 1 when the letter the prediction picks is the answer's letter ("B", or "B. text" read by the
 * same rules), else 0; an answer with no letter is a configuration error naming it.
 */
export function multipleChoiceScore(prediction: string, answers: readonly string[], options = 26): number {
  const truth = answers.map((a) => {
    const letter = extractChoiceLetter(a, options);
    if (letter === null) throw new TypeError(`multiple_choice: the answer ${JSON.stringify(a)} names no option letter`);
    return letter;
  });
  const picked = extractChoiceLetter(prediction, options);
  return picked !== null && truth.includes(picked) ? 1 : 0;
}
