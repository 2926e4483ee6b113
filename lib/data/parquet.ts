// Parquet files (one, or the shards of a split) as random-access rows: only footers are read up
// front, and a row is read with its row group, of which one stays cached, so shards never sit
// whole in memory. hyparquet reads (pure JS); hyparquet-compressors adds zstd, brotli, lz4, gzip.
import {
  asyncBufferFromFile,
  parquetMetadataAsync,
  parquetReadObjects,
  parquetSchema,
  type AsyncBuffer,
  type FileMetaData,
} from 'hyparquet';
import { compressors } from 'hyparquet-compressors';

interface RowGroupSpan {
  shard: number;
  /** First row of the group within its shard. */
  start: number;
  end: number;
  /** First row of the group across all shards. */
  globalStart: number;
}

interface Shard {
  file: string;
  buffer: AsyncBuffer;
  metadata: FileMetaData;
}

export class ParquetRows {
  private cached: { group: number; rows: Promise<Record<string, unknown>[]> } | undefined;

  private constructor(
    private readonly shards: Shard[],
    private readonly groups: RowGroupSpan[],
    readonly length: number,
  ) {}

  /** Reads the footers of `files` (in order). */
  static async open(files: readonly string[]): Promise<ParquetRows> {
    const shards: Shard[] = [];
    const groups: RowGroupSpan[] = [];
    let total = 0;
    for (const [shard, file] of files.entries()) {
      const buffer = await asyncBufferFromFile(file);
      const metadata = await parquetMetadataAsync(buffer).catch((error: unknown) => {
        throw new Error(`${file}: not a readable parquet file (${(error as Error).message})`, { cause: error });
      });
      checkColumnPaths(file, metadata);
      shards.push({ file, buffer, metadata });
      let start = 0;
      for (const group of metadata.row_groups) {
        const rows = Number(group.num_rows);
        groups.push({ shard, start, end: start + rows, globalStart: total });
        start += rows;
        total += rows;
      }
    }
    return new ParquetRows(shards, groups, total);
  }

  /** Column names of the first shard's schema (top level). */
  columns(): string[] {
    const schema = this.shards[0]?.metadata.schema ?? [];
    const names: string[] = [];
    let k = 1;
    while (k < schema.length) {
      names.push(schema[k]?.name as string);
      k = skipSubtree(schema, k);
    }
    return names;
  }

  /** Row `i` (across shards) with the file and row within that file. */
  async row(i: number): Promise<{ value: Record<string, unknown>; file: string; row: number }> {
    if (!Number.isInteger(i) || i < 0 || i >= this.length)
      throw new RangeError(`parquet row ${i} out of range [0, ${this.length})`);
    const group = this.groupOf(i);
    const span = this.groups[group] as RowGroupSpan;
    const rows = await this.groupRows(group);
    const offset = i - span.globalStart;
    return {
      value: rows[offset] as Record<string, unknown>,
      file: (this.shards[span.shard] as Shard).file,
      row: span.start + offset,
    };
  }

  private groupOf(i: number): number {
    let [lo, hi] = [0, this.groups.length - 1];
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if ((this.groups[mid] as RowGroupSpan).globalStart <= i) lo = mid;
      else hi = mid - 1;
    }
    return lo;
  }

  private groupRows(group: number): Promise<Record<string, unknown>[]> {
    if (this.cached?.group === group) return this.cached.rows;
    const span = this.groups[group] as RowGroupSpan;
    const shard = this.shards[span.shard] as Shard;
    // utf8: false keeps BLOB columns (image bytes) as bytes; STRING columns still decode as text.
    const rows = parquetReadObjects({
      file: shard.buffer,
      metadata: shard.metadata,
      compressors,
      rowStart: span.start,
      rowEnd: span.end,
      utf8: false,
    }).catch((error: unknown) => {
      throw new Error(`${shard.file}: cannot read rows ${span.start}-${span.end} (${(error as Error).message})`, {
        cause: error,
      });
    });
    this.cached = { group, rows };
    return rows;
  }
}

/**
 * Every column chunk's path must name a schema element. hyparquet finds out while it starts the
 * chunks' reads one by one, so a damaged path left the reads already started unawaited (their
 * errors surfaced later as unhandled rejections).
 */
function checkColumnPaths(file: string, metadata: FileMetaData): void {
  const root = parquetSchema(metadata);
  for (const [g, group] of metadata.row_groups.entries()) {
    for (const [c, column] of group.columns.entries()) {
      const names = column.meta_data?.path_in_schema ?? [];
      let node: typeof root | undefined = root;
      for (const name of names) node = node?.children.find((child) => child.element.name === name);
      if (names.length === 0 || node === undefined || node.children.length > 0) {
        const shown = names.map(String).join('.');
        throw new Error(`${file}: row group ${g}, column chunk ${c}: path '${shown}' is not a column of the schema`);
      }
    }
  }
}

/** Index of the schema element after the subtree rooted at `k` (the flattened schema lists children in order). */
function skipSubtree(schema: FileMetaData['schema'], k: number): number {
  let pending = 1;
  let next = k;
  while (pending > 0 && next < schema.length) {
    pending += (schema[next]?.num_children ?? 0) - 1;
    next += 1;
  }
  return next;
}
