/**
 * The capture runner: one tcpdump process on one interface (optionally inside a network
 * namespace), its packet-buffered pcap stream read by Node, and the session's limits enforced
 * here, where every byte passes: snaplen (by tcpdump), total bytes, time, continuous ring.
 */
import { rm } from 'node:fs/promises';
import path from 'node:path';
import { WirewatchError } from '../model/errors.js';
import {
  systemClock,
  type CaptureOptions,
  type CaptureProgress,
  type CaptureResult,
  type Clock,
} from './capture-options.js';
import { shortfallError, toCaptureError, unexpectedExit } from './capture-errors.js';
import { DEFAULT_CAPTURE_ROOT, prepareCapturePath } from './capture-path.js';
import type { CaptureLimits } from '../model/capture-limits.js';
import { captureLimitBounds, ringDurationSeconds } from '../model/capture-limits.js';
import { existingRingFiles } from './ring-buffer.js';
import { RingCapture } from './ring-capture.js';
import { CaptureWindow } from './capture-window.js';
import { LiveFlush } from './live-flush.js';
import { SingleFileCapture } from './single-file-capture.js';
import { StopSequence } from './stop-sequence.js';
import { checkCaptureTarget, tcpdumpCommand } from './tcpdump-command.js';
import { TcpdumpProcess } from './tcpdump-process.js';
import { KERNEL_BLOCK_TIMEOUT_MS, parseTcpdumpStats, type TcpdumpStats } from './tcpdump.js';

export type {
  CaptureOptions,
  CaptureProgress,
  CaptureResult,
  Clock,
  SpawnFunction,
  StopReason,
} from './capture-options.js';

