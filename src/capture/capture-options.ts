/**
 * What a capture is given and what it gives back: the runner's options, progress and result,
 * and the clock and spawn it takes so that a test can drive it.
 */
import type { ChildProcess, SpawnOptions } from 'node:child_process';
import type { WirewatchError } from '../model/errors.js';
import type { SessionStopReason } from '../model/stop-reason.js';
import type { FilterSpec } from './filter-spec.js';
import type { CaptureLimits, RingSettings } from '../model/capture-limits.js';
import type { OwnTraffic } from './own-traffic.js';

/** Why a capture ended. AgentRestarted and TargetDeleted are added by the agent and server. */
export type StopReason = Exclude<SessionStopReason, 'AgentRestarted' | 'TargetDeleted'>;

export interface CaptureProgress {
  /** Packets written to the capture file(s): whole records, counted from the file(s). */
  readonly packets: number;
  /**
   * Bytes of the capture file(s) that hold those packets, pcap headers included: the bytes of
   * exactly the packets counted, so the two move together.
   */
  readonly bytes: number;
  /** Packets the kernel dropped because the capture fell behind (tcpdump's counter). */
  readonly kernelDrops: number;
  /** Packets that matched the filter in the kernel (tcpdump's counter). */
  readonly receivedByFilter: number;
  readonly elapsedMs: number;
}

export interface CaptureResult extends CaptureProgress {
  readonly stopReason: StopReason;
  /** The capture files that exist at the end, oldest first. */
  readonly files: readonly string[];
  /** When tcpdump was capturing: the file holds no packet stamped before it. */
  readonly startedAt: Date;
  /**
   * When the capture ended. For a stop by the time limit, the deadline (startedAt + the limit)
   * exactly: the file holds no packet stamped after it, however late the stop came.
   */
  readonly stoppedAt: Date;
  /** Packets tcpdump reports it captured; equals `packets` unless a limit cut the stream. */
  readonly tcpdumpCaptured: number;
  /**
   * Packets tcpdump captured that were stamped outside [startedAt, deadline] and so left out:
   * the kernel's last block, handed over after the deadline, or one from before the start.
   */
  readonly outsideTimeLimit: number;
  /**
   * Single file: where the file's bytes were rewritten when records left out from before its
   * end were closed up (see PcapRepairResult.rewrittenFrom); a reader of the growing file (the
   * blob upload) reads again from there.
   */
  readonly rewrittenFrom?: number;
  /** Set when stopReason is Error: CaptureFailed or LocalFileFailed with the cause. */
  readonly error?: WirewatchError;
}

/** A clock the runner uses for every timer, so tests can drive time. */
export interface Clock {
  /** The wall clock, ms since the epoch (the clock packets are stamped with). */
  now(): number;
  /** A monotonic clock, ms, that the time limit is measured on; default `now`. */
  monotonicNow?(): number;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

export type SpawnFunction = (
  command: string,
  args: readonly string[],
  options: SpawnOptions,
) => ChildProcess;

export interface CaptureOptions {
  readonly interface: string;
  /** Run tcpdump inside this network namespace (`ip netns exec`). */
  readonly netns?: string;
  readonly filters?: readonly FilterSpec[];
  /** Connections the kernel filter leaves out whatever `filters` say (the agent's own). */
  readonly ownTraffic?: OwnTraffic;
  readonly limits?: Partial<CaptureLimits>;
  /**
   * Continuous capture: a ring of files instead of one; replaces totalBytesPerSession. Its
   * session limit bounds the time, and so does `limits.timeLimitInSeconds` when given: the
   * earlier one ends the capture.
   */
  readonly ring?: RingSettings;
  /** The capture file (for a ring, the name its files are derived from). Must lie under captureRoot. */
  readonly filePath: string;
  readonly captureRoot?: string;
  readonly tcpdumpPath?: string;
  /** Kernel capture buffer (tcpdump -B), KiB. */
  readonly bufferKiB?: number;
  readonly progressIntervalMs?: number;
  readonly onProgress?: (progress: CaptureProgress) => void;
  /** Continuous mode: ring file `index` is complete (see RingBufferOptions.onFileClosed). */
  readonly onRingFileClosed?: (path: string, index: number) => Promise<void> | void;
  /** Aborting stops the capture with ManualIntervention. */
  readonly signal?: AbortSignal;
  readonly spawn?: SpawnFunction;
  readonly clock?: Clock;
  /** How long a stop waits for the kernel to hand over captured packets (default 1200 ms). */
  readonly drainMs?: number;
  /** While a viewer watches: how often tcpdump's output is flushed (default 200 ms). */
  readonly liveFlushMs?: number;
  /** Free bytes below which a single-file capture stops with LocalFileFailed (default 512 KiB). */
  readonly diskReserveBytes?: number;
  /** How long tcpdump may take to open the interface. */
  readonly startTimeoutMs?: number;
}

/** How far before the start a leading packet's stamp may lie and still be from before it. */
export const START_SLACK_US = 2_000_000;

export const systemClock: Clock = {
  now: () => Date.now(),
  monotonicNow: () => performance.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (handle) => clearTimeout(handle as NodeJS.Timeout),
};
