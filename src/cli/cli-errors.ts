/**
 * The CLI's failures, each with its code (from the registry, src/model/errors.ts) and its exit
 * code: 1 a request the server refused, 2 a usage error, 3 the server unreachable or its TLS
 * not trusted. Every one is printed as one line, `wirewatch: CODE: message`.
 */
import { CommanderError } from 'commander';
import { WirewatchError, type ErrorCode } from '../model/errors.js';

/** The command line is wrong (exit 2). */
export class UsageError extends Error {
  override readonly name = 'UsageError';
  readonly exitCode = 2;
  constructor(
    message: string,
    readonly code: ErrorCode = 'InvalidCommandLine',
  ) {
    super(message);
  }
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
  constructor(
    message: string,
    readonly code: ErrorCode = 'ServerUnreachable',
  ) {
    super(message);
  }
}

export type CliError = UsageError | RefusedError | UnreachableError;

export function isCliError(err: unknown): err is CliError {
  return (
    err instanceof UsageError || err instanceof RefusedError || err instanceof UnreachableError
  );
}

/** The one stderr line for a failure. */
export function describeCliError(err: CliError): string {
  return `wirewatch: ${err.code}: ${err.message}`;
}

/**
 * Any failure as its stderr line and exit code: the CLI's own errors, commander's usage errors
 * (its `error: ` prefix dropped), the model's coded errors (a 4xx code is the user's input:
 * exit 2), and anything else as CommandFailed.
 */
export function reportOf(err: unknown): { line: string; exitCode: number } {
  if (isCliError(err)) return { line: describeCliError(err), exitCode: err.exitCode };
  if (err instanceof CommanderError) {
    const message = err.message.replace(/^error: /, '');
    return { line: `wirewatch: InvalidCommandLine: ${message}`, exitCode: 2 };
  }
  if (err instanceof WirewatchError) {
    return { line: `wirewatch: ${err.code}: ${err.message}`, exitCode: err.status < 500 ? 2 : 1 };
  }
  const message = err instanceof Error ? err.message : String(err);
  return { line: `wirewatch: CommandFailed: ${message}`, exitCode: 1 };
}

/**
 * Pcap bytes are not for a terminal: the same refusal for `capture stream` and
 * `capture download --file -`.
 */
export function refuseTerminalStdout(): void {
  if (process.stdout.isTTY) {
    throw new UsageError(
      'stdout is a terminal: pipe the pcap bytes into a reader (| tcpdump -r -, | wireshark -k -i -) or redirect them to a file',
    );
  }
}

/**
 * A network error as the CLI says it: a plain-HTTP server behind an https:// URL by name, a TLS
 * failure without OpenSSL's raw text, anything else as unreachable.
 */
export function unreachableOf(
  err: NodeJS.ErrnoException,
  server: string,
  caGiven: boolean,
): UnreachableError {
  const text = `${err.code ?? ''} ${err.message}`;
  if (/wrong version number|WRONG_VERSION_NUMBER|packet length too long/i.test(text)) {
    return new UnreachableError(
      `${server} answered in plain HTTP, not TLS: this server speaks HTTP; use ${server.replace(/^https:/, 'http:')}`,
      'TlsFailure',
    );
  }
  if (/certificate|SSL|TLS|self.signed|EPROTO/i.test(text)) {
    // OpenSSL's text ("…:error:0A000086:SSL routines:…:certificate verify failed") → its reason.
    const reason = /SSL routines:[^:]*:([^\n]+)/.exec(err.message)?.[1]?.trim() ?? err.message;
    return new UnreachableError(
      `TLS failure talking to ${server}: ${reason}${caGiven ? '' : ' (pass --ca FILE at login, or set WIREWATCH_CA)'}`,
      'TlsFailure',
    );
  }
  return new UnreachableError(`cannot reach ${server}: ${err.message}`);
}
