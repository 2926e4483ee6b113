// Crash-safe writes for every file vlalign writes (weights, configs, optimizer state, markers): the
// bytes go to a temp file beside the target, which is fsynced, renamed over the target (atomic on
// POSIX: a reader sees the old file or the new one), and then the directory is fsynced so that the
// rename itself survives a power cut. A failed write leaves the old file as it was and no temp file.
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';

/**
 * Writes `file` atomically; `write` fills the open temp file's descriptor with synchronous writes.
 * Errors (the callback's included) propagate unchanged, after the temp file is removed.
 */
export function writeFileAtomic(file: string, write: (fd: number) => void): void {
  // Random suffix: two writers of one file (ranks, retries) never share a temp file.
  const tmp = `${file}.tmp-${process.pid}-${randomBytes(6).toString('hex')}`;
  let fd = -1;
  try {
    fd = fs.openSync(tmp, 'wx');
    write(fd);
    fs.fsyncSync(fd);
    fs.closeSync(fd);
    fd = -1;
    fs.renameSync(tmp, file);
  } catch (error) {
    if (fd !== -1) fs.closeSync(fd);
    fs.rmSync(tmp, { force: true });
    throw error;
  }
  syncDirectory(path.dirname(path.resolve(file)));
}

/** Writes text (UTF-8) or bytes to `file` atomically. */
export function writeAtomic(file: string, data: string | Uint8Array): void {
  writeFileAtomic(file, (fd) => writeAll(fd, typeof data === 'string' ? Buffer.from(data, 'utf8') : data));
}

/** Writes all of `bytes` at (and advances) the descriptor's position, where a native writer can go on. */
export function writeAll(fd: number, bytes: Uint8Array): void {
  for (let done = 0; done < bytes.length; ) done += fs.writeSync(fd, bytes, done, bytes.length - done, null);
}

/** Fsyncs a directory so renames in it persist; best effort where directories cannot be opened (Windows). */
export function syncDirectory(dir: string): void {
  try {
    const fd = fs.openSync(dir, 'r');
    try {
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
  } catch {
    /* best effort */
  }
}
