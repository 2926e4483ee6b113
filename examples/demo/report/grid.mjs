// The grid of held-out examples: each image with its question, the ground truth, and the model's
// answer before training and after each stage, marked right (green, ✓) or wrong (red, ✗) so that it
// reads without colour too.
import { escapeHtml } from './escape.mjs';
import { stageLabel } from './table.mjs';

/**
 * Whether a model's answer matches the ground truth as the demo's evaluation scores it (evaluate.mjs
 * `scoreAnswers`): equal once trimmed, case included ('Orange' does not answer 'orange').
 */
export function isRight(truth, answer) {
  return truth.trim() === answer.trim();
}

/** A relative file path as a URL path: each segment percent-encoded, backslashes as slashes. */
export function imageUrl(relativePath) {
  return relativePath.split(/[\\/]/).map(encodeURIComponent).join('/');
}

/** The examples' grid as an HTML fragment (empty string without examples). */
export function exampleGrid(summary) {
  if (summary.examples.length === 0) return '';
  const cards = summary.examples.map((example) => exampleCard(example, summary.stages));
  return `<div class="grid">\n${cards.join('\n')}\n</div>`;
}

function exampleCard(example, stages) {
  const answers = [
    answerLine('before', example.answer, example.before),
    ...stages.map((stage) => answerLine(`after ${stageLabel(stage)}`, example.answer, example.after[stage.name])),
  ];
  return [
    '<figure class="example">',
    `<img src="${escapeHtml(imageUrl(example.image))}" alt="${escapeHtml(example.question)}">`,
    '<figcaption>',
    `<p class="question">${escapeHtml(example.question)}</p>`,
    `<p class="truth">truth: <b>${escapeHtml(example.answer)}</b></p>`,
    `<ul>${answers.join('')}</ul>`,
    '</figcaption>',
    '</figure>',
  ].join('\n');
}

function answerLine(label, truth, answer) {
  const right = isRight(truth, answer);
  const mark = right ? '✓' : '✗';
  return `<li class="${right ? 'right' : 'wrong'}">${escapeHtml(label)}: <b>${escapeHtml(answer)}</b> ${mark}</li>`;
}
