// Damaged Arrow and parquet files, as `npm run fuzz` made them (issue #17): the readers refuse them
// with an error naming the file, not a bare DataView RangeError, and a parquet footer whose column
// path was damaged is refused when the file is opened (hyparquet used to start the other columns'
// reads first and leave them unawaited, so their errors surfaced as unhandled rejections).
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Table, Utf8, tableToIPC, vectorFromArray } from 'apache-arrow';
import { parquetWriteBuffer } from 'hyparquet-writer';
import { afterAll, describe, expect, it } from 'vitest';
import { ArrowStreamRows } from '../../lib/data/arrow.js';
import { ParquetRows } from '../../lib/data/parquet.js';

const root = mkdtempSync(join(tmpdir(), 'vlalign-damaged-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));
const escaped = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

// An Arrow IPC stream written by apache-arrow: one Utf8 column of two 4-byte values.
function arrowStream(): Buffer {
  const table = new Table({ text: vectorFromArray(['aaaa', 'bbbb'], new Utf8()) });
  return Buffer.from(tableToIPC(table, 'stream'));
}

describe('damaged Arrow streams', () => {
  it('a schema message whose root offset points past its metadata names the file and the message', async () => {
    const bytes = arrowStream();
    expect(bytes.readUInt32LE(0)).toBe(0xffffffff); // the continuation marker, then length, then the flatbuffer
    bytes.writeUInt32LE(0x00ffffff, 8); // the flatbuffer's root table offset
    const file = join(root, 'root.arrow');
    writeFileSync(file, bytes);
    const pattern = new RegExp(
      `^${escaped(file)}: message at offset 0: cannot read the Arrow data \\(Offset is outside`,
    );
    await expect(ArrowStreamRows.open([file])).rejects.toThrow(pattern);
  });

  it('a string offset past the body names the file, the batch and the row', async () => {
    const bytes = arrowStream();
    // The Utf8 column's offsets buffer is the int32s 0, 4, 8: point the last one far away.
    const offsets = Buffer.from(new Int32Array([0, 4, 8]).buffer);
    const at = bytes.indexOf(offsets);
    expect(at).toBeGreaterThan(0);
    bytes.writeInt32LE(0x7fffff00, at + 8);
    const file = join(root, 'offsets.arrow');
    writeFileSync(file, bytes);
    const rows = await ArrowStreamRows.open([file]);
    expect((await rows.row(0)).value).toEqual({ text: 'aaaa' });
    const pattern = new RegExp(`^${escaped(file)}: record batch at offset \\d+, row 1: cannot read the Arrow data`);
    await expect(rows.row(1)).rejects.toThrow(pattern);
  });
});

describe('damaged parquet footers', () => {
  // Two int32 columns written by hyparquet-writer; their names also sit in each column chunk's
  // path_in_schema, which the footer stores after the schema.
  function parquetFile(name: string, edit: (bytes: Buffer) => void): string {
    const written = parquetWriteBuffer({
      columnData: [
        { name: 'alpha', data: [1, 2, 3], type: 'INT32' },
        { name: 'bravo', data: [4, 5, 6], type: 'INT32' },
      ],
    });
    const bytes = Buffer.from(written);
    edit(bytes);
    const file = join(root, name);
    writeFileSync(file, bytes);
    return file;
  }

  it('reads the undamaged file', async () => {
    const rows = await ParquetRows.open([parquetFile('good.parquet', () => {})]);
    expect((await rows.row(2)).value).toEqual({ alpha: 3, bravo: 6 });
  });

  it('a column chunk path that names no schema column is refused at open, naming the file and the chunk', async () => {
    const file = parquetFile('path.parquet', (bytes) => {
      const at = bytes.lastIndexOf('bravo');
      expect(at).toBeGreaterThan(bytes.indexOf('bravo')); // the schema's name, then the chunk's path
      bytes.write('bravx', at);
    });
    expect(readFileSync(file).includes('bravx')).toBe(true);
    const pattern = new RegExp(`^${escaped(file)}: row group 0, column chunk 1: path 'bravx' is not a column`);
    await expect(ParquetRows.open([file])).rejects.toThrow(pattern);
  });
});
