// Chats and images for tests that run the processors end to end (collators, seams).
import type { processing } from '../../lib/index.js';
import { rng } from '../torch/gradcheck.js';

/** An RGB image of uniform random pixels. */
export function randomImage(width: number, height: number, seed: number): processing.image.RgbImage {
  const next = rng(seed);
  return { width, height, data: Uint8Array.from({ length: width * height * 3 }, () => Math.floor(next() * 256)) };
}

/** A user turn: `images` image placeholders, then the text. */
export const userTurn = (text: string, images: number): processing.ChatMessage[] => [
  { role: 'user', content: [...[...Array(images)].map(() => ({ type: 'image' as const })), { type: 'text', text }] },
];

export const assistantTurn = (text: string): processing.ChatMessage[] => [{ role: 'assistant', content: text }];
