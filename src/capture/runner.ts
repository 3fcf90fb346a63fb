/**
 * The capture runner: one tcpdump process on one interface (optionally inside a network
 * namespace), its packet-buffered pcap stream read by Node, and the session's limits enforced
 * here, where every byte passes: snaplen (by tcpdump), total bytes, time, continuous ring.
 */
import { spawn as nodeSpawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { access, mkdtemp, rm, stat, statfs } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { WirewatchError } from '../model/errors.js';
import type { SessionStopReason } from '../model/stop-reason.js';
import {
  compareTimestamp,
  FILE_HEADER_LENGTH,
  parseFileHeader,
} from '../pcap/format.js';
import { countPcapRecords, repairPcapFile, type PcapRecordCount } from '../pcap/reader.js';
import { PcapRecordWalker } from '../pcap/record-walker.js';
import type { TimestampPrecision } from '../pcap/types.js';
import { compileBpf } from './bpf.js';
import { withoutOwnTraffic, type OwnTraffic } from './own-traffic.js';
import { CaptureFile } from './capture-file.js';
import { DEFAULT_CAPTURE_ROOT, prepareCapturePath } from './capture-path.js';
import type { FilterSpec } from './filter-spec.js';
import {
  interfaceAddresses,
  isValidInterfaceName,
  isValidNetnsName,
} from './interface-addresses.js';
import type { CaptureLimits, RingSettings } from './limits.js';
import { captureLimitBounds, ringDurationSeconds } from './limits.js';
import { existingRingFiles, RingBuffer } from './ring-buffer.js';
import { startTcpdumpGuard, type TcpdumpGuard } from './tcpdump-guard.js';
import { TcpdumpLog } from './tcpdump-log.js';
import {
  catchesSignal,
  explainTcpdumpFailure,
  findExecutable,
  KERNEL_BLOCK_TIMEOUT_MS,
  LIVE_FLUSH_MS,
  MAX_SNAPLEN,
  parseTcpdumpStats,
  tcpdumpArgs,
  type TcpdumpStats,
} from './tcpdump.js';

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
  /** Free bytes below which a single-file capture stops with LocalFileFailed (default 512 KiB). */
  readonly diskReserveBytes?: number;
  /** How long tcpdump may take to open the interface. */
  readonly startTimeoutMs?: number;
}

/** Free space below which a capture stops before the disk is full: two of the largest packets. */
const DEFAULT_DISK_RESERVE = 2 * (MAX_SNAPLEN + 16);

/** How long tcpdump may take to exit after SIGINT before it is killed (a hung disk, say). */
const KILL_AFTER_MS = 10_000;

/** How far before the start a leading packet's stamp may lie and still be from before it. */
const START_SLACK_US = 2_000_000;

/**
 * A step of the wall clock smaller than this between the start and the deadline is not told
 * apart from the drift between the wall and the monotonic clock.
 */
const CLOCK_STEP_MS = 1000;

const systemClock: Clock = {
  now: () => Date.now(),
  monotonicNow: () => performance.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (handle) => clearTimeout(handle as NodeJS.Timeout),
};

/**
 * Starts a capture and resolves once tcpdump is capturing. Problems found before that (bad path,
 * tcpdump missing, interface or namespace missing, permission denied) reject with a
 * WirewatchError; problems after it end the session with stopReason Error.
 */
export async function startCapture(options: CaptureOptions): Promise<CaptureSession> {
  const session = new CaptureSession(options);
  await session.start();
  return session;
}

