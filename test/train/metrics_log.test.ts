// The metrics jsonl: entries come back as logged (each line plain JSON, one per log call), a line cut
// short by a kill is dropped, a broken line elsewhere names the file and line, and a resumed run
// drops what the killed run logged after its checkpoint.
import fs from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { MetricsLog, readMetricsLog } from '../../lib/train/metrics_log.js';

const dir = fs.mkdtempSync(path.join(tmpdir(), 'vlalign-metrics-'));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

const entries = [
  { step: 1, epoch: 0.1, loss: Math.LN2, 'rewards/chosen': -0.002, learning_rate: 5e-7 },
  { step: 2, epoch: 0.2, loss: 0.6, 'rewards/margins': 0.25, grad_norm: 1.5 },
  { step: 3, epoch: 0.3, loss: 0.5 },
];

describe('MetricsLog', () => {
  it('appends one JSON line per entry, readable by JSON.parse line by line', () => {
    const file = path.join(dir, 'a', 'metrics.jsonl');
    const log = new MetricsLog(file);
    for (const e of entries) log.append(e);
    log.close();
    const lines = fs.readFileSync(file, 'utf8').split('\n');
    expect(lines.at(-1)).toBe('');
    expect(lines.slice(0, -1).map((l) => JSON.parse(l))).toEqual(entries);
    expect(readMetricsLog(file)).toEqual(entries);
  });

  it('drops a last line cut short, names file:line for a broken line elsewhere', () => {
    const file = path.join(dir, 'cut.jsonl');
    fs.writeFileSync(file, `${JSON.stringify(entries[0])}\n{"step": 2, "lo`);
    expect(readMetricsLog(file)).toEqual([entries[0]]);
    fs.writeFileSync(file, `${JSON.stringify(entries[0])}\n{"step": 2, "lo\n${JSON.stringify(entries[2])}\n`);
    expect(() => readMetricsLog(file)).toThrow(`${file}:2: invalid metrics line`);
    fs.writeFileSync(file, '{"loss": 1}\n');
    expect(() => readMetricsLog(file)).toThrow(`${file}:1: a metrics line must be an object with an integer step`);
  });

  it("on resume, keeps only the lines up to the checkpoint's step, then appends", () => {
    const file = path.join(dir, 'resume.jsonl');
    fs.writeFileSync(file, `${entries.map((e) => JSON.stringify(e)).join('\n')}\n{"step": 4, "lo`);
    const log = new MetricsLog(file, { resumeStep: 2 });
    log.append({ step: 3, loss: 0.45 });
    log.close();
    expect(readMetricsLog(file)).toEqual([entries[0], entries[1], { step: 3, loss: 0.45 }]);
    expect(() => log.append({ step: 4 })).toThrow(`${file}: the metrics log is closed`);
  });
});
