/**
 * Errors in the user's words: an error about an API field (`properties.timeLimitInSeconds`,
 * `filters[0].localPort`) said about the option the user typed (`--time-limit`,
 * `--filters [0].localPort`). The rules stay where they are (the model, the server); a command
 * only says which of its options sets which field.
 */

import { RefusedError } from './cli-errors.js';

/** A command's options by the field they set (the path under `properties`), e.g. `filters`. */
export type OptionFields = Readonly<Record<string, string>>;

/** What an error says, and about which field. */
export interface FieldError {
  readonly message: string;
  readonly target?: string | undefined;
}

/**
 * The message of `err` naming the option instead of the field, with a hint for a number where
 * a string belongs; undefined when no option of `fields` sets the field. `sent` is what the
 * fields were set to (the request's `properties`), for the hint.
 */
export function inOptionWords(
  err: FieldError,
  fields: OptionFields,
  sent: unknown,
): string | undefined {
  if (err.target === undefined) return undefined;
  const path = err.target.replace(/^properties\./, '');
  // The longest field that is the target or contains it: `filters` for `filters[0].localPort`.
  const field = Object.keys(fields)
    .filter((f) => path === f || path.startsWith(`${f}.`) || path.startsWith(`${f}[`))
    .sort((a, b) => b.length - a.length)[0];
  if (field === undefined) return undefined;
  const rest = path.slice(field.length).replace(/^\./, '');
  const value = valueAt(sent, path);
  // An entry of a list option (`--include 0 7`, `scope.include[1]`) is named by what was typed.
  const entry =
    /^\[\d+\]$/.test(rest) && typeof value === 'string'
      ? /^[\w./-]+$/.test(value)
        ? value
        : JSON.stringify(value)
      : rest;
  const where = entry === '' ? fields[field]! : `${fields[field]!} ${entry}`;
  const prefix = `${err.target}: `;
  const rule = err.message.startsWith(prefix) ? err.message.slice(prefix.length) : err.message;
  if (
    (typeof value === 'number' || typeof value === 'boolean') &&
    /must be string|expected a string/.test(rule)
  ) {
    return `${where}: ${String(value)} is a ${typeof value}; write it as a string, "${String(value)}"`;
  }
  // `--time-limit 20000 is above …` when the rule begins with the value given to a whole option;
  // otherwise `--filters [0].localPort: …`, `--connection-string: AccountKey …`.
  return rest === '' && /^[-\d"]/.test(rule) ? `${where} ${rule}` : `${where}: ${rule}`;
}

/**
 * The server's refusal of a request that options filled in, said about those options (see
 * {@link inOptionWords}); any other error as it is.
 */
export function refusalInOptionWords(err: unknown, fields: OptionFields, sent: unknown): unknown {
  if (!(err instanceof RefusedError)) return err;
  const message = inOptionWords(err, fields, sent);
  return message === undefined ? err : new RefusedError(err.status, err.code, message, err.target);
}

/** The value at a field path (`filters[0].localPort`) of `root`. */
function valueAt(root: unknown, path: string): unknown {
  let value = root;
  for (const key of path.split(/\.|\[(\d+)\]/).filter((k) => k !== undefined && k !== '')) {
    if (value === null || typeof value !== 'object' || !Object.hasOwn(value, key)) return undefined;
    value = (value as Record<string, unknown>)[key];
  }
  return value;
}
