// Hostile and inconsistent configs (issue #17): sizes past sane bounds and configs that disagree
// with their tensors fail fast, naming the file, the key and the value, before any allocation.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fromPretrained } from '../../lib/models/index.js';
import * as torch from '../../lib/torch/index.js';
import * as processing from '../../lib/processing/index.js';
import { writeTinyCheckpoint, type TinyFamily } from '../../lib/tiny/index.js';

const dirs: string[] = [];
afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

const tiny: Partial<Record<TinyFamily, string>> = {};
beforeAll(async () => {
  for (const family of ['qwen2_vl', 'internvl'] as const) {
    const dir = mkdtempSync(join(tmpdir(), 'vlalign-hostile-'));
    dirs.push(dir);
    await writeTinyCheckpoint(dir, family);
    tiny[family] = dir;
  }
});

const escapeRegExp = (text: string): string => text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

type JsonEdit = (json: Record<string, any>) => void;

// A copy of a tiny checkpoint with `file`'s JSON edited.
function edited(family: TinyFamily, file: string, edit: JsonEdit): string {
  const source = tiny[family]!;
  const dir = mkdtempSync(join(tmpdir(), 'vlalign-hostile-'));
  dirs.push(dir);
  const files = ['config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json'];
  files.push('preprocessor_config.json');
  for (const name of files) {
    try {
      writeFileSync(join(dir, name), readFileSync(join(source, name)));
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
    }
  }
  const json = JSON.parse(readFileSync(join(dir, file), 'utf8'));
  edit(json);
  writeFileSync(join(dir, file), JSON.stringify(json));
  return dir;
}

// The promise rejects with a message matching every pattern, within `withinMs`.
async function expectFastRejection(load: () => Promise<unknown>, patterns: RegExp[], withinMs = 2000): Promise<void> {
  const start = performance.now();
  const message = await load().then(
    () => 'resolved',
    (e: Error) => e.message,
  );
  expect(performance.now() - start).toBeLessThan(withinMs);
  for (const pattern of patterns) expect(message).toMatch(pattern);
}

describe('model configs past sane bounds', () => {
  it('rejects num_hidden_layers 2147483648 at once, naming the key and the value', async () => {
    const dir = edited('qwen2_vl', 'config.json', (c) => {
      c.num_hidden_layers = 2147483648;
    });
    const patterns = [/config\.json/, /num_hidden_layers: 2147483648 exceeds the sane bound 1024/];
    await expectFastRejection(() => fromPretrained(dir), patterns);
  });

  it('rejects a vision depth and an InternVL LLM vocabulary past their bounds', async () => {
    const qwen = edited('qwen2_vl', 'config.json', (c) => {
      c.vision_config.depth = 1e9;
    });
    const depth = /vision_config\.depth: 1000000000 exceeds the sane bound 1024/;
    await expectFastRejection(() => fromPretrained(qwen), [depth]);
    const intern = edited('internvl', 'config.json', (c) => {
      c.llm_config.vocab_size = 2 ** 31;
    });
    await expectFastRejection(() => fromPretrained(intern), [/vocab_size: 2147483648 exceeds the sane bound 16777216/]);
  });

  it('rejects a token id in config.json past the vocabulary bound', async () => {
    const dir = edited('qwen2_vl', 'config.json', (c) => {
      c.image_token_id = 2 ** 31;
    });
    const pattern = /image_token_id: token id 2147483648 exceeds the sane bound/;
    await expectFastRejection(() => fromPretrained(dir), [pattern]);
  });
});

// Fuzz run 5 (docs/fuzz.md): a vision_config that is not an object reached the checkpoint shape
// check unparsed ("Cannot use 'in' operator"), and an InternVL downsample_ratio of 2^40 made the
// processor build a tile of ~2^90 tokens: V8 aborted the process.
describe('config values of the wrong kind or size, found by the fuzzer', () => {
  it.each([-1e308, 2147483648])('refuses vision_config = %s naming the key', async (value) => {
    const dir = edited('qwen2_vl', 'config.json', (c) => {
      c.vision_config = value;
    });
    await expectFastRejection(() => fromPretrained(dir), [/config\.json/, /invalid vision_config: .*expected record/]);
  });

  it('refuses an InternVL downsample_ratio above 1 and a tile of more tokens than a sequence holds', async () => {
    const ratio = edited('internvl', 'config.json', (c) => {
      c.downsample_ratio = 2 ** 40;
    });
    const tooBig = /config\.json: invalid downsample_ratio: Too big: expected number to be <=1/;
    await expectFastRejection(() => processing.fromPretrained(ratio), [tooBig]);
    const tokens = edited('internvl', 'config.json', (c) => {
      c.force_image_size = 65536;
      c.vision_config.patch_size = 1;
      c.downsample_ratio = 1;
    });
    // (65536 / 1)² · 1² = 4294967296 tokens per tile, past SIZE_BOUNDS.positions (2^27)
    const limit =
      /config\.json: image_size 65536, patch_size 1 and downsample_ratio 1 give 4294967296 tokens per tile \(limit 134217728\)/;
    await expectFastRejection(() => processing.fromPretrained(tokens), [limit]);
  });

  it('quantize4bit refuses a null options object by name', () => {
    const w = torch.ones([4, 64]);
    expect(() => torch.quantize4bit(w, null as never)).toThrow(
      /^quantize4bit: expected an object for options but received null/,
    );
    w.dispose();
  });
});

