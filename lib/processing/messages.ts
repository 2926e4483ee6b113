// Chat messages as transformers' chat templates take them: a role and either a string or a list
// of typed parts ({type:'text', text}, {type:'image'}). Image parts are placeholders only; the
// pixels travel separately, in prompt order.
import { z } from 'zod';
import { parseConfig } from '../util/config_error.js';

export type ContentPart = { type: 'text'; text: string } | { type: 'image' } | { type: 'video' };

export interface ChatMessage {
  role: string;
  content: string | ContentPart[];
}

// Extra keys (an `image` URL, `image_url`) are dropped: templates only test a part's type.
const Part = z.union([
  z
    .object({ type: z.literal('text'), text: z.string() })
    .transform((p): ContentPart => ({ type: 'text', text: p.text })),
  z
    .object({ type: z.enum(['image', 'image_url']) })
    .loose()
    .transform((): ContentPart => ({ type: 'image' })),
  z
    .object({ type: z.literal('video') })
    .loose()
    .transform((): ContentPart => ({ type: 'video' })),
]);

const Message = z.object({ role: z.string().min(1), content: z.union([z.string(), z.array(Part)]) });

/** Validates a conversation; `what` names the argument in the error. */
export function parseMessages(value: unknown, what: string): ChatMessage[] {
  return parseConfig(z.array(Message), value, 'chat messages', { root: what });
}
