/**
 * The CLI's failures, each with its exit code: 1 a request the server refused (its code and
 * message on one line), 2 a usage error, 3 the server unreachable or its TLS not trusted.
 */

/** The command line is wrong (exit 2). */
export class UsageError extends Error {
  override readonly name = 'UsageError';
  readonly exitCode = 2;
}

/** The server answered with an error (exit 1). */
export class RefusedError extends Error {
  override readonly name = 'RefusedError';
  readonly exitCode = 1;
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly target?: string,
  ) {
    super(message);
  }
}

/** The server could not be reached, or its certificate is not trusted (exit 3). */
export class UnreachableError extends Error {
  override readonly name = 'UnreachableError';
  readonly exitCode = 3;
}

export type CliError = UsageError | RefusedError | UnreachableError;

export function isCliError(err: unknown): err is CliError {
  return (
    err instanceof UsageError || err instanceof RefusedError || err instanceof UnreachableError
  );
}

/** The one stderr line for a failure. */
export function describeCliError(err: CliError): string {
  if (err instanceof RefusedError) return `wirewatch: ${err.code}: ${err.message}`;
  return `wirewatch: ${err.message}`;
}
