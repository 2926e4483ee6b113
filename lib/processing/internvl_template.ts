// InternVL's built-in conversation template `internvl2_5` (remote-code checkpoints, model_type
// "internvl_chat"), as its chat() and preprocess_internvl2_5 build prompts:
//   <|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n{q}<|im_end|>\n<|im_start|>assistant\n{a}<|im_end|>\n
// with a default Chinese system message. Images are `<image>` in the text.
import type { ChatMessage } from './messages.js';
import type { ConversationRenderer } from './sample.js';
import type { Segment } from './segments.js';

/** internvl2_5's default system message (conversation.py). */
export const INTERNVL2_5_SYSTEM_MESSAGE =
  '你是书生·万象，英文名是InternVL，是由上海人工智能实验室、清华大学及多家合作单位联合开发的多模态大语言模型。';

export const IMAGE_PLACEHOLDER = '<image>';
export const ASSISTANT_HEADER = '<|im_start|>assistant\n';

export class InternVL25Template implements ConversationRenderer {
  /** @param systemMessage used unless the conversation starts with a system message */
  constructor(readonly systemMessage: string = INTERNVL2_5_SYSTEM_MESSAGE) {}

  /** The prompt text, as chat() builds it. */
  render(messages: readonly ChatMessage[], options: { addGenerationPrompt?: boolean } = {}): string {
    const segments = this.segments(messages, {
      labelFrom: messages.length,
      addGenerationPrompt: options.addGenerationPrompt ?? false,
    });
    return segments.map((s) => s.text).join('');
  }

  /** One segment per message (InternVL tokenizes them separately); assistant turns from labelFrom are labelled. */
  segments(messages: readonly ChatMessage[], options: { labelFrom: number; addGenerationPrompt: boolean }): Segment[] {
    const hasSystem = messages[0]?.role === 'system';
    const system = hasSystem ? messageText(messages[0]!, 0) : this.systemMessage;
    const segments: Segment[] = [{ kind: 'context', text: `<|im_start|>system\n${system}<|im_end|>\n` }];
    messages.forEach((message, k) => {
      if (k === 0 && hasSystem) return;
      if (message.role !== 'user' && message.role !== 'assistant') {
        throw new Error(
          `messages[${k}]: role '${message.role}' is not supported by the internvl2_5 template (system first, then user/assistant)`,
        );
      }
      const text = `<|im_start|>${message.role}\n${messageText(message, k)}<|im_end|>\n`;
      segments.push(
        message.role === 'assistant' && k >= options.labelFrom
          ? { kind: 'turn', text, header: ASSISTANT_HEADER }
          : { kind: 'context', text },
      );
    });
    if (options.addGenerationPrompt) segments.push({ kind: 'context', text: ASSISTANT_HEADER });
    return segments;
  }
}

function messageText(message: ChatMessage, index: number): string {
  if (typeof message.content === 'string') return message.content;
  return message.content
    .map((part) => {
      if (part.type === 'text') return part.text;
      if (part.type === 'image') return `${IMAGE_PLACEHOLDER}\n`;
      throw new Error(`messages[${index}]: video parts are not supported`);
    })
    .join('');
}

/**
 * Messages whose image placeholders read as InternVL's chat() writes them: image parts become
 * `<image>\n` (one image) or `Image-k: <image>\n` (several, numbered across the conversation);
 * when no message has an image at all, the placeholders go before the first user message's text.
 */
export function withImagePlaceholders(messages: readonly ChatMessage[], images: number): ChatMessage[] {
  let k = 0;
  const placeholder = (): string => (images > 1 ? `Image-${++k}: ${IMAGE_PLACEHOLDER}\n` : `${IMAGE_PLACEHOLDER}\n`);
  const text = (m: ChatMessage): string => {
    if (typeof m.content === 'string') return m.content;
    return m.content
      .map((p) => (p.type === 'text' ? p.text : p.type === 'image' ? placeholder() : unsupportedVideo()))
      .join('');
  };
  const out = messages.map((m): ChatMessage => ({ role: m.role, content: text(m) }));
  if (images === 0 || out.some((m) => (m.content as string).includes(IMAGE_PLACEHOLDER))) return out;
  const first = out.findIndex((m) => m.role === 'user');
  if (first < 0) throw new Error(`${images} image(s) given but the conversation has no user message to put them in`);
  const prefix = Array.from({ length: images }, placeholder).join('');
  out[first] = { role: 'user', content: prefix + (out[first]!.content as string) };
  return out;
}

function unsupportedVideo(): never {
  throw new Error('video parts are not supported');
}
