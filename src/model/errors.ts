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
  // HTTP requests (any route)
  MissingApiVersionParameter: { status: 400, area: 'request' },
  InvalidApiVersionParameter: { status: 400, area: 'request' },
  InvalidRequestContent: { status: 400, area: 'request' },
  UnsupportedMediaType: { status: 415, area: 'request' },
  RequestBodyTooLarge: { status: 413, area: 'request' },
  NotFound: { status: 404, area: 'request' },
  TooManyRequests: { status: 429, area: 'request' },
  // Credentials and tenancy
  AuthenticationFailed: { status: 401, area: 'auth' },
  AuthorizationFailed: { status: 403, area: 'auth' },
  InvalidEnrollmentToken: { status: 401, area: 'auth' },
  // Resources
  SubscriptionNotFound: { status: 404, area: 'resources' },
  ResourceNotFound: { status: 404, area: 'resources' },
  ParentResourceNotFound: { status: 404, area: 'resources' },
  NetworkWatcherCountLimitReached: { status: 400, area: 'resources' },
  InvalidResourceName: { status: 400, area: 'resources' },
  InvalidLocation: { status: 400, area: 'resources' },
  // Packet captures (the control plane)
  InvalidTarget: { status: 400, area: 'captures' },
  InvalidScope: { status: 400, area: 'captures' },
  TargetNotInNetworkWatcherLocation: { status: 400, area: 'captures' },
  InvalidStorageLocation: { status: 400, area: 'captures' },
  StorageAccountNotFound: { status: 400, area: 'captures' },
  PacketCaptureAlreadyExists: { status: 409, area: 'captures' },
  PacketCaptureQuotaExceeded: { status: 429, area: 'captures' },
  OperationNotFound: { status: 404, area: 'captures' },
  // Storage accounts
  InvalidConnectionString: { status: 400, area: 'storage' },
  StorageAccountUnreachable: { status: 400, area: 'storage' },
  StorageAccountAccessDenied: { status: 400, area: 'storage' },
  // Agents
  AgentAlreadyConnected: { status: 409, area: 'agents' },
  VmAlreadyEnrolled: { status: 409, area: 'agents' },
  EnrollmentLimitReached: { status: 403, area: 'agents' },
  // Downloads (GET …/packetCaptures/{name}/content)
  CaptureStillRunning: { status: 409, area: 'downloads' },
  RangeNotSatisfiable: { status: 416, area: 'downloads' },
  CaptureFileGone: { status: 410, area: 'downloads' },
  AgentNotConnected: { status: 503, area: 'downloads' },
  CaptureFileUnavailable: { status: 502, area: 'downloads' },
  // Live streams (GET …/packetCaptures/{name}/stream)
  CaptureNotRunning: { status: 409, area: 'streams' },
  // The server itself
  InternalServerError: { status: 500, area: 'server' },
  // The command line (the CLI's own errors; never sent by the API, the status is the nearest)
  InvalidCommandLine: { status: 400, area: 'cli' },
  InterfaceNotFound: { status: 400, area: 'cli' },
  WaitTimedOut: { status: 408, area: 'cli' },
  ServerUnreachable: { status: 503, area: 'cli' },
  TlsFailure: { status: 502, area: 'cli' },
  CommandFailed: { status: 500, area: 'cli' },
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
