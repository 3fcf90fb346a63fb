/**
 * The registry of wirewatch's stable error codes, grouped by area, each with its HTTP status.
 * Codes are never reused or renamed; every code here has a line in docs/errors.md (a test
 * checks both ways).
 */
export const errorCodes = {
  // Request validation (filters, limits, paths)
  InvalidFilter: { status: 400, area: 'filters' },
  InvalidCaptureLimit: { status: 400, area: 'validation' },
  InvalidCapturePath: { status: 400, area: 'validation' },
  // Capture engine (the host side)
  CaptureFailed: { status: 500, area: 'capture' },
  LocalFileFailed: { status: 500, area: 'capture' },
  // pcap files (reading, repairing, merging)
  InvalidPcap: { status: 400, area: 'pcap' },
} as const satisfies Record<string, { status: number; area: string }>;

export type ErrorCode = keyof typeof errorCodes;

export interface WirewatchErrorOptions {
  /** The field or thing the error is about, e.g. `filters[0].localPort`. */
  readonly target?: string;
  readonly cause?: unknown;
}

/** An error with a stable code; its body on the API is Azure's `{"error":{"code","message","target"}}`. */
export class WirewatchError extends Error {
  override readonly name = 'WirewatchError';
  readonly code: ErrorCode;
  readonly target: string | undefined;

  constructor(code: ErrorCode, message: string, options: WirewatchErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.target = options.target;
  }

  get status(): number {
    return errorCodes[this.code].status;
  }

  toBody(): { error: { code: string; message: string; target?: string } } {
    return {
      error: {
        code: this.code,
        message: this.message,
        ...(this.target === undefined ? {} : { target: this.target }),
      },
    };
  }
}
