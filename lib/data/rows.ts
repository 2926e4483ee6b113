// Raw rows, whatever the file: a jsonl index, a JSON list, or parquet shards, each answering row i
// as a plain object with the file and line/row it came from.
import { readJsonFile } from '../util/json_file.js';
import { JsonlIndex } from './jsonl_index.js';
import { ParquetRows } from './parquet.js';
import { type BadRowPolicy, DataError, type DataRecord, type RecordDataset, type RecordSource } from './records.js';

export interface RawRow {
  value: Record<string, unknown>;
  source: RecordSource;
}

export interface RowSource {
  readonly length: number;
  /** Top-level keys of the rows (parquet: the schema; json: the first row's keys). */
  columns(): Promise<string[]>;
  row(i: number): Promise<RawRow>;
}

export async function jsonlRows(file: string): Promise<RowSource> {
  const index = await JsonlIndex.build(file);
  const row = async (i: number): Promise<RawRow> => ({
    value: await index.object(i),
    source: { file, line: index.lineNumber(i) },
  });
  return {
    length: index.length,
    columns: async () => (index.length === 0 ? [] : Object.keys((await row(0)).value)),
    row,
  };
}

/** A JSON file holding a list of objects (VL-RLHF's format): parsed whole, as VL-RLHF does. */
export function jsonListRows(file: string): RowSource {
  const list = readJsonFile(file);
  if (!Array.isArray(list)) throw new TypeError(`${file}: expected a JSON list of rows`);
  const row = async (i: number): Promise<RawRow> => {
    const source = { file, row: i };
    const value: unknown = list[i];
    if (typeof value !== 'object' || value === null || Array.isArray(value))
      throw new DataError(source, 'expected a JSON object');
    return { value: value as Record<string, unknown>, source };
  };
  return {
    length: list.length,
    columns: async () => (list.length === 0 ? [] : Object.keys((await row(0)).value)),
    row,
  };
}

export async function parquetRows(files: readonly string[]): Promise<RowSource> {
  const table = await ParquetRows.open(files);
  return {
    length: table.length,
    columns: async () => table.columns(),
    row: async (i) => {
      const { value, file, row } = await table.row(i);
      return { value, source: { file, row } };
    },
  };
}

/** Rows [from, to) of `rows` (a split slice). */
export function sliceRows(rows: RowSource, from: number, to: number): RowSource {
  const row = (i: number): Promise<RawRow> => {
    if (!Number.isInteger(i) || i < 0 || i >= to - from)
      throw new RangeError(`row ${i} out of range [0, ${to - from})`);
    return rows.row(from + i);
  };
  return { length: to - from, columns: () => rows.columns(), row };
}

/** A dataset over raw rows, each turned into a record on access; bad rows follow the policy. */
export class ConvertedDataset<T extends DataRecord> implements RecordDataset<T> {
  constructor(
    private readonly rows: RowSource,
    private readonly convert: (row: RawRow) => T,
    private readonly policy: BadRowPolicy,
  ) {}

  get length(): number {
    return this.rows.length;
  }

  get badRows() {
    return this.policy.report;
  }

  get skipBadRows(): boolean {
    return this.policy.skipBadRows;
  }

  get(i: number): Promise<T | undefined> {
    return this.policy.guard(async () => this.convert(await this.rows.row(i)));
  }
}
