// The fuzz harness counts what its cases do: the selftest surface's five cases abort the worker,
// hang it, throw an unclear error, throw a clean one and pass, in that order, so a run of five must
// report exactly one of each and exit 1 (or 0 when --fail-on leaves their outcomes out); and one
// case reruns alone by --repro.
import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';

const run = (args: string[]) =>
  spawnSync(process.execPath, ['scripts/fuzz/run.mjs', ...args], { encoding: 'utf8', timeout: 120_000 });

describe('npm run fuzz', () => {
  it('counts an abort, a hang, an unclear error, a clean error and a pass, and exits 1', () => {
    const out = run(['--surface', 'selftest', '--cases', '5', '--timeout', '2000', '--jobs', '1']);
    const line = out.stdout.split('\n').find((l) => l.startsWith('FUZZ_SUMMARY '));
    expect(line, out.stderr).toBeDefined();
    const summary = JSON.parse(line!.slice('FUZZ_SUMMARY '.length));
    expect(summary.surfaces.selftest).toMatchObject({ cases: 5, ok: 1, clean: 1, unclear: 1, abort: 1, hang: 1 });
    expect(summary).toMatchObject({ cases: 5, aborts: 1, hangs: 1, unclear: 1, harness: 0 });
    expect(out.stdout).toMatch(/selftest abort: 1 case\(s\)[\s\S]*worker died \(SIGABRT\)/);
    expect(out.stdout).toMatch(/selftest hang: 1 case\(s\)[\s\S]*no result within 2000 ms/);
    expect(out.status).toBe(1);
  }, 120_000);

  it('--fail-on picks the outcomes that fail the run (CI: abort and hang, not unclear)', () => {
    // The five selftest cases give one abort, hang, unclear, clean and ok each.
    const selftest = ['--surface', 'selftest', '--timeout', '2000', '--jobs', '1'];
    const unclear = run([...selftest, '--cases', '5', '--fail-on', 'unclear']);
    expect(unclear.stdout).toMatch(/fuzz: FAILED \(1 unclear\)/);
    expect(unclear.status).toBe(1);
    const ci = run([...selftest, '--cases', '5', '--fail-on', 'harness']);
    expect(ci.stdout).toContain('FUZZ_SUMMARY ');
    expect(ci.stdout).not.toContain('FAILED');
    expect(ci.status).toBe(0);
    const aborts = run([...selftest, '--cases', '5', '--fail-on', 'abort,hang,harness']);
    expect(aborts.stdout).toMatch(/fuzz: FAILED \(1 abort, 1 hang\)/);
    expect(aborts.status).toBe(1);
    expect(run([...selftest, '--cases', '1', '--fail-on', 'clean']).stderr).toMatch(/'clean' is not a failing outcome/);
  }, 240_000);

  it('reruns one case by --repro and prints its outcome', () => {
    const out = run(['--repro', 'selftest:3']);
    expect(out.stdout).toMatch(/case selftest:3 \(seed 1\): a case that should count as clean/);
    expect(out.stdout).toMatch(/outcome: clean\nmessage: .*input: refused/);
    expect(out.status).toBe(0);
  }, 120_000);
});
