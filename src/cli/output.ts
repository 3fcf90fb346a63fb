/**
 * Result output, as az does it: `--output json` (the default: the API's JSON, indented),
 * `table` (for people: chosen columns, a header and a rule), `tsv` (values only, tab-separated,
 * one row per line, no header — for `cut` and shell loops). Nothing but the result goes to stdout.
 */
export type OutputFormat = 'json' | 'table' | 'tsv';

export const OUTPUT_FORMATS: readonly OutputFormat[] = ['json', 'table', 'tsv'];

/** A column of table/tsv output: a header and how to get the cell from an item. */
export interface Column<T> {
  readonly header: string;
  readonly get: (item: T) => unknown;
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

export function formatTable<T>(items: readonly T[], columns: readonly Column<T>[]): string {
  const rows = items.map((item) => columns.map((c) => cell(c.get(item)).replace(/\s+/g, ' ')));
  const widths = columns.map((c, i) => Math.max(c.header.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: readonly string[]) =>
    cells
      .map((text, i) => (i === cells.length - 1 ? text : text.padEnd(widths[i]!)))
      .join('  ')
      .trimEnd();
  return [
    line(columns.map((c) => c.header)),
    line(widths.map((w) => '-'.repeat(w))),
    ...rows.map(line),
  ]
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
