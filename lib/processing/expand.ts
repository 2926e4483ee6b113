// Placeholder expansion at the token level: each occurrence of an image placeholder token becomes
// as many copies as the image has embeddings. Equal to transformers' text-level replacement
// because the placeholder is an added token, which the tokenizer always splits on its own.
import { IGNORE_INDEX, type Encoded } from './segments.js';

export interface Placeholder {
  id: number;
  /** The token's text, for error messages. */
  token: string;
}

/**
 * Throws, naming `where`, unless `ids` hold exactly `images` placeholders. `renderedBy` names the
 * chat template file when the prompt is its rendering: a template that drops the image parts is
 * the usual cause, and the file is what to fix.
 */
export function checkPlaceholderCount(
  ids: readonly number[],
  placeholder: Placeholder,
  images: number,
  where: string,
  renderedBy?: string,
): void {
  const found = ids.reduce((n, id) => (id === placeholder.id ? n + 1 : n), 0);
  if (found !== images) {
    throw new Error(
      `${where}: the prompt has ${found} ${placeholder.token} placeholder(s) but ${images} image(s) were given` +
        renderedByNote(renderedBy),
    );
  }
}

/** " (the prompt as FILE rendered it)", or nothing for a prompt the caller wrote. */
export const renderedByNote = (renderedBy: string | undefined): string =>
  renderedBy === undefined ? '' : ` (the prompt as ${renderedBy} rendered it)`;

/** Replaces the i-th `placeholder` by `counts[i]` copies (labels -100: image positions carry no loss). */
export function expandPlaceholders(
  encoded: Encoded,
  placeholder: Placeholder,
  counts: readonly number[],
  where: string,
  renderedBy?: string,
): Encoded {
  checkPlaceholderCount(encoded.ids, placeholder, counts.length, where, renderedBy);
  const ids: number[] = [];
  const labels: number[] = [];
  let image = 0;
  encoded.ids.forEach((id, i) => {
    if (id !== placeholder.id) {
      ids.push(id);
      labels.push(encoded.labels[i]!);
      return;
    }
    for (let k = 0; k < counts[image]!; k++) {
      ids.push(id);
      labels.push(IGNORE_INDEX);
    }
    image++;
  });
  return { ids, labels };
}
