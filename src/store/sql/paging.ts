/**
 * Paging, for every backend. A cursor is the sort key of the last item of a page, as base64url
 * JSON: opaque to callers, and stable under inserts and deletes between pages (unlike an offset).
 */
import { WirewatchError } from '../../model/errors.js';
import type { Page } from '../store.js';

export function checkPageLimit(limit: number): void {
  if (!Number.isInteger(limit) || limit < 1) {
    throw new RangeError(`page limit must be a whole number ≥ 1, not ${limit}`);
  }
}

export function encodeCursor(key: Readonly<Record<string, string>>): string {
  return Buffer.from(JSON.stringify(key)).toString('base64url');
}

/**
 * The sort key in a cursor. Cursors come back from clients (as $skipToken), so one this store did
 * not make is the client's error: InvalidRequestContent, a 400.
 */
export function decodeCursor<K extends string>(
  cursor: string,
  fields: readonly K[],
): Record<K, string> {
  const invalid = (): WirewatchError =>
    new WirewatchError('InvalidRequestContent', 'The page cursor ($skipToken) is not valid', {
      target: '$skipToken',
    });
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
  } catch {
    throw invalid();
  }
  if (typeof parsed !== 'object' || parsed === null) throw invalid();
  const key: Partial<Record<K, string>> = {};
  for (const field of fields) {
    const value: unknown = (parsed as Record<string, unknown>)[field];
    if (typeof value !== 'string') throw invalid();
    key[field] = value;
  }
  return key as Record<K, string>;
}

/** The page from rows fetched with limit + 1: the extra row only says that there is more. */
export function toPage<R, T>(
  rows: readonly R[],
  limit: number,
  toRecord: (row: R) => T,
  sortKey: (row: R) => Readonly<Record<string, string>>,
): Page<T> {
  const items = rows.slice(0, limit);
  const last = items.at(-1);
  const next = rows.length > limit && last !== undefined ? encodeCursor(sortKey(last)) : null;
  return { items: items.map(toRecord), next };
}