export class CaptureSession {
  readonly #options: CaptureOptions;
  readonly #clock: Clock;
  readonly #limits: CaptureLimits;
  #child: ChildProcess | undefined;
  /** Single-file mode: stops tcpdump, after the kernel's last block, if this process dies. */
  #guard: TcpdumpGuard | undefined;
  #log: TcpdumpLog | undefined;
  #workDir: string | undefined;
  #stats: TcpdumpStats | undefined;
  /** Single-file mode: the file tcpdump writes to directly. */
  #file: CaptureFile | undefined;
  /** Continuous mode: the ring Node writes the stream into. */
  #ring: RingBuffer | undefined;
  #packets = 0;
  /** Single-file mode: the whole records in the file and their bytes, as last counted. */
  #count: PcapRecordCount = { bytes: 0, records: 0 };
  /** Single-file mode: the file's size once tcpdump is done and the file is repaired. */
  #finalBytes: number | undefined;
  #startedAt = new Date(0);
  #startedMs = 0;
  /** The start on the monotonic clock. */
  #startedMono = 0;
  /** The deadline: start + the time limit, on the wall clock (the stop time it gives) and the monotonic one. */
  #deadlineMs = 0;
  #deadlineMono = 0;
  /**
   * Set once the deadline has passed: packets stamped after this (µs since the epoch, on the
   * clock the kernel stamps with) are left out.
   */
  #endUs: number | undefined;
  /** Single-file mode: the file's size last seen before the deadline; what lies there stays. */
  #sizeBeforeDeadline = 0;
  /** Ring mode: a packet was written (packets stamped before the start lead, if any). */
  #wroteRecord = false;
  /** Packets left out because they were stamped outside [start, deadline]. */
  #outsideWindow = 0;
  #stopReason: StopReason | undefined;
  #error: WirewatchError | undefined;
  #writing = true;
  /** One-off timers: the time limit, the drain before SIGINT, the SIGKILL fallback. */
  #timers: unknown[] = [];
  /** The next watch/progress tick (re-armed every 100 ms, so not kept in #timers). */
  #tickTimer: unknown;
  #result: Promise<CaptureResult> | undefined;
  #abortListener: (() => void) | undefined;
  /** tcpdump listens: stop signals can be sent. */
  #listening = false;
  #interrupted = false;
  /** tcpdump has exited: no timer may re-arm. */
  #done = false;
  /** Live viewers holding {@link watch}; while there are any, tcpdump's output is flushed. */
  #watchers = 0;
  #flushTimer: unknown;
  /** Whether this tcpdump flushes on SIGUSR2 (asked once, at the first watch). */
  #flushes: Promise<boolean> | undefined;

