// CheckpointManager: a SIGKILL in the middle of a save (a child process blocked inside a writer)
// leaves the previous checkpoint complete and loadable; rotation; latest / resolveResume; the
// marker's file list catches a damaged checkpoint; trainer_state.json in HF's layout.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import ts from 'typescript';
import { afterAll, describe, expect, it } from 'vitest';
import {
  COMPLETE_MARKER,
  CheckpointManager,
  latestCheckpoint,
  listCheckpoints,
  loadCheckpoint,
  resolveResume,
  trainerState,
  type CheckpointWriter,
} from '../../lib/train/checkpoint.js';

const root = fs.mkdtempSync(path.join(tmpdir(), 'vlalign-ckpt-'));
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));
const repo = path.resolve(import.meta.dirname, '../..');

const fileWriter =
  (name: string, text: string): CheckpointWriter =>
  (dir) => {
    fs.mkdirSync(path.dirname(path.join(dir, name)), { recursive: true });
    fs.writeFileSync(path.join(dir, name), text);
  };
const state = (step: number) =>
  trainerState({ global_step: step, epoch: step / 10, log_history: [{ step, loss: 1 / step }] });
const steps = (outputDir: string): number[] => listCheckpoints(outputDir).map((c) => c.step);

// The child runs the library's own checkpoint.ts as plain JS: each module it imports (relative
// imports only) is transpiled by TypeScript, types stripped, into a scratch copy of lib/.
function transpileForChild(entry: string, outDir: string): string {
  const pending = [path.join(repo, entry)];
  const done = new Set<string>();
  while (pending.length > 0) {
    const file = pending.pop()!;
    if (done.has(file)) continue;
    done.add(file);
    const source = fs.readFileSync(file, 'utf8');
    const js = ts.transpileModule(source, {
      compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022, verbatimModuleSyntax: true },
    }).outputText;
    const out = path.join(outDir, path.relative(repo, file)).replace(/\.ts$/, '.js');
    fs.mkdirSync(path.dirname(out), { recursive: true });
    fs.writeFileSync(out, js);
    for (const [, spec] of js.matchAll(/from '(\.[^']+)\.js'/g))
      pending.push(path.resolve(path.dirname(file), `${spec}.ts`));
  }
  return path.join(outDir, entry.replace(/\.ts$/, '.js'));
}

