// Chat templates: a Qwen2-VL checkpoint whose chat_template.jinja is the real template broken as
// text, with a hostile fragment spliced in (range bombs, nested loops, string growth, recursion,
// deep nesting, attribute walks towards JS globals), or the fragment alone; rendered through
// processing.fromPretrained + applyChatTemplate / process under a 1 s limit. A clean error names
// the template file; a render that shows a JS function's source or a global is a finding.
import fs from 'node:fs';
import path from 'node:path';
import { processing } from '../../../dist/index.js';
import { mutateText } from '../rng.mjs';
import { checkpointCopy, sampleOf } from './checkpoint_dir.mjs';

const N = ['3', '1000', '1000000', '10000000', '1000000000', '-5', "'x'", '2.5', 'none', '10**9'];
const FRAGMENTS = [
  (rng) => `{% for i in range(${rng.pick(N)}) %}{{ i }}{% endfor %}`,
  (rng) => `{% for i in range(${rng.pick(N)}) %}{% endfor %}x`,
  (rng) => `{% for i in range(${rng.pick(N)}) %}{% for j in range(${rng.pick(N)}) %}{% endfor %}{% endfor %}`,
  (rng) => `{{ 'ab' * ${rng.pick(N)} }}`,
  (rng) =>
    `{% set s = namespace(t='ab') %}{% for i in range(${rng.between(1, 40)}) %}{% set s.t = s.t ~ s.t %}{% endfor %}{{ s.t | length }}`,
  () => '{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}',
  (rng) => `{{ ${'('.repeat(rng.pick([10, 1000, 20000]))}1${')'.repeat(rng.pick([10, 1000, 20000]))} }}`,
  (rng) => `${'{% if true %}'.repeat(rng.pick([10, 3000]))}x${'{% endif %}'.repeat(rng.pick([10, 3000]))}`,
  (rng) =>
    `{{ ${rng.pick(['messages', "''", 'range', 'raise_exception', 'namespace', '[]', '{}'])}${rng.pick([
      '.constructor',
      '.constructor.constructor',
      ".constructor.constructor('return process')()",
      '.__proto__',
      '.__class__.__mro__',
      '.prototype',
      '.toString',
    ])} }}`,
  () => "{{ raise_exception('refused by the template') }}",
  (rng) => `{{ messages[${rng.pick(['99', '-99', "'x'", 'none'])}].content }}`,
  (rng) => `{{ messages | tojson(indent=${rng.pick(['2', '1000000', '-1', "'x'"])}) }}`,
  (rng) => `{{ 'a'.${rng.pick(['center', 'ljust', 'rjust', 'zfill'])}(${rng.pick(N)}) }}`,
  () => '{% for m in messages %}{{ m.content | map(attribute="type") | join(",") }}{% endfor %}',
  () => '{% for %}',
  () => '{{ unclosed',
  () => '{% endfor %}',
];
// Signs a render reached host objects: a function's source text, or process / globalThis members.
const LEAK = /\[native code]|function \w*\(|process\.|\bversions\b|\[object (process|global)/;

export async function make(rng, { corpus, dir }) {
  const family = rng.pick(['qwen2_vl', 'qwen2_5_vl']);
  const target = checkpointCopy(corpus, dir, family);
  const real = JSON.parse(fs.readFileSync(path.join(corpus, family, 'chat_template.json'), 'utf8')).chat_template;
  const shape = rng.int(3);
  const fragment = rng.pick(FRAGMENTS)(rng);
  const at = rng.int(real.length);
  const source = [mutateText(rng, real), real.slice(0, at) + fragment + real.slice(at), fragment][shape];
  const file = path.join(target, 'chat_template.jinja');
  fs.writeFileSync(file, source);
  const through = rng.chance(0.7) ? 'applyChatTemplate' : 'process';
  return {
    what: `${['mutated template', 'template + fragment', 'fragment'][shape]} via ${through}: ${shape === 0 ? '' : fragment.slice(0, 120)}`,
    names: [file],
    run: async () => {
      const processor = await processing.fromPretrained(target, { templateLimits: { timeoutMs: 1000 } });
      const text =
        through === 'process'
          ? String((await processor.process(sampleOf(corpus))).inputIds)
          : processor.applyChatTemplate(sampleOf(corpus).messages, { addGenerationPrompt: rng.chance(0.5) });
      const leak = LEAK.exec(text);
      if (leak)
        throw {
          finding: `the render shows a host object: ...${text.slice(Math.max(0, leak.index - 40), leak.index + 80)}`,
        };
    },
  };
}