  constructor(options: CaptureOptions) {
    this.#options = options;
    this.#clock = options.clock ?? systemClock;
    const limits = options.limits ?? {};
    this.#limits = {
      bytesToCapturePerPacket:
        limits.bytesToCapturePerPacket ?? captureLimitBounds.bytesToCapturePerPacket.default,
      totalBytesPerSession:
        limits.totalBytesPerSession ?? captureLimitBounds.totalBytesPerSession.default,
      timeLimitInSeconds:
        limits.timeLimitInSeconds ?? captureLimitBounds.timeLimitInSeconds.default,
    };
  }

  /** When tcpdump was capturing (the capture's start; its deadline is this plus the limit). */
  get startedAt(): Date {
    return this.#startedAt;
  }

  /** Resolves when the capture has ended, however it ended. */
  get result(): Promise<CaptureResult> {
    if (this.#result === undefined) throw new Error('capture not started');
    return this.#result;
  }

  /**
   * What has been written so far. In single-file mode packets and bytes are counted from the
   * file at each progress report; tcpdump's output is buffered, so the file may trail the kernel
   * until the next report (with `onProgress`, each report has tcpdump write out what it holds),
   * but both always describe the same packets.
   */
  progress(): CaptureProgress {
    const ring = this.#ring;
    const done = this.#finalBytes !== undefined;
    return {
      packets: ring !== undefined || done ? this.#packets : this.#count.records,
      bytes: ring?.bytesWritten ?? this.#finalBytes ?? this.#count.bytes,
      kernelDrops: this.#stats?.droppedByKernel ?? 0,
      receivedByFilter: this.#stats?.receivedByFilter ?? 0,
      elapsedMs: this.#startedMs === 0 ? 0 : this.#clock.now() - this.#startedMs,
    };
  }

  /**
   * A live viewer is watching: until the returned function is called, tcpdump's buffered output
   * is flushed every LIVE_FLUSH_MS (SIGUSR2), so each packet reaches the file (or the ring's
   * pipe) soon after the kernel hands it over, however quiet the capture. Without viewers
   * nothing of this runs: the capture costs what it always did.
   */
  watch(): () => void {
    this.#watchers += 1;
    if (this.#watchers === 1) this.#scheduleFlush(0);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.#watchers -= 1;
      if (this.#watchers === 0) this.#clock.clearTimeout(this.#flushTimer);
    };
  }

  #scheduleFlush(ms: number): void {
    this.#flushTimer = this.#clock.setTimeout(() => {
      void this.#flush().then(() => {
        if (this.#watchers > 0 && !this.#done) this.#scheduleFlush(LIVE_FLUSH_MS);
      });
    }, ms);
  }

  async #flush(): Promise<void> {
    const child = this.#child;
    if (!this.#listening || this.#done || child?.pid === undefined) return;
    this.#flushes ??= catchesSignal(child.pid, 'SIGUSR2');
    if ((await this.#flushes) && !this.#done) child.kill('SIGUSR2');
  }

  /** Stops the capture (ManualIntervention) and resolves with the result once every packet is written. */
  stop(): Promise<CaptureResult> {
    this.#requestStop('ManualIntervention');
    return this.result;
  }

  /** Stops if still running and waits for the end; safe to call twice. */
  async close(): Promise<void> {
    if (this.#result === undefined) return;
    await this.stop();
  }

  async start(): Promise<void> {
    const o = this.#options;
    if (o.signal?.aborted) {
      throw new WirewatchError('CaptureFailed', 'the capture was cancelled before it started');
    }
    // Listen from the start: an abort while tcpdump is starting stops the capture as soon as
    // it runs (a stop recorded before then is acted on once tcpdump listens).
    if (o.signal !== undefined) {
      this.#abortListener = () => this.#requestStop('ManualIntervention');
      o.signal.addEventListener('abort', this.#abortListener, { once: true });
    }
    try {
      await this.#start();
    } catch (err) {
      this.#removeAbortListener();
      throw err instanceof WirewatchError ? err : toWirewatchError(err);
    }
  }

  #removeAbortListener(): void {
    if (this.#abortListener !== undefined) {
      this.#options.signal?.removeEventListener('abort', this.#abortListener);
      this.#abortListener = undefined;
    }
  }

  async #start(): Promise<void> {
    const o = this.#options;
    const fail = (message: string, target?: string): never => {
      throw new WirewatchError('CaptureFailed', message, target === undefined ? {} : { target });
    };
    if (!isValidInterfaceName(o.interface)) {
      fail(`"${o.interface}" is not an interface name`, 'interface');
    }
    if (o.netns !== undefined) {
      if (!isValidNetnsName(o.netns)) fail(`"${o.netns}" is not a network namespace name`, 'netns');
      await access(`/run/netns/${o.netns}`).catch(() =>
        fail(`network namespace ${o.netns} does not exist`, 'netns'),
      );
    }
    const root = o.captureRoot ?? DEFAULT_CAPTURE_ROOT;
    const filePath = await prepareCapturePath(o.filePath, root);
    const tcpdump = await findExecutable(o.tcpdumpPath ?? 'tcpdump');
    if (tcpdump === undefined) {
      fail(
        `tcpdump is not installed (${o.tcpdumpPath ?? 'tcpdump'} not found; apt-get install tcpdump)`,
      );
    }
    const hostAddresses = await interfaceAddresses(o.interface, o.netns);
    const bpf = withoutOwnTraffic(compileBpf(o.filters ?? [], { hostAddresses }), o.ownTraffic);

    const per = this.#limits.bytesToCapturePerPacket;
    const args = tcpdumpArgs({
      iface: o.interface,
      snaplen: per === 0 || per > MAX_SNAPLEN ? MAX_SNAPLEN : per,
      bufferKiB: o.bufferKiB ?? 8192,
      bpf,
    });
    // If this process dies, tcpdump must flush and exit instead of capturing on with nobody to
    // stop it. A single file's tcpdump gets a guard that stops it once the kernel has handed
    // over the packets captured before the death (tcpdump-guard.ts); a ring's tcpdump writes
    // through this process, so `setpriv --pdeathsig INT` stops it at once (as it does a single
    // file's when there is no shell for the guard).
    const shell = o.ring === undefined ? await findExecutable('/bin/sh') : undefined;
    const setpriv = shell === undefined ? await findExecutable('setpriv') : undefined;
    const capture = [
      ...(setpriv === undefined ? [] : [setpriv, '--pdeathsig', 'INT']),
      tcpdump!,
      ...args,
    ];
    const [command, ...commandArgs] =
      o.netns === undefined ? capture : ['ip', 'netns', 'exec', o.netns, ...capture];

    try {
      this.#workDir = await mkdtemp(path.join(tmpdir(), 'wirewatch-tcpdump-'));
      this.#log = await TcpdumpLog.create(path.join(this.#workDir, 'stderr'));
      // Single file: tcpdump writes the capture file itself, exactly as a bare `tcpdump -w`
      // would, so capturing costs no more than tcpdump; limits are enforced around it. A ring
      // needs exact file boundaries, so its stream passes through Node.
      let stdout: number | 'pipe' = 'pipe';
      if (o.ring === undefined) {
        this.#file = await CaptureFile.create(filePath);
        stdout = this.#file.fd;
      } else {
        const clash = await existingRingFiles(filePath);
        if (clash.length > 0) {
          throw new WirewatchError(
            'LocalFileFailed',
            `${clash[0]} already exists: a continuous capture named ${path.basename(filePath)} ran here before`,
            { target: 'filePath' },
          );
        }
      }
      const spawn = o.spawn ?? nodeSpawn;
      // detached: tcpdump gets its own process group, so a Ctrl-C on the terminal reaches only
      // wirewatch, which stops tcpdump after the kernel has handed over its last packets.
      const child = spawn(command!, commandArgs, {
        stdio: ['ignore', stdout, this.#log.fd],
        detached: true,
      });
      this.#child = child;
      if (shell !== undefined && child.pid !== undefined) {
        // `ip netns exec` execs tcpdump: the child's pid is tcpdump's.
        this.#guard = startTcpdumpGuard(child.pid, {
          delayMs: o.drainMs ?? KERNEL_BLOCK_TIMEOUT_MS,
          shell,
        });
      }
      await this.#waitUntilListening(child, o.startTimeoutMs ?? 15_000);
    } catch (err) {
      await this.#cleanUp();
      if (this.#file !== undefined) await rm(filePath, { force: true });
      throw err;
    }
    // The start is when tcpdump said it listens: the stderr file's mtime, not when this
    // process got round to reading it (a loaded host may take a while). An injected clock has
    // no relation to file times and is taken as it is.
    const wallNow = this.#clock.now();
    const monoNow = this.#monotonicNow();
    const readyAt = o.clock === undefined ? this.#log.changedAtMs : wallNow;
    // Whole milliseconds, as the start is reported: the window is exactly what it says.
    this.#startedMs = Math.floor(Math.min(wallNow, readyAt > 0 ? readyAt : wallNow));
    this.#startedMono = monoNow - (wallNow - this.#startedMs);
    this.#startedAt = new Date(this.#startedMs);
    this.#listening = true;
    this.#result = this.#run(filePath);

    const seconds =
      o.ring === undefined
        ? this.#limits.timeLimitInSeconds
        : ringDurationSeconds(o.ring, o.limits?.timeLimitInSeconds);
    this.#deadlineMs = this.#startedMs + seconds * 1000;
    this.#deadlineMono = this.#startedMono + seconds * 1000;
    this.#timers.push(
      this.#clock.setTimeout(
        () => this.#onDeadline(),
        Math.max(0, this.#deadlineMono - this.#monotonicNow()),
      ),
    );
    this.#scheduleTicks();
    // A stop that came while tcpdump was starting.
    if (this.#stopReason !== undefined) this.#signalStop(this.#stopReason);
  }

  async #waitUntilListening(child: ChildProcess, timeoutMs: number): Promise<void> {
    const o = this.#options;
    let exited = false;
    let spawnError: Error | undefined;
    child.once('exit', () => (exited = true));
    child.once('error', (err) => (spawnError = err));
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const text = await this.#log!.refresh();
      if (text.includes('listening on')) {
        // Once more, for the mtime of the write that said so.
        await this.#log!.refresh();
        return;
      }
      if (spawnError !== undefined) {
        throw new WirewatchError('CaptureFailed', `cannot run tcpdump: ${spawnError.message}`, {
          cause: spawnError,
        });
      }
      if (exited) {
        await this.#log!.refresh();
        throw new WirewatchError(
          'CaptureFailed',
          explainTcpdumpFailure(this.#log!.text, o.interface, o.netns),
        );
      }
      if (Date.now() > deadline) {
        child.kill('SIGKILL');
        throw new WirewatchError('CaptureFailed', `tcpdump did not start within ${timeoutMs} ms`);
      }
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }

  #monotonicNow(): number {
    return this.#clock.monotonicNow?.() ?? this.#clock.now();
  }

  /**
   * The time limit is up. Packets stamped after the deadline are left out of what the drain
   * still brings: on the kernel's clock, the deadline is where the wall clock is now, less how
   * late this runs (a loaded host), and plus any step of the wall clock since the start.
   */
  #onDeadline(): void {
    const late = this.#monotonicNow() - this.#deadlineMono;
    const step = this.#clock.now() - late - this.#deadlineMs;
    const endMs = Math.abs(step) < CLOCK_STEP_MS ? this.#deadlineMs : this.#deadlineMs + step;
    this.#endUs = Math.round(endMs * 1000);
    this.#requestStop('TimeExceeded');
  }

  /** Watches the limits tcpdump cannot enforce itself, and reports progress. */
  #scheduleTicks(): void {
    const interval = this.#options.progressIntervalMs ?? 1000;
    const watchEvery = Math.min(interval, 100);
    let sinceProgress = 0;
    const tick = async () => {
      if (this.#stopReason !== undefined) return;
      await this.#watchFile();
      sinceProgress += watchEvery;
      if (sinceProgress >= interval && this.#stopReason === undefined) {
        sinceProgress = 0;
        this.#stats = parseTcpdumpStats(await this.#log!.refresh()) ?? this.#stats;
        // SIGUSR1 makes tcpdump print its counters (captured, kernel drops) for the next tick.
        this.#child?.kill('SIGUSR1');
        const onProgress = this.#options.onProgress;
        if (this.#file !== undefined) {
          // A file someone removed or cannot read is no reason to stop: the count stays.
          this.#count = await countPcapRecords(this.#file.path, this.#count).catch(
            () => this.#count,
          );
          // Someone reads the reports: have tcpdump write out what it holds, so that the next
          // count has it (a packet then shows within one interval, however quiet the capture).
          // One write per interval; tcpdump otherwise writes only when 4 KiB have gathered.
          if (onProgress !== undefined && this.#watchers === 0) void this.#flush();
        }
        if (this.#stopReason === undefined) onProgress?.(this.progress());
      }
      if (this.#stopReason === undefined && !this.#done) {
        this.#tickTimer = this.#clock.setTimeout(run, watchEvery);
      }
    };
    const run = () => void tick().catch((err) => this.#requestStop('Error', toWirewatchError(err)));
    this.#tickTimer = this.#clock.setTimeout(run, watchEvery);
  }

  /** Single-file mode: stop at the byte limit, and before the disk is full. */
  async #watchFile(): Promise<void> {
    const file = this.#file;
    if (file === undefined) return;
    const size = await file.refreshSize();
    // Measured before the deadline: every packet in these bytes was stamped before it.
    if (this.#monotonicNow() < this.#deadlineMono) this.#sizeBeforeDeadline = size;
    if (size > this.#limits.totalBytesPerSession) {
      this.#requestStop('SessionBytesExceeded');
      return;
    }
    const fs = await statfs(path.dirname(file.path));
    const reserve = this.#options.diskReserveBytes ?? DEFAULT_DISK_RESERVE;
    if (fs.bavail * fs.bsize < reserve) {
      this.#requestStop(
        'Error',
        new WirewatchError(
          'LocalFileFailed',
          `no space left on device for ${path.basename(file.path)}; the capture was stopped`,
        ),
      );
    }
  }

  #requestStop(reason: StopReason, error?: WirewatchError): void {
    if (this.#stopReason !== undefined) {
      // An error always wins over the reason a stop was already under way for.
      if (reason !== 'Error' || this.#stopReason === 'Error') return;
      this.#stopReason = reason;
      this.#error = error;
      this.#writing = false;
      this.#interrupt();
      return;
    }
    this.#stopReason = reason;
    this.#error = error;
    if (this.#listening) this.#signalStop(reason);
  }

  #signalStop(reason: StopReason): void {
    if (reason === 'SessionBytesExceeded' || reason === 'Error') {
      this.#writing = false;
      this.#interrupt();
    } else {
      // Let the kernel hand over the packets captured before the stop first.
      const drainMs = this.#options.drainMs ?? KERNEL_BLOCK_TIMEOUT_MS;
      this.#timers.push(this.#clock.setTimeout(() => this.#interrupt(), drainMs));
    }
  }

  /** SIGINT: tcpdump flushes what it captured, prints its counters and exits; SIGKILL if it hangs. */
  #interrupt(): void {
    if (this.#done || this.#interrupted) return;
    this.#interrupted = true;
    this.#child?.kill('SIGINT');
    this.#timers.push(
      this.#clock.setTimeout(() => {
        if (!this.#done) this.#child?.kill('SIGKILL');
      }, KILL_AFTER_MS),
    );
  }

  async #run(filePath: string): Promise<CaptureResult> {
    const child = this.#child!;
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>(
      (resolve) => {
        if (child.exitCode !== null || child.signalCode !== null) {
          resolve({ code: child.exitCode, signal: child.signalCode });
        } else child.once('exit', (code, signal) => resolve({ code, signal }));
      },
    );
    if (this.#file === undefined) {
      try {
        await this.#consume(child, filePath);
      } catch (err) {
        this.#requestStop('Error', toWirewatchError(err));
      }
    }
    const { code, signal } = await exited;
    this.#done = true;
    this.#guard?.release();
    this.#clock.clearTimeout(this.#flushTimer);
    for (const timer of this.#timers) this.#clock.clearTimeout(timer);
    this.#clock.clearTimeout(this.#tickTimer);
    this.#removeAbortListener();
    try {
      this.#stats = parseTcpdumpStats(await this.#log!.refresh()) ?? this.#stats;
    } catch {
      // the counters stay as last read
    }
    if (this.#stopReason === undefined) {
      // tcpdump ended without being asked to: the interface went away or it crashed.
      const why = explainTcpdumpFailure(
        this.#log!.text,
        this.#options.interface,
        this.#options.netns,
      );
      this.#stopReason = 'Error';
      this.#error = new WirewatchError(
        'CaptureFailed',
        `tcpdump stopped unexpectedly (${code === null ? `signal ${signal}` : `exit ${code}`}): ${why}`,
      );
    }
    let files: readonly string[] = [];
    try {
      if (this.#file !== undefined) {
        files = await this.#finishFile(this.#file);
      } else if (this.#ring !== undefined) {
        await this.#ring.close();
        files = [...this.#ring.files];
        this.#checkAllWritten();
      }
    } catch (err) {
      this.#stopReason = 'Error';
      this.#error ??= toWirewatchError(err);
    } finally {
      await this.#cleanUp().catch(() => undefined);
    }
    // Past the deadline nothing was kept, so the capture ended there, whenever tcpdump did.
    const stoppedMs = this.#endUs === undefined ? this.#clock.now() : this.#deadlineMs;
    return {
      ...this.progress(),
      packets: this.#packets,
      elapsedMs: stoppedMs - this.#startedMs,
      stopReason: this.#stopReason,
      files,
      startedAt: this.#startedAt,
      stoppedAt: new Date(stoppedMs),
      tcpdumpCaptured: this.#stats?.captured ?? this.#packets + this.#outsideWindow,
      outsideTimeLimit: this.#outsideWindow,
      ...(this.#error === undefined ? {} : { error: this.#error }),
    };
  }

  /**
   * Single-file mode, after tcpdump has exited: cut the file to the last whole packet within
   * totalBytesPerSession (tcpdump may have written past it before it was stopped, and a full
   * disk may have left half a record), and check that every captured packet is in it.
   */
  async #finishFile(file: CaptureFile): Promise<string[]> {
    let closeError: unknown;
    await file.close().catch((err: unknown) => (closeError = err));
    const before = (await stat(file.path)).size;
    if (before < FILE_HEADER_LENGTH) {
      // tcpdump never wrote a whole header (it failed at once, or the disk was full): no file
      // rather than a broken one.
      await rm(file.path, { force: true });
      this.#finalBytes = 0;
      return [];
    }
    const limit = this.#limits.totalBytesPerSession;
    const repaired = await repairPcapFile(file.path, {
      maxBytes: limit,
      window: {
        startUs: this.#startedMs * 1000,
        startSlackUs: START_SLACK_US,
        ...(this.#endUs === undefined
          ? {}
          : { endUs: this.#endUs, endFrom: this.#sizeBeforeDeadline }),
      },
    });
    this.#packets = repaired.keptRecords;
    this.#outsideWindow = repaired.outsideWindow;
    this.#finalBytes = before - repaired.removedBytes;
    // tcpdump's output trails the size check by its 4 KiB buffer, so the limit may only show
    // here; it names the stop unless someone stopped the capture by hand first.
    const cutByLimit = repaired.reachedMaxBytes;
    if (cutByLimit && this.#stopReason === 'TimeExceeded')
      this.#stopReason = 'SessionBytesExceeded';
    if (closeError !== undefined) this.#requestStop('Error', toWirewatchError(closeError));
    // Packets beyond the limit were cut on purpose; any other shortfall is a write that failed.
    if (!cutByLimit) this.#checkAllWritten();
    return [file.path];
  }

  /**
   * Every packet tcpdump captured must be in the output, or left out for its stamp; a shortfall
   * is a failed write.
   */
  #checkAllWritten(): void {
    const captured = this.#stats?.captured;
    const accounted = this.#packets + this.#outsideWindow;
    if (
      captured !== undefined &&
      accounted < captured &&
      this.#stopReason !== 'SessionBytesExceeded'
    ) {
      const missing = captured - accounted;
      this.#stopReason = 'Error';
      this.#error ??= new WirewatchError(
        'LocalFileFailed',
        `${missing} of ${captured} captured packets could not be written to the capture file (no space left on device?)`,
      );
    }
  }

  async #cleanUp(): Promise<void> {
    this.#guard?.release();
    await this.#log?.close().catch(() => undefined);
    await this.#file?.close().catch(() => undefined);
    if (this.#workDir !== undefined) await rm(this.#workDir, { recursive: true, force: true });
  }

  /** Continuous mode: reads tcpdump's pcap stream and writes whole records into the ring. */
  async #consume(child: ChildProcess, filePath: string): Promise<void> {
    let pending: Buffer | undefined;
    let littleEndian = true;
    let precision: TimestampPrecision = 'micro';
    for await (const chunk of child.stdout! as AsyncIterable<Buffer>) {
      if (!this.#writing) continue; // drain, so that tcpdump can exit
      const buf = pending === undefined ? chunk : Buffer.concat([pending, chunk]);
      pending = undefined;
      let offset = 0;
      if (this.#ring === undefined) {
        if (buf.length < FILE_HEADER_LENGTH) {
          pending = buf;
          continue;
        }
        const header = parseFileHeader(buf.subarray(0, FILE_HEADER_LENGTH));
        littleEndian = header.byteOrder === 'LE';
        precision = header.precision;
        this.#ring = await this.#openRing(buf.subarray(0, FILE_HEADER_LENGTH), filePath);
        offset = FILE_HEADER_LENGTH;
      }
      offset = await this.#writeRecords(buf, offset, littleEndian, precision);
      if (offset < buf.length) pending = Buffer.from(buf.subarray(offset));
    }
  }

  #isOutsideWindow(
    buf: Buffer,
    offset: number,
    littleEndian: boolean,
    precision: TimestampPrecision,
  ): boolean {
    return stampedOutside(buf, offset, littleEndian, precision, {
      startUs: this.#startedMs * 1000,
      leading: !this.#wroteRecord,
      endUs: this.#endUs,
    });
  }

  async #openRing(header: Buffer, filePath: string): Promise<RingBuffer> {
    const ring = this.#options.ring!;
    const buffer = new RingBuffer({
      path: filePath,
      fileCount: ring.fileCount,
      fileSizeInBytes: ring.fileSizeInBytes,
      header: Buffer.from(header),
      ...(this.#options.onRingFileClosed === undefined
        ? {}
        : { onFileClosed: this.#options.onRingFileClosed }),
    });
    await buffer.start();
    return buffer;
  }

  /** Writes the whole records in buf from offset on; returns where the first incomplete one starts. */
  async #writeRecords(
    buf: Buffer,
    start: number,
    littleEndian: boolean,
    precision: TimestampPrecision,
  ): Promise<number> {
    const ring = this.#ring!;
    let segmentStart = start;
    let records = 0;
    let room = ring.room();
    // Hot path: the walker reads only the captured length of each record header.
    const walker = new PcapRecordWalker(buf, littleEndian ? 'LE' : 'BE', { start });
    while (walker.next()) {
      const offset = walker.start;
      const end = walker.offset;
      // Stamps are read only at the edges: before the first packet and after the deadline.
      if (
        (!this.#wroteRecord || this.#endUs !== undefined) &&
        this.#isOutsideWindow(buf, offset, littleEndian, precision)
      ) {
        if (records > 0) await ring.append(buf.subarray(segmentStart, offset), records);
        this.#packets += records;
        records = 0;
        this.#outsideWindow++;
        segmentStart = end;
        continue;
      }
      this.#wroteRecord = true;
      // A record larger than a whole file still gets an empty file to itself.
      if (end - offset > room && (records > 0 || ring.hasRecords)) {
        if (records > 0) await ring.append(buf.subarray(segmentStart, offset), records);
        this.#packets += records;
        records = 0;
        segmentStart = offset;
        await ring.rotate();
        room = ring.room();
      }
      room -= end - offset;
      records++;
    }
    if (records > 0) await ring.append(buf.subarray(segmentStart, walker.offset), records);
    this.#packets += records;
    return walker.offset;
  }
}

/**
 * Ring mode: whether the record at `offset` lies outside the capture's time window: a leading
 * one stamped just before the start, or one stamped after the deadline once it has passed (the
 * same window repairPcapFile cuts from a single file).
 */
function stampedOutside(
  buf: Buffer,
  offset: number,
  littleEndian: boolean,
  precision: TimestampPrecision,
  window: { startUs: number; leading: boolean; endUs: number | undefined },
): boolean {
  const tsSec = littleEndian ? buf.readUInt32LE(offset) : buf.readUInt32BE(offset);
  const tsFrac = littleEndian ? buf.readUInt32LE(offset + 4) : buf.readUInt32BE(offset + 4);
  if (window.leading) {
    const early = compareTimestamp(tsSec, tsFrac, precision, window.startUs);
    if (early < 0 && early >= -START_SLACK_US) return true;
  }
  return window.endUs !== undefined && compareTimestamp(tsSec, tsFrac, precision, window.endUs) > 0;
}

function toWirewatchError(err: unknown): WirewatchError {
  if (err instanceof WirewatchError) return err;
  return new WirewatchError(
    'CaptureFailed',
    `capture failed: ${err instanceof Error ? err.message : String(err)}`,
    { cause: err },
  );
}