describe('model configs that disagree with their tensors', () => {
  it('names the tensor and both shapes when hidden_size was changed', async () => {
    const dir = edited('qwen2_vl', 'config.json', (c) => {
      c.hidden_size = 32;
      c.head_dim = 32; // keeps the M-RoPE sections valid, so only the tensors disagree
    });
    const weights = escapeRegExp(join(dir, 'model.safetensors'));
    await expectFastRejection(
      () => fromPretrained(dir),
      [
        /config\.json disagrees with the checkpoint/,
        new RegExp(`'model\\.embed_tokens\\.weight' in ${weights} has shape \\[\\d+, 64\\]`),
        /but .*config\.json \(vocab_size, hidden_size\) implies \[\d+, 32\]/,
        /'model\.layers\.0\.mlp\.gate_proj\.weight' .* has shape \[96, 64\] but .* implies \[96, 32\]/,
        /'model\.layers\.0\.self_attn\.q_proj\.weight' .* has shape \[64, 64\] but .* implies \[64, 32\]/,
      ],
    );
  });

  it('names the layer counts when num_hidden_layers was changed', async () => {
    const dir = edited('qwen2_vl', 'config.json', (c) => {
      c.num_hidden_layers = 5;
    });
    const pattern = /has num_hidden_layers 5 but the checkpoint has 3 layers \('model\.layers\.N\.'\)/;
    await expectFastRejection(() => fromPretrained(dir), [pattern]);
  });

  it('names the vision depths when the vision tower was changed', async () => {
    const qwen = edited('qwen2_vl', 'config.json', (c) => {
      c.vision_config.depth += 2;
    });
    const intern = edited('internvl', 'config.json', (c) => {
      c.vision_config.num_hidden_layers = 1;
    });
    const depth = /vision_config\.depth (\d+) but the checkpoint's vision tower has/;
    await expectFastRejection(() => fromPretrained(qwen), [depth]);
    const layers = /vision_config\.num_hidden_layers 1 but .* vision tower has 3 blocks/;
    await expectFastRejection(() => fromPretrained(intern), [layers]);
  });

  it('reads the newer Qwen-VL layout (model.language_model.*, lm_head at the root)', async () => {
    const dir = edited('qwen2_vl', 'config.json', (c) => {
      c.vocab_size += 8;
    });
    const tensors = await torch.loadSafetensors(join(dir, 'model.safetensors'));
    const rename = (k: string): string =>
      k.startsWith('visual.') ? `model.${k}` : k.startsWith('model.') ? `model.language_model.${k.slice(6)}` : k;
    const renamed = Object.fromEntries(Object.entries(tensors).map(([k, v]) => [rename(k), v]));
    await torch.saveSafetensors(join(dir, 'model.safetensors'), renamed);
    Object.values(tensors).forEach((t) => t.dispose());
    await expectFastRejection(
      () => fromPretrained(dir),
      [
        /tensor 'model\.language_model\.embed_tokens\.weight' .* has shape \[(\d+), 64\]/,
        /tensor 'lm_head\.weight' .* has shape \[\d+, 64\] but .* \(vocab_size, hidden_size\) implies/,
      ],
    );
  });

  it('finds the InternVL language model under its own prefix', async () => {
    const dir = edited('internvl', 'config.json', (c) => {
      c.llm_config.vocab_size += 8;
      c.llm_config.intermediate_size = 48;
    });
    await expectFastRejection(
      () => fromPretrained(dir),
      [
        /tensor 'language_model\.model\.embed_tokens\.weight' .* has shape \[(\d+), 48\] but .* implies \[\d+, 48\]/,
        /tensor 'language_model\.lm_head\.weight'/,
        /'language_model\.model\.layers\.0\.mlp\.gate_proj\.weight' .* has shape \[96, 48\] but .* implies \[48, 48\]/,
      ],
    );
  });

  it('still loads the unedited checkpoints', async () => {
    for (const dir of Object.values(tiny)) (await fromPretrained(dir!)).dispose();
  });
});

describe('tokenizer and preprocessor files past sane bounds', () => {
  it('rejects a vocab id of 2147483648 in tokenizer.json before the tokenizer sees it', async () => {
    const dir = edited('qwen2_vl', 'tokenizer.json', (t) => {
      const first = Object.keys(t.model.vocab)[0]!;
      t.model.vocab[first] = 2147483648;
    });
    const file = escapeRegExp(join(dir, 'tokenizer.json'));
    await expectFastRejection(
      () => processing.fromPretrained(dir),
      [new RegExp(`${file}: model\\.vocab\\[".*"\\] is 2147483648, not a token id in \\[0, 16777215\\]`)],
    );
  });

  it('rejects an added token id that is not an integer', async () => {
    const dir = edited('qwen2_vl', 'tokenizer.json', (t) => {
      t.added_tokens[1].id = -3;
    });
    await expectFastRejection(() => processing.fromPretrained(dir), [/added_tokens\[1\]\.id is -3, not a token id/]);
  });

  it('rejects a preprocessor max_pixels past the bound', async () => {
    const dir = edited('qwen2_vl', 'preprocessor_config.json', (p) => {
      p.max_pixels = 2 ** 40;
    });
    const patterns = [/preprocessor_config\.json/, /max_pixels: 1099511627776 exceeds/];
    await expectFastRejection(() => processing.fromPretrained(dir), patterns);
  });
});
