import type { ErrorCode } from './errors.js';

/**
 * Azure's `PcError` enum (networkWatcher.json → common.json): the only values
 * `packetCaptureError` of queryStatus may hold. wirewatch's detailed code of the same error goes
 * to `packetCaptureErrorDetails`.
 */
export const pcErrors = [
  'InternalError',
  'AgentStopped',
  'CaptureFailed',
  'LocalFileFailed',
  'StorageFailed',
] as const;

export type PcError = (typeof pcErrors)[number];

/**
 * Every registry code as a PcError. A Record over ErrorCode, so a code added to the registry
 * does not compile until it is mapped here.
 */
const fromRegistry: Readonly<Record<ErrorCode, PcError>> = {
  // The capture could not be set up as asked: it failed to start.
  InvalidFilter: 'CaptureFailed',
  InvalidCaptureLimit: 'CaptureFailed',
  CaptureFailed: 'CaptureFailed',
  InvalidTarget: 'CaptureFailed',
  // The capture file: could not be created where asked, written, read back or repaired.
  InvalidCapturePath: 'LocalFileFailed',
  InvalidStorageLocation: 'LocalFileFailed',
  LocalFileFailed: 'LocalFileFailed',
  InvalidPcap: 'LocalFileFailed',
  CaptureFileGone: 'LocalFileFailed',
  CaptureFileUnavailable: 'LocalFileFailed',
  // Blob storage.
  StorageAccountNotFound: 'StorageFailed',
  InvalidConnectionString: 'StorageFailed',
  StorageAccountUnreachable: 'StorageFailed',
  StorageAccountAccessDenied: 'StorageFailed',
  // The agent is not there to run it.
  AgentNotConnected: 'AgentStopped',
  AgentAlreadyConnected: 'AgentStopped',
  CaptureNotRunning: 'AgentStopped',
  // Codes of API requests: reaching a capture's errors at all would be a bug.
  MissingApiVersionParameter: 'InternalError',
  InvalidApiVersionParameter: 'InternalError',
  InvalidRequestContent: 'InternalError',
  UnsupportedMediaType: 'InternalError',
  RequestBodyTooLarge: 'InternalError',
  TooManyRequests: 'InternalError',
  NotFound: 'InternalError',
  VmAlreadyEnrolled: 'InternalError',
  EnrollmentLimitReached: 'InternalError',
  AuthenticationFailed: 'InternalError',
  AuthorizationFailed: 'InternalError',
  InvalidEnrollmentToken: 'InternalError',
  SubscriptionNotFound: 'InternalError',
  ResourceNotFound: 'InternalError',
  ParentResourceNotFound: 'InternalError',
  NetworkWatcherCountLimitReached: 'InternalError',
  InvalidResourceName: 'InternalError',
  InvalidLocation: 'InternalError',
  TargetNotInNetworkWatcherLocation: 'InternalError',
  InvalidScope: 'InternalError',
  PacketCaptureAlreadyExists: 'InternalError',
  PacketCaptureQuotaExceeded: 'InternalError',
  OperationNotFound: 'InternalError',
  CaptureStillRunning: 'InternalError',
  RangeNotSatisfiable: 'InternalError',
  InternalServerError: 'InternalError',
  // The CLI's own codes: never a capture's.
  InvalidCommandLine: 'InternalError',
  InterfaceNotFound: 'InternalError',
  WaitTimedOut: 'InternalError',
  ServerUnreachable: 'InternalError',
  TlsFailure: 'InternalError',
  CommandFailed: 'InternalError',
};

/**
 * The PcError a capture error's code is reported as in `packetCaptureError`. Accepts any string
 * (agents send codes as text): a PcError stays itself, a registry code maps to the nearest
 * PcError, and anything unknown is `InternalError`.
 */
export function toPcError(code: string): PcError {
  if ((pcErrors as readonly string[]).includes(code)) return code as PcError;
  return Object.hasOwn(fromRegistry, code) ? fromRegistry[code as ErrorCode] : 'InternalError';
}