// Starts a save of checkpoint-2 whose second writer never returns; SIGKILLs it once it blocks.
async function killDuringSave(outputDir: string): Promise<number> {
  const module = transpileForChild('lib/train/checkpoint.ts', path.join(root, 'child'));
  const script = `
    import fs from 'node:fs';
    import { CheckpointManager, trainerState } from ${JSON.stringify(module)};
    const manager = new CheckpointManager(process.argv[1], { saveTotalLimit: 2 });
    await manager.save(trainerState({ global_step: 2 }), [
      (dir) => fs.writeFileSync(dir + '/adapter_model.safetensors', 'half of step 2'),
      () => { process.stdout.write('blocked\\n'); return new Promise(() => setInterval(() => {}, 1000)); },
    ]);`;
  const child = spawn(process.execPath, ['--input-type=module', '-e', script, outputDir], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  await new Promise<void>((resolve, reject) => {
    child.stdout.on('data', (chunk: Buffer) => {
      if (chunk.toString().includes('blocked')) resolve();
    });
    child.on('exit', (code) => reject(new Error(`the child exited (${code}) before blocking`)));
  });
  const exited = new Promise((resolve) => child.on('exit', (_code, signal) => resolve(signal)));
  child.kill('SIGKILL');
  expect(await exited).toBe('SIGKILL');
  return child.pid!;
}

describe('CheckpointManager', () => {
  it('a kill during a save leaves the previous checkpoint complete, loadable and latest', async () => {
    const outputDir = path.join(root, 'killed');
    const manager = new CheckpointManager(outputDir, { saveTotalLimit: 2 });
    await manager.save(state(1), [
      fileWriter('adapter_model.safetensors', 'step 1 weights'),
      fileWriter('sub/x.json', '{}'),
    ]);
    const pid = await killDuringSave(outputDir);

    const leftover = path.join(outputDir, `checkpoint-2.tmp-${pid}`);
    expect(fs.readFileSync(path.join(leftover, 'adapter_model.safetensors'), 'utf8')).toBe('half of step 2');
    expect(steps(outputDir)).toEqual([1]);
    expect(latestCheckpoint(outputDir)).toBe(path.join(outputDir, 'checkpoint-1'));
    const loaded = loadCheckpoint(latestCheckpoint(outputDir)!);
    expect(loaded.step).toBe(1);
    expect(loaded.trainerState.log_history).toEqual([{ step: 1, loss: 1 }]);
    expect(fs.readFileSync(path.join(loaded.dir, 'adapter_model.safetensors'), 'utf8')).toBe('step 1 weights');

    // The next save removes the dead process's directory and completes step 2.
    await manager.save(state(2), [fileWriter('adapter_model.safetensors', 'step 2 weights')]);
    expect(fs.existsSync(leftover)).toBe(false);
    expect(steps(outputDir)).toEqual([1, 2]);
  });

  it('rotates to the newest save_total_limit checkpoints and re-saves a step in place', async () => {
    const outputDir = path.join(root, 'rotate');
    const manager = new CheckpointManager(outputDir, { saveTotalLimit: 2 });
    for (const step of [10, 20, 30]) await manager.save(state(step), [fileWriter('w.bin', `w${step}`)]);
    expect(steps(outputDir)).toEqual([20, 30]);
    await manager.save(state(30), [fileWriter('w.bin', 'w30 again')]);
    expect(steps(outputDir)).toEqual([20, 30]);
    expect(fs.readFileSync(path.join(outputDir, 'checkpoint-30', 'w.bin'), 'utf8')).toBe('w30 again');
    expect(fs.readdirSync(outputDir).sort()).toEqual(['checkpoint-20', 'checkpoint-30']);
    const unlimited = new CheckpointManager(path.join(root, 'all'));
    for (const step of [1, 2, 3]) await unlimited.save(state(step), []);
    expect(steps(unlimited.outputDir)).toEqual([1, 2, 3]);
    expect(() => new CheckpointManager(outputDir, { saveTotalLimit: 0 })).toThrow(/save_total_limit/);
  });

  it('rotation removes companion directories (ZeRO shards) with their checkpoint, not a save in progress', async () => {
    const outputDir = path.join(root, 'companions');
    const manager = new CheckpointManager(outputDir, { saveTotalLimit: 1, companions: ['zero-'] });
    const companion = (step: number) =>
      fs.mkdirSync(path.join(outputDir, `zero-checkpoint-${step}`), { recursive: true });
    // A companion left behind by an earlier rotation that was cut short (its checkpoint is gone).
    companion(5);
    for (const step of [10, 20]) {
      companion(step); // written before its checkpoint, as the trainer's ZeRO save does
      await manager.save(state(step), [fileWriter('w.bin', `w${step}`)]);
    }
    companion(30); // the next save in progress: no checkpoint-30 yet
    expect(fs.readdirSync(outputDir).sort()).toEqual(['checkpoint-20', 'zero-checkpoint-20', 'zero-checkpoint-30']);
    // Without companions a manager leaves such directories alone.
    const plain = new CheckpointManager(outputDir, { saveTotalLimit: 1 });
    await plain.save(state(40), []);
    expect(fs.readdirSync(outputDir).sort()).toEqual(['checkpoint-40', 'zero-checkpoint-20', 'zero-checkpoint-30']);
  });

  it('latest ignores directories without the marker and sorts steps numerically; resolveResume', async () => {
    const outputDir = path.join(root, 'latest');
    expect(latestCheckpoint(outputDir)).toBeNull();
    expect(() => resolveResume(outputDir, true)).toThrow(`no complete checkpoint-N in ${outputDir}`);
    const manager = new CheckpointManager(outputDir);
    await manager.save(state(9), []);
    await manager.save(state(10), []);
    fs.mkdirSync(path.join(outputDir, 'checkpoint-11')); // half-copied by hand: no marker
    fs.mkdirSync(path.join(outputDir, 'checkpoint-12.tmp-1'));
    expect(latestCheckpoint(outputDir)).toBe(path.join(outputDir, 'checkpoint-10'));
    expect(resolveResume(outputDir, true)).toBe(path.join(outputDir, 'checkpoint-10'));
    expect(resolveResume(outputDir, '/some/where')).toBe('/some/where');
    expect(resolveResume(outputDir, false)).toBeNull();
    expect(() => loadCheckpoint(path.join(outputDir, 'checkpoint-11'))).toThrow(`no ${COMPLETE_MARKER}`);
  });

  it('the marker lists every file with its size; a damaged checkpoint is named with its problems', async () => {
    const outputDir = path.join(root, 'damaged');
    const dir = await new CheckpointManager(outputDir).save(state(5), [
      fileWriter('a.bin', 'abcd'),
      fileWriter('d/b.bin', 'xy'),
    ]);
    const marker = JSON.parse(fs.readFileSync(path.join(dir, COMPLETE_MARKER), 'utf8'));
    expect(marker).toEqual({
      global_step: 5,
      files: { 'a.bin': 4, 'd/b.bin': 2, 'trainer_state.json': expect.any(Number) },
    });
    fs.writeFileSync(path.join(dir, 'a.bin'), 'ab');
    fs.rmSync(path.join(dir, 'd/b.bin'));
    expect(() => loadCheckpoint(dir)).toThrow(
      `${dir}: damaged checkpoint:\n  a.bin has 2 bytes, the marker says 4\n  d/b.bin is missing`,
    );
  });

  it('names the marker file when it is malformed', async () => {
    const dir = await new CheckpointManager(path.join(root, 'bad-marker')).save(state(2), []);
    fs.writeFileSync(path.join(dir, COMPLETE_MARKER), '{"global_step": "2"}');
    expect(() => loadCheckpoint(dir)).toThrow(`${path.join(dir, COMPLETE_MARKER)}: expected { global_step: integer`);
  });

  it('writes trainer_state.json as HF does: every TrainerState field, keys sorted, indent 2', async () => {
    const dir = await new CheckpointManager(path.join(root, 'hf')).save(state(3), []);
    const text = fs.readFileSync(path.join(dir, 'trainer_state.json'), 'utf8');
    const parsed = JSON.parse(text);
    // transformers.TrainerState's fields (trainer_callback.py).
    const hfFields = [
      'best_global_step',
      'best_metric',
      'best_model_checkpoint',
      'epoch',
      'eval_steps',
      'global_step',
      'is_hyper_param_search',
      'is_local_process_zero',
      'is_world_process_zero',
      'log_history',
      'logging_steps',
      'max_steps',
      'num_input_tokens_seen',
      'num_train_epochs',
      'save_steps',
      'stateful_callbacks',
      'total_flos',
      'train_batch_size',
      'trial_name',
      'trial_params',
    ];
    expect(Object.keys(parsed)).toEqual(hfFields);
    expect(parsed).toMatchObject({
      global_step: 3,
      epoch: 0.3,
      best_metric: null,
      log_history: [{ loss: 1 / 3, step: 3 }],
    });
    expect(text).toBe(`${JSON.stringify(parsed, null, 2)}\n`);
  });
});
