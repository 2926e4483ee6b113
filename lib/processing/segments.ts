// A rendered conversation as segments, each tokenized on its own, and the labels rule.
//
// Labels (the token each position's loss reads; -100 = no loss) follow InternVL's
// preprocess_internvl2_5: an assistant turn `<|im_start|>assistant\n{answer}<|im_end|>\n` is
// tokenized as one piece; its header tokens (as many as the generation prompt alone has) and
// everything after the last EOS (the trailing `\n`) get -100, so the loss covers the answer and
// `<|im_end|>`. TRL's `{% generation %}` training templates also put the `\n` after `<|im_end|>`
// in the assistant mask; `labelAfterEos: true` gives that. Context (system, user, earlier turns of
// a prompt) gets -100; a raw completion string gets labels on all of its tokens. Tokenizing per
// segment is what InternVL does and equals whole-text tokenization except where an answer starts
// with whitespace that would merge with the header's newline.
import type { ChatTemplate, RenderOptions } from './chat_template.js';
import type { ChatMessage } from './messages.js';
import type { TextTokenizer } from './tokenizer.js';

export const IGNORE_INDEX = -100;

export type Segment =
  | { kind: 'context'; text: string }
  | { kind: 'completion'; text: string }
  /** An assistant turn starting with `header` (the generation prompt). */
  | { kind: 'turn'; text: string; header: string };

export interface Encoded {
  ids: number[];
  labels: number[];
}

export interface LabelOptions {
  /** Also label the tokens after the turn's last EOS (TRL's training templates). Default false. */
  labelAfterEos?: boolean;
}

/** Token ids and labels of the segments, concatenated; a BOS first when the tokenizer adds one. */
export function tokenizeSegments(
  tokenizer: TextTokenizer,
  segments: readonly Segment[],
  options: LabelOptions = {},
): Encoded {
  const ids: number[] = [];
  const labels: number[] = [];
  if (tokenizer.addBosToken && tokenizer.bosTokenId !== null) {
    ids.push(tokenizer.bosTokenId);
    labels.push(IGNORE_INDEX);
  }
  for (const segment of segments) {
    const piece = tokenizer.encode(segment.text, { addSpecialTokens: false });
    ids.push(...piece);
    labels.push(...segmentLabels(tokenizer, segment, piece, options));
  }
  return { ids, labels };
}

function segmentLabels(tokenizer: TextTokenizer, segment: Segment, piece: number[], options: LabelOptions): number[] {
  if (segment.kind === 'context') return piece.map(() => IGNORE_INDEX);
  if (segment.kind === 'completion') return [...piece];
  if (!segment.text.startsWith(segment.header)) {
    throw new Error(
      `assistant turn ${JSON.stringify(segment.text.slice(0, 40))} does not start with its header ${JSON.stringify(segment.header)}`,
    );
  }
  const headerLength = tokenizer.encode(segment.header, { addSpecialTokens: false }).length;
  let end = piece.length;
  const eos = tokenizer.eosTokenId;
  if (!options.labelAfterEos && eos !== null) {
    const last = piece.lastIndexOf(eos);
    if (last >= headerLength) end = last + 1;
  }
  return piece.map((id, i) => (i >= headerLength && i < end ? id : IGNORE_INDEX));
}

export interface TemplateSegmentOptions {
  /** Assistant messages from this index on are turns with labels; earlier ones are context. */
  labelFrom: number;
  addGenerationPrompt: boolean;
  render?: Omit<RenderOptions, 'addGenerationPrompt'>;
}

/**
 * Splits a conversation rendered by a chat template into context and assistant-turn segments.
 * Turn k is located by rendering the messages before it without and with the generation prompt
 * and the messages through it: each rendering must extend the previous one, as it does for
 * templates that render messages independently (Qwen-VL, InternVL).
 */
export function templateSegments(
  template: ChatTemplate,
  messages: readonly ChatMessage[],
  options: TemplateSegmentOptions,
): Segment[] {
  const render = (upTo: number, addGenerationPrompt: boolean): string =>
    template.render(messages.slice(0, upTo), { ...options.render, addGenerationPrompt });
  const full = render(messages.length, options.addGenerationPrompt);
  const segments: Segment[] = [];
  let position = 0;
  for (let k = options.labelFrom; k < messages.length; k++) {
    if (messages[k]!.role !== 'assistant') continue;
    const before = render(k, false);
    const prompt = render(k, true);
    const through = render(k + 1, false);
    if (
      before.length < position ||
      !prompt.startsWith(before) ||
      !through.startsWith(prompt) ||
      !full.startsWith(through)
    ) {
      throw new Error(
        `the chat template of ${template.origin} does not render message ${k} (assistant) as an extension of ` +
          'the messages before it, so its tokens cannot be located for the labels',
      );
    }
    if (before.length > position) segments.push({ kind: 'context', text: full.slice(position, before.length) });
    segments.push({
      kind: 'turn',
      text: full.slice(before.length, through.length),
      header: prompt.slice(before.length),
    });
    position = through.length;
  }
  if (position < full.length) segments.push({ kind: 'context', text: full.slice(position) });
  return segments;
}
