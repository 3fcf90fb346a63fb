/**
 * Running the built `wirewatch` binary in tests: an environment nothing of the caller's leaks
 * into, and checks of what it printed in each output format (json, table, tsv) and for refusals
 * and usage errors.
 */
import { expect } from 'vitest';
import type { CliResult } from './cli-process.js';

/** Nothing from the environment of whoever runs the tests may leak into the commands. */
export const CLEAN_ENV = {
  WIREWATCH_SERVER: undefined,
  WIREWATCH_TOKEN: undefined,
  WIREWATCH_CA: undefined,
  WIREWATCH_SUBSCRIPTION: undefined,
  WIREWATCH_PROFILE: undefined,
  WIREWATCH_STORAGE_CONNECTION_STRING: undefined,
  WIREWATCH_LOCATION: undefined,
  WIREWATCH_RESOURCE_GROUP: undefined,
  // Tables show local times: UTC makes them predictable.
  TZ: 'UTC',
};

/** json output: exit 0, nothing on stderr, stdout one JSON document. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export function json(r: CliResult): any {
  expect(r, r.stderr).toMatchObject({ code: 0, stderr: '' });
  return JSON.parse(r.stdout);
}

/** table output: exit 0, a header with exactly these columns, a rule of dashes; the rows. */
export function table(r: CliResult, headers: readonly string[]): string[] {
  expect(r, r.stderr).toMatchObject({ code: 0, stderr: '' });
  expect(r.stdout.endsWith('\n')).toBe(true);
  const lines = r.stdout.slice(0, -1).split('\n');
  expect(lines[0]!.split(/\s+/)).toEqual(headers);
  expect(lines[1]).toMatch(/^-+( +-+)*$/);
  expect(lines[1]!.split(/ +/)).toHaveLength(headers.length);
  return lines.slice(2);
}

/** tsv output: exit 0, no header, every line `columns` tab-separated values; the rows. */
export function tsv(r: CliResult, columns: number): string[][] {
  expect(r, r.stderr).toMatchObject({ code: 0, stderr: '' });
  if (r.stdout === '') return [];
  expect(r.stdout.endsWith('\n')).toBe(true);
  const rows = r.stdout
    .slice(0, -1)
    .split('\n')
    .map((line) => line.split('\t'));
  for (const row of rows) expect(row).toHaveLength(columns);
  return rows;
}

/** A refusal: exit 1, nothing on stdout, `wirewatch: CODE: message` as the one stderr line. */
export function refused(r: CliResult, code: string): void {
  expect(r.stdout).toBe('');
  expect(r.stderr).toMatch(new RegExp(`^wirewatch: ${code}: [^\\n]+\\n$`));
  expect(r.code).toBe(1);
}

/** A usage error: exit 2, nothing on stdout, stderr naming `what`. */
export function usage(r: CliResult, what: RegExp): void {
  expect(r.stdout).toBe('');
  expect(r.stderr).toMatch(what);
  expect(r.code).toBe(2);
}