/** The longest a file's mtime (the kernel's coarse clock) may lag the write: one tick at HZ=100. */
const COARSE_CLOCK_TICK_MS = 10;

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
  #tcpdump: TcpdumpProcess | undefined;
  #stats: TcpdumpStats | undefined;
  /** Single-file mode: the file tcpdump writes to directly. */
  #file: SingleFileCapture | undefined;
  /** Continuous mode: the ring Node writes the stream into. */
  #ring: RingCapture | undefined;
  /** Single-file mode: the packets kept in the file once it is repaired. */
  #packets = 0;
  readonly #window: CaptureWindow;
  /** Single-file mode: packets left out because they were stamped outside [start, deadline]. */
  #outsideWindow = 0;
  #rewrittenFrom: number | undefined;
  /** Why the capture stops, and the signals that stop tcpdump. */
  readonly #stop: StopSequence;
  /** The time limit. */
  #deadlineTimer: unknown;
  /** The next watch/progress tick (re-armed every 100 ms). */
  #tickTimer: unknown;
  #result: Promise<CaptureResult> | undefined;
  #abortListener: (() => void) | undefined;
  /** tcpdump listens: flushes can be sent. */
  #listening = false;
  /** tcpdump has exited: no timer may re-arm. */
  #done = false;
  /** Live viewers holding {@link watch}; while there are any, tcpdump's output is flushed. */
  readonly #live: LiveFlush;
  /** The output's size at the last live flush (-1: none yet). */
  #liveFlushedSize = -1;

  constructor(options: CaptureOptions) {
    this.#options = options;
    this.#clock = options.clock ?? systemClock;
    this.#window = new CaptureWindow(this.#clock);
    this.#stop = new StopSequence({
      clock: this.#clock,
      drainMs: options.drainMs ?? KERNEL_BLOCK_TIMEOUT_MS,
      child: () => this.#tcpdump?.child,
      throughPipe: () => this.#ring !== undefined,
    });
    this.#live = new LiveFlush({
      clock: this.#clock,
      ...(options.liveFlushMs === undefined ? {} : { intervalMs: options.liveFlushMs }),
      flush: () => this.#liveFlush(),
      ended: () => this.#done,
    });
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
    return this.#window.startedAt;
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
    const ringBytes = this.#ring?.bytesWritten;
    const file = this.#file;
    const done = file?.finalBytes !== undefined;
    return {
      packets:
        ringBytes !== undefined || done || file === undefined
          ? this.#packetCount()
          : file.count.records,
      bytes: ringBytes ?? file?.finalBytes ?? file?.count.bytes ?? 0,
      kernelDrops: this.#stats?.droppedByKernel ?? 0,
      receivedByFilter: this.#stats?.receivedByFilter ?? 0,
      elapsedMs: this.#window.startedMs === 0 ? 0 : this.#clock.now() - this.#window.startedMs,
    };
  }

  /**
   * A live viewer is watching: until the returned function is called, tcpdump's buffered output
   * is flushed every LIVE_FLUSH_MS (SIGUSR2), so each packet reaches the file (or the ring's
   * pipe) soon after the kernel hands it over, however quiet the capture. Without viewers
   * nothing of this runs: the capture costs what it always did.
   */
  watch(): () => void {
    return this.#live.watch();
  }

  /**
   * A viewer's flush, only when the output has not grown since the last one: tcpdump that writes
   * out each 4 KiB it fills needs none, and freezing it for a look (TcpdumpProcess.flush) only
   * risks kernel drops at full rate. A packet then waits at most two flush periods.
   */
  async #liveFlush(): Promise<void> {
    const size = this.#ring?.bytesWritten ?? (await this.#file?.file.refreshSize()) ?? 0;
    const grew = size !== this.#liveFlushedSize;
    this.#liveFlushedSize = size;
    if (!grew) await this.#flush();
  }

  async #flush(): Promise<void> {
    if (!this.#listening || this.#done) return;
    await this.#tcpdump?.flush(() => !this.#done);
  }

  /** Stops the capture (ManualIntervention) and resolves with the result once every packet is written. */
  stop(): Promise<CaptureResult> {
    this.#stop.request('ManualIntervention');
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
      this.#abortListener = () => this.#stop.request('ManualIntervention');
      o.signal.addEventListener('abort', this.#abortListener, { once: true });
    }
    try {
      await this.#start();
    } catch (err) {
      this.#removeAbortListener();
      throw toCaptureError(err);
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
    await checkCaptureTarget(o);
    const root = o.captureRoot ?? DEFAULT_CAPTURE_ROOT;
    const filePath = await prepareCapturePath(o.filePath, root);
    const {
      command,
      args: commandArgs,
      shell,
    } = await tcpdumpCommand(o, this.#limits.bytesToCapturePerPacket);

    try {
      this.#tcpdump = await TcpdumpProcess.create();
      // Single file: tcpdump writes the capture file itself, exactly as a bare `tcpdump -w`
      // would, so capturing costs no more than tcpdump; limits are enforced around it. A ring
      // needs exact file boundaries, so its stream passes through Node.
      let stdout: number | 'pipe' = 'pipe';
      if (o.ring === undefined) {
        this.#file = await SingleFileCapture.create(filePath);
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
        this.#ring = new RingCapture({
          filePath,
          ring: o.ring,
          ...(o.onRingFileClosed === undefined ? {} : { onFileClosed: o.onRingFileClosed }),
        });
      }
      await this.#tcpdump.start({
        command,
        args: commandArgs,
        stdout,
        ...(o.spawn === undefined ? {} : { spawn: o.spawn }),
        ...(shell === undefined
          ? {}
          : { guard: { delayMs: o.drainMs ?? KERNEL_BLOCK_TIMEOUT_MS, shell } }),
        startTimeoutMs: o.startTimeoutMs ?? 15_000,
        interface: o.interface,
        netns: o.netns,
      });
    } catch (err) {
      await this.#cleanUp();
      if (this.#file !== undefined) await rm(filePath, { force: true });
      throw err;
    }
    // The start is when tcpdump said it listens: the stderr file's mtime, not when this
    // process got round to reading it (a loaded host may take a while). The kernel stamps
    // mtimes from its coarse clock, up to a tick behind the time of the write: one tick is
    // added, so that the start is never before tcpdump was listening (a packet stamped in
    // between would be inside the window yet not captured). An injected clock has no relation
    // to file times and is taken as it is.
    const readyAt =
      o.clock === undefined
        ? Math.ceil(this.#tcpdump.log.changedAtMs) + COARSE_CLOCK_TICK_MS
        : this.#clock.now();
    this.#window.start(readyAt);
    if (this.#ring !== undefined) this.#ring.startUs = this.#window.startedMs * 1000;
    this.#listening = true;
    this.#result = this.#run();

    const seconds =
      o.ring === undefined
        ? this.#limits.timeLimitInSeconds
        : ringDurationSeconds(o.ring, o.limits?.timeLimitInSeconds);
    const untilDeadline = this.#window.limit(seconds);
    this.#deadlineTimer = this.#clock.setTimeout(() => this.#onDeadline(), untilDeadline);
    this.#scheduleTicks();
    this.#stop.listening();
  }

  /** The time limit is up: packets stamped after the deadline are left out (CaptureWindow.end). */
  #onDeadline(): void {
    const endUs = this.#window.end();
    if (this.#ring !== undefined) this.#ring.endUs = endUs;
    this.#stop.request('TimeExceeded');
  }

  /** Watches the limits tcpdump cannot enforce itself, and reports progress. */
  #scheduleTicks(): void {
    const interval = this.#options.progressIntervalMs ?? 1000;
    const watchEvery = Math.min(interval, 100);
    let sinceProgress = 0;
    const tick = async () => {
      if (this.#stop.reason !== undefined) return;
      await this.#watchFile();
      sinceProgress += watchEvery;
      if (sinceProgress >= interval && this.#stop.reason === undefined) {
        sinceProgress = 0;
        this.#stats = parseTcpdumpStats(await this.#tcpdump!.log.refresh()) ?? this.#stats;
        // SIGUSR1 makes tcpdump print its counters (captured, kernel drops) for the next tick.
        this.#tcpdump?.child?.kill('SIGUSR1');
        const onProgress = this.#options.onProgress;
        if (this.#file !== undefined) {
          // A file someone removed or cannot read is no reason to stop: the count stays.
          await this.#file.recount();
          // Someone reads the reports: have tcpdump write out what it holds, so that the next
          // count has it (a packet then shows within one interval, however quiet the capture).
          // One write per interval; tcpdump otherwise writes only when 4 KiB have gathered.
          if (onProgress !== undefined && !this.#live.watching) void this.#flush();
        }
        if (this.#stop.reason === undefined) onProgress?.(this.progress());
      }
      if (this.#stop.reason === undefined && !this.#done) {
        this.#tickTimer = this.#clock.setTimeout(run, watchEvery);
      }
    };
    const run = () => void tick().catch((err) => this.#stop.request('Error', toCaptureError(err)));
    this.#tickTimer = this.#clock.setTimeout(run, watchEvery);
  }

  /** Single-file mode: stop at the byte limit, and before the disk is full. */
  async #watchFile(): Promise<void> {
    const stop = await this.#file?.watch({
      beforeDeadline: () => this.#window.beforeDeadline(),
      totalBytesPerSession: this.#limits.totalBytesPerSession,
      diskReserveBytes: this.#options.diskReserveBytes,
    });
    if (stop === undefined) return;
    if (stop.reason === 'SessionBytesExceeded') this.#stop.request('SessionBytesExceeded');
    else this.#stop.request('Error', stop.error);
  }

  async #run(): Promise<CaptureResult> {
    const tcpdump = this.#tcpdump!;
    const ring = this.#ring;
    if (ring !== undefined) {
      try {
        await ring.consume(
          tcpdump.child!.stdout! as AsyncIterable<Buffer>,
          () => this.#stop.writing,
        );
      } catch (err) {
        this.#stop.request('Error', toCaptureError(err));
      }
    }
    await tcpdump.exited();
    this.#done = true;
    this.#stop.exited();
    tcpdump.releaseGuard();
    this.#live.cancel();
    this.#clock.clearTimeout(this.#deadlineTimer);
    this.#clock.clearTimeout(this.#tickTimer);
    this.#removeAbortListener();
    try {
      this.#stats = parseTcpdumpStats(await tcpdump.log.refresh()) ?? this.#stats;
    } catch {
      // the counters stay as last read
    }
    if (this.#stop.reason === undefined) {
      // tcpdump ended without being asked to: the interface went away or it crashed.
      this.#stop.fail(unexpectedExit(await tcpdump.exitRecord(), this.#options));
    }
    let files: readonly string[] = [];
    try {
      if (this.#file !== undefined) {
        files = await this.#finishFile(this.#file);
      } else if (ring !== undefined) {
        const ringFiles = await ring.close();
        if (ringFiles !== undefined) {
          files = ringFiles;
          this.#checkAllWritten();
        }
      }
    } catch (err) {
      this.#stop.fail(toCaptureError(err));
    } finally {
      await this.#cleanUp().catch(() => undefined);
    }
    // Past the deadline nothing was kept, so the capture ended there, whenever tcpdump did.
    const window = this.#window;
    const stoppedMs = window.endUs === undefined ? this.#clock.now() : window.deadlineMs;
    const packets = this.#packetCount();
    const outsideWindow = this.#outsideWindowCount();
    return {
      ...this.progress(),
      packets,
      elapsedMs: stoppedMs - window.startedMs,
      stopReason: this.#stop.reason ?? 'Error', // set above at the latest
      files,
      startedAt: window.startedAt,
      stoppedAt: new Date(stoppedMs),
      tcpdumpCaptured: this.#stats?.captured ?? packets + outsideWindow,
      outsideTimeLimit: outsideWindow,
      ...(this.#rewrittenFrom === undefined ? {} : { rewrittenFrom: this.#rewrittenFrom }),
      ...(this.#stop.error === undefined ? {} : { error: this.#stop.error }),
    };
  }

  /** Packets written: to the ring, or kept in the single file once it is repaired. */
  #packetCount(): number {
    return this.#ring?.packets ?? this.#packets;
  }

  #outsideWindowCount(): number {
    return this.#ring?.outsideWindow ?? this.#outsideWindow;
  }

  /**
   * Single-file mode, after tcpdump has exited: cut the file to the last whole packet within
   * totalBytesPerSession and the time window, and check that every captured packet is in it.
   */
  async #finishFile(file: SingleFileCapture): Promise<string[]> {
    const finished = await file.finish({
      totalBytesPerSession: this.#limits.totalBytesPerSession,
      startedMs: this.#window.startedMs,
      endUs: this.#window.endUs,
    });
    if (finished === undefined) return [];
    this.#packets = finished.packets;
    this.#outsideWindow = finished.outsideWindow;
    this.#rewrittenFrom = finished.rewrittenFrom;
    // tcpdump's output trails the size check by its 4 KiB buffer, so the limit may only show
    // here; it names the stop unless someone stopped the capture by hand first.
    const cutByLimit = finished.cutByLimit;
    if (cutByLimit) this.#stop.cutByLimit();
    if (finished.closeError !== undefined) {
      this.#stop.request('Error', toCaptureError(finished.closeError));
    }
    // Packets beyond the limit were cut on purpose; any other shortfall is a write that failed.
    if (!cutByLimit) this.#checkAllWritten();
    return [finished.path];
  }

  /**
   * Every packet tcpdump captured must be in the output, or left out for its stamp; a shortfall
   * is a failed write.
   */
  #checkAllWritten(): void {
    if (this.#stop.reason === 'SessionBytesExceeded') return;
    const error = shortfallError({
      captured: this.#stats?.captured,
      accounted: this.#packetCount() + this.#outsideWindowCount(),
      ...(this.#ring === undefined ? {} : { ring: this.#ring }),
    });
    if (error !== undefined) this.#stop.fail(error);
  }

  async #cleanUp(): Promise<void> {
    this.#tcpdump?.releaseGuard();
    await this.#file?.close().catch(() => undefined);
    await this.#tcpdump?.close();
  }
}
