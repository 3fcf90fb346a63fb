/**
 * Result output, as az does it: `--output json` (the default: the API's JSON, indented),
 * `table` (for people: chosen columns, a header and a rule), `tsv` (values only, tab-separated,
 * one row per line, no header — for `cut` and shell loops). Nothing but the result goes to stdout.
 */
import { formatBytes, formatTime, shortenId } from './format.js';

export type OutputFormat = 'json' | 'table' | 'tsv';

export const OUTPUT_FORMATS: readonly OutputFormat[] = ['json', 'table', 'tsv'];

/**
 * What a column holds, which decides how a table shows it; json and tsv always show the value
 * exactly as the API gave it.
 * - `bytes`: a byte count, shown `340.8 KiB`;
 * - `time`: an ISO time, shown as local time (and how long ago, if within the hour);
 * - `id`: an ARM id, shown by its last type and name, `…/packetCaptures/pc1`;
 * - `seconds`: a number of seconds, shown as it is under a header ending in ` (s)`.
 */
export type ColumnKind = 'text' | 'bytes' | 'time' | 'id' | 'seconds';

/** A column of table/tsv output: a header, how to get the cell from an item, and its kind. */
export interface Column<T> {
  readonly header: string;
  readonly get: (item: T) => unknown;
  /** Default `text`. */
  readonly kind?: ColumnKind;
}

/** How a table shows values: `now` for relative times (tests fix it). */
export interface TableOptions {
  readonly now?: number;
}

function cell(value: unknown): string {
  if (value === undefined || value === null) return '';
  if (typeof value === 'string') return value;
  if (typeof value === 'number' || typeof value === 'boolean') return String(value);
  if (Array.isArray(value)) return value.map(cell).join(',');
  return JSON.stringify(value);
}

/** One line per row; tabs and newlines inside values become spaces so rows stay rows. */
export function formatTsv<T>(items: readonly T[], columns: readonly Column<T>[]): string {
  return items
    .map((item) => columns.map((c) => cell(c.get(item)).replace(/[\t\r\n]+/g, ' ')).join('\t'))
    .map((line) => `${line}\n`)
    .join('');
}

/** A column's header in a table: the unit of a `seconds` column is in it. */
function tableHeader<T>(column: Column<T>): string {
  return column.kind === 'seconds' ? `${column.header} (s)` : column.header;
}

/** A cell for a person: sizes, times and ids by the column's kind; the rest as tsv shows it. */
function tableCell(kind: ColumnKind | undefined, value: unknown, now: number): string {
  switch (kind) {
    case 'bytes':
      return typeof value === 'number' && Number.isFinite(value) ? formatBytes(value) : cell(value);
    case 'time':
      return typeof value === 'string' ? formatTime(value, now) : cell(value);
    case 'id':
      return typeof value === 'string' ? shortenId(value) : cell(value);
    case 'seconds':
    case 'text':
    case undefined:
      return cell(value);
  }
}

export function formatTable<T>(
  items: readonly T[],
  columns: readonly Column<T>[],
  options: TableOptions = {},
): string {
  const now = options.now ?? Date.now();
  const headers = columns.map(tableHeader);
  const rows = items.map((item) =>
    columns.map((c) => tableCell(c.kind, c.get(item), now).replace(/\s+/g, ' ')),
  );
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: readonly string[]) =>
    cells
      .map((text, i) => (i === cells.length - 1 ? text : text.padEnd(widths[i]!)))
      .join('  ')
      .trimEnd();
  return [line(headers), line(widths.map((w) => '-'.repeat(w))), ...rows.map(line)]
    .map((l) => `${l}\n`)
    .join('');
}

/** Prints a result: `value` is what json shows; table and tsv show `items` by `columns`. */
export function printResult<T>(
  format: OutputFormat,
  value: unknown,
  columns: readonly Column<T>[],
  items: readonly T[] = Array.isArray(value) ? (value as T[]) : [value as T],
): void {
  let text: string;
  switch (format) {
    case 'json':
      text = value === undefined ? '' : `${JSON.stringify(value, null, 2)}\n`;
      break;
    case 'table':
      text = formatTable(items, columns);
      break;
    case 'tsv':
      text = formatTsv(items, columns);
      break;
  }
  process.stdout.write(text);
}
