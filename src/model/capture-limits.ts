/**
 * A packet capture's limits: Azure's defaults and maxima, the rule that 0 means the maximum, and
 * how long a ring runs. The one home of these rules: the API's create, the stored capture
 * (capture-settings.ts), the agent's check of what it is told and the CLI all use them.
 */
import { WirewatchError } from './errors.js';

/** Azure's defaults and maxima for a packet capture's limits (networkWatcher.json). */
export const captureLimitBounds = {
  bytesToCapturePerPacket: { default: 0, max: 4294967295 },
  totalBytesPerSession: { default: 1073741824, max: 4294967295, min: 24 },
  timeLimitInSeconds: { default: 18000, max: 18000 },
  fileCount: { default: 10, max: 10000 },
  fileSizeInBytes: { default: 104857600, max: 4294967295, min: 24 },
  sessionTimeLimitInSeconds: { default: 86400, max: 604800 },
} as const;

export type CaptureLimitName = keyof typeof captureLimitBounds;

/** The limits of one capture, resolved: every value present and within its bounds. */
export interface CaptureLimits {
  /** 0 = whole packet. */
  readonly bytesToCapturePerPacket: number;
  readonly totalBytesPerSession: number;
  readonly timeLimitInSeconds: number;
}

export interface RingSettings {
  readonly fileCount: number;
  readonly fileSizeInBytes: number;
  readonly sessionTimeLimitInSeconds: number;
}

/**
 * The value a limit stands for, of one already checked (or absent): absent → Azure's default.
 * Zero keeps Azure's meaning where it has one (bytesToCapturePerPacket 0 = whole packet); for the
 * other limits 0 would make a capture that can hold nothing, so it means "the maximum" — a
 * capture is always bounded.
 */
export function limitValue(name: CaptureLimitName, value: number | null | undefined): number {
  const bounds = captureLimitBounds[name];
  if (value === undefined || value === null) return bounds.default;
  return value === 0 && name !== 'bytesToCapturePerPacket' ? bounds.max : value;
}

/**
 * Resolves one limit: checks it is a whole number in 0..max (and not below a minimum), and gives
 * the value it stands for (limitValue: absent → the default, 0 → the maximum).
 */
export function resolveLimit(
  name: CaptureLimitName,
  value: unknown,
  target: string = name,
): number {
  const bounds: { default: number; max: number; min?: number } = captureLimitBounds[name];
  if (value === undefined || value === null) return limitValue(name, value);
  if (typeof value === 'number' && Number.isInteger(value) && value > bounds.max) {
    throw new WirewatchError(
      'InvalidCaptureLimit',
      `${target}: ${value} is above the maximum ${bounds.max}`,
      { target },
    );
  }
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 0) {
    throw new WirewatchError(
      'InvalidCaptureLimit',
      `${target}: ${JSON.stringify(value)} is not a whole number from 0 to ${bounds.max}`,
      { target },
    );
  }
  if (value === 0) return limitValue(name, value);
  if (bounds.min !== undefined && value < bounds.min) {
    throw new WirewatchError(
      'InvalidCaptureLimit',
      `${target}: ${value} is too small: a capture file needs at least ${bounds.min} bytes for its pcap header (0 means the maximum)`,
      { target },
    );
  }
  return limitValue(name, value);
}

export function resolveCaptureLimits(input: {
  readonly bytesToCapturePerPacket?: unknown;
  readonly totalBytesPerSession?: unknown;
  readonly timeLimitInSeconds?: unknown;
}): CaptureLimits {
  return {
    bytesToCapturePerPacket: resolveLimit('bytesToCapturePerPacket', input.bytesToCapturePerPacket),
    totalBytesPerSession: resolveLimit('totalBytesPerSession', input.totalBytesPerSession),
    timeLimitInSeconds: resolveLimit('timeLimitInSeconds', input.timeLimitInSeconds),
  };
}

/**
 * How long a continuous capture runs: its session limit, or an explicit `timeLimitInSeconds` when
 * that is earlier — the earliest limit ends a capture. Without an explicit time limit only the
 * session limit applies (timeLimitInSeconds' default, 5 h, would otherwise cut a ring's default
 * day short).
 */
export function ringDurationSeconds(
  ring: Pick<RingSettings, 'sessionTimeLimitInSeconds'>,
  explicitTimeLimitInSeconds: number | undefined,
): number {
  return Math.min(ring.sessionTimeLimitInSeconds, explicitTimeLimitInSeconds ?? Infinity);
}

export function resolveRingSettings(
  input: {
    readonly fileCount?: unknown;
    readonly fileSizeInBytes?: unknown;
    readonly sessionTimeLimitInSeconds?: unknown;
  } = {},
  prefix = 'captureSettings.',
): RingSettings {
  return {
    fileCount: resolveLimit('fileCount', input.fileCount, `${prefix}fileCount`),
    fileSizeInBytes: resolveLimit(
      'fileSizeInBytes',
      input.fileSizeInBytes,
      `${prefix}fileSizeInBytes`,
    ),
    sessionTimeLimitInSeconds: resolveLimit(
      'sessionTimeLimitInSeconds',
      input.sessionTimeLimitInSeconds,
      `${prefix}sessionTimeLimitInSeconds`,
    ),
  };
}
