// MMPR's correctness prompts (InternVL `tools/reasoning_data_pipeline/utils/constants.py`, used by
// `mmpr_data_pipeline_correctness.py`): a trailing short-answer instruction is cut from the
// question, the question is put into the prompt version's instruction, and a question with one
// image gets its `<image>` moved to the front (one with none gets one there).
import type { PromptVersion } from '../rewards/mmpr.js';

export const IMAGE_PLACEHOLDER = '<image>';

export const R1_SYSTEM_PROMPT = [
  'You are an AI assistant that rigorously follows this response protocol:',
  '',
  '1. First, conduct a detailed analysis of the question. Consider different angles, potential solutions, and reason through the problem step-by-step. Enclose this entire thinking process within <think> and </think> tags.',
  '',
  "2. After the thinking section, provide a clear, concise, and direct answer to the user's question. Separate the answer from the think section with a newline.",
  '',
  'Ensure that the thinking process is thorough but remains focused on the query. The final answer should be standalone and not reference the thinking section.',
].join('\n');

/** Each version's instruction; `{question}` is replaced by the question (str.replace, not format). */
export const MMPR_INSTRUCTIONS: Readonly<Record<PromptVersion, string>> = {
  en:
    'Your task is to answer the question below. ' +
    "Give step by step reasoning before you answer, and when you're ready to answer, " +
    'please use the format "Final answer: .."\n\nQuestion:\n\n{question}',
  en_v2:
    '{question}\n' +
    'Answer the preceding question. The last line of your response should follow this format: ' +
    "'Answer: \\boxed{$FINAL_ANSWER}' (without quotes), where 'FINAL_ANSWER' is your conclusion " +
    'based on the reasoning provided. If you are uncertain or the problem is too complex, make ' +
    'a reasoned guess based on the information provided. Avoid repeating steps indefinitely—' +
    'provide your best guess even if unsure. Think step by step logically, considering all ' +
    'relevant information before answering.',
  en_r1: `${R1_SYSTEM_PROMPT}\n{question}\nPlease answer the question and put the final answer within \\boxed{}.`,
  zh: '你的任务是回答以下问题。在回答之前，请逐步推理说明您的思路。当你准备好给出答案时，请使用以下格式："答案: ..."\n\n问题:\n\n{question}',
  zh_v2:
    '{question}\n' +
    '请回答上述问题。你的回答最后一行应遵循以下格式：' +
    '“答案：\\boxed{$FINAL_ANSWER}”（不包含引号），其中“FINAL_ANSWER”是你根据推理得出的最终结论。' +
    '如果你不确定答案或问题过于复杂，请基于已有信息做出有理有据的猜测。' +
    '避免无限重复推理步骤——即使不完全确定，也请给出你认为最合理的答案。' +
    '请一步一步进行逻辑思考，充分考虑所有相关信息后再作答。',
  zh_r1: `${R1_SYSTEM_PROMPT}\n{question}\n请详细回答这个问题并将最终答案用\\boxed{}包住。`,
};

/** Short-answer instructions cut from the end of a question before it is wrapped. */
export const VALID_INSTRUCTIONS: readonly string[] = [
  'Answer the question using a single word or phrase.',
  "Answer with the option's letter from the given choices directly.",
  'Please answer Yes or No.',
];

/** MMPR's rule: a prompt file whose name contains `_zh_` is sampled with the zh twin of the version. */
export function versionForFile(version: PromptVersion, file: string): PromptVersion {
  return file.includes('_zh_') ? (version.replace('en', 'zh') as PromptVersion) : version;
}

/** The question as the correctness pipeline sends it (and writes it as `question`). */
export function wrapQuestion(question: string, version: PromptVersion, hasImage: boolean): string {
  let q = question;
  for (const instruction of VALID_INSTRUCTIONS) {
    if (q.endsWith(instruction)) q = q.slice(0, -instruction.length).trim();
  }
  // Python's str.replace: every occurrence, and no `$` patterns in the replacement.
  let wrapped = MMPR_INSTRUCTIONS[version].replaceAll('{question}', () => q);
  if (!hasImage) return wrapped;
  const count = (s: string) => s.split(IMAGE_PLACEHOLDER).length - 1;
  if (count(wrapped) === 1) {
    wrapped = wrapped.split(`${IMAGE_PLACEHOLDER}\n`).join('').split(IMAGE_PLACEHOLDER).join('');
  }
  return count(wrapped) === 0 ? `${IMAGE_PLACEHOLDER}\n${wrapped}` : wrapped;
}
