// The shared atomic writer: the target holds the old bytes until the rename, a failure leaves the
// old file and no temp file, and the file and its directory are fsynced around the rename.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, describe, expect, it, vi } from 'vitest';
import { writeAll, writeAtomic, writeFileAtomic } from '../../lib/util/index.js';

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'vlalign-atomic-'));
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));
afterEach(() => vi.restoreAllMocks());

/** A fresh directory holding `name` with the text 'old'. */
function withOldFile(name = 'target.json'): { dir: string; file: string } {
  const dir = fs.mkdtempSync(path.join(root, 'case-'));
  const file = path.join(dir, name);
  fs.writeFileSync(file, 'old');
  return { dir, file };
}

describe('writeFileAtomic', () => {
  it('keeps the old bytes at the target until the new file is complete, then swaps inodes', () => {
    const { dir, file } = withOldFile();
    const oldInode = fs.statSync(file).ino;
    const reader = fs.openSync(file, 'r');
    writeFileAtomic(file, (fd) => {
      writeAll(fd, Buffer.from('new '));
      expect(fs.readFileSync(file, 'utf8')).toBe('old'); // mid-write: readers still see the old file
      writeAll(fd, Buffer.from('content'));
    });
    expect(fs.readFileSync(file, 'utf8')).toBe('new content');
    // A rename, not an in-place rewrite: the new file is another inode; an open reader keeps the old one.
    expect(fs.statSync(file).ino).not.toBe(oldInode);
    expect(fs.readFileSync(reader, 'utf8')).toBe('old');
    fs.closeSync(reader);
    expect(fs.readdirSync(dir)).toEqual(['target.json']);
  });

  it('leaves the old file and no temp file when the write fails midway, rethrowing the error', () => {
    const { dir, file } = withOldFile();
    class Boom extends Error {}
    expect(() =>
      writeFileAtomic(file, (fd) => {
        writeAll(fd, Buffer.from('half a fi'));
        throw new Boom('disk full');
      }),
    ).toThrow(Boom);
    expect(fs.readFileSync(file, 'utf8')).toBe('old');
    expect(fs.readdirSync(dir)).toEqual(['target.json']);
  });

  it('leaves the old file when the rename fails (a non-empty directory in the way)', () => {
    const dir = fs.mkdtempSync(path.join(root, 'rename-'));
    const target = path.join(dir, 'occupied');
    fs.mkdirSync(target);
    fs.writeFileSync(path.join(target, 'keep'), 'x');
    expect(() => writeAtomic(target, 'new')).toThrow(/occupied/);
    expect(fs.readdirSync(dir)).toEqual(['occupied']);
    expect(fs.readdirSync(target)).toEqual(['keep']);
  });

  it('fails naming the file when its directory does not exist', () => {
    const file = path.join(root, 'no-such-dir', 'f.json');
    expect(() => writeAtomic(file, 'x')).toThrow(/no-such-dir\/f\.json\.tmp-/);
  });

  it('fsyncs the temp file before the rename and the directory after it', () => {
    const { dir, file } = withOldFile('weights.bin');
    const events: string[] = [];
    const opened = new Map<number, string>();
    const openSync = fs.openSync.bind(fs);
    vi.spyOn(fs, 'openSync').mockImplementation(((p: fs.PathLike, ...rest: never[]) => {
      const fd = openSync(p, ...rest);
      opened.set(fd, String(p));
      return fd;
    }) as typeof fs.openSync);
    const fsyncSync = fs.fsyncSync.bind(fs);
    vi.spyOn(fs, 'fsyncSync').mockImplementation((fd: number) => {
      const p = opened.get(fd)!;
      events.push(`fsync ${p === dir ? 'dir' : path.basename(p).includes('.tmp-') ? 'temp' : p}`);
      fsyncSync(fd);
    });
    const renameSync = fs.renameSync.bind(fs);
    vi.spyOn(fs, 'renameSync').mockImplementation((from: fs.PathLike, to: fs.PathLike) => {
      events.push(`rename to ${path.basename(String(to))}`);
      renameSync(from, to);
    });
    writeAtomic(file, new Uint8Array([1, 2, 3]));
    expect(events).toEqual(['fsync temp', 'rename to weights.bin', 'fsync dir']);
    expect([...fs.readFileSync(file)]).toEqual([1, 2, 3]);
  });
});
