/**
 * The capture runner: one tcpdump process on one interface (optionally inside a network
 * namespace), its packet-buffered pcap stream read by Node, and the session's limits enforced
 * here, where every byte passes: snaplen (by tcpdump), total bytes, time, continuous ring.
 */
import { spawn as nodeSpawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { access, rm } from 'node:fs/promises';
import { WirewatchError } from '../model/errors.js';
import { FILE_HEADER_LENGTH, parseFileHeader, RECORD_HEADER_LENGTH } from '../pcap/format.js';
import { compileBpf } from './bpf.js';
import { CaptureFile } from './capture-file.js';
import { DEFAULT_CAPTURE_ROOT, prepareCapturePath } from './capture-path.js';
import type { FilterSpec } from './filter-spec.js';
import {
  interfaceAddresses,
  isValidInterfaceName,
  isValidNetnsName,
} from './interface-addresses.js';
import type { CaptureLimits, RingSettings } from './limits.js';
import { captureLimitBounds } from './limits.js';
import { RingBuffer, ringFileName } from './ring-buffer.js';
import {
  explainTcpdumpFailure,
  findExecutable,
  MAX_SNAPLEN,
  parseTcpdumpStats,
  tcpdumpArgs,
  type TcpdumpStats,
} from './tcpdump.js';

/** Why a capture ended. AgentRestarted and TargetDeleted are added by the agent and server. */
export type StopReason = 'TimeExceeded' | 'SessionBytesExceeded' | 'ManualIntervention' | 'Error';

export interface CaptureProgress {
  /** Packets written to the capture file(s). */
  readonly packets: number;
  /** Bytes written to the capture file(s), pcap headers included. */
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
  readonly startedAt: Date;
  readonly stoppedAt: Date;
  /** Packets tcpdump reports it captured; equals `packets` unless a limit cut the stream. */
  readonly tcpdumpCaptured: number;
  /** Set when stopReason is Error: CaptureFailed or LocalFileFailed with the cause. */
  readonly error?: WirewatchError;
}

/** A clock the runner uses for every timer, so tests can drive time. */
export interface Clock {
  now(): number;
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
  readonly limits?: Partial<CaptureLimits>;
  /** Continuous capture: a ring of files instead of one; replaces totalBytesPerSession and timeLimitInSeconds. */
  readonly ring?: RingSettings;
  /** The capture file (for a ring, the name its files are derived from). Must lie under captureRoot. */
  readonly filePath: string;
  readonly captureRoot?: string;
  readonly tcpdumpPath?: string;
  /** Kernel capture buffer (tcpdump -B), KiB. */
  readonly bufferKiB?: number;
  readonly progressIntervalMs?: number;
  readonly onProgress?: (progress: CaptureProgress) => void;
  /** Aborting stops the capture with ManualIntervention. */
  readonly signal?: AbortSignal;
  readonly spawn?: SpawnFunction;
  readonly clock?: Clock;
  /** How long tcpdump may take to open the interface. */
  readonly startTimeoutMs?: number;
}

const systemClock: Clock = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (handle) => clearTimeout(handle as NodeJS.Timeout),
};

/** Where packets go: one bounded file, or a ring. */
interface Output {
  readonly files: readonly string[];
  readonly bytes: number;
  /** Bytes the output can take before the next record needs a new file or the session ends. */
  room(): number;
  /** False only while a ring's current file is empty: a record too big for any file goes there. */
  mustFit(): boolean;
  append(bytes: Buffer, records: number): Promise<void>;
  /** For a ring: start the next file and return true; a single file returns false. */
  next(): Promise<boolean>;
  close(): Promise<void>;
}

function singleFile(file: CaptureFile, limit: number): Output {
  return {
    files: [file.path],
    get bytes() {
      return file.size;
    },
    room: () => limit - file.size,
    mustFit: () => true,
    append: (bytes) => file.append(bytes),
    next: () => Promise.resolve(false),
    close: () => file.close(),
  };
}

function ringOutput(ring: RingBuffer): Output {
  return {
    get files() {
      return ring.files;
    },
    get bytes() {
      return ring.bytesWritten;
    },
    room: () => ring.room(),
    // A record larger than a whole file still gets an empty file to itself.
    mustFit: () => ring.hasRecords,
    append: (bytes, records) => ring.append(bytes, records),
    next: async () => {
      await ring.rotate();
      return true;
    },
    close: () => ring.close(),
  };
}

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
  #stderr = '';
  #stats: TcpdumpStats | undefined;
  #output: Output | undefined;
  #pendingFile: CaptureFile | undefined;
  #packets = 0;
  #startedAt = new Date(0);
  #startedMs = 0;
  #stopReason: StopReason | undefined;
  #error: WirewatchError | undefined;
  #writing = true;
  #timers: unknown[] = [];
  #result: Promise<CaptureResult> | undefined;
  #abortListener: (() => void) | undefined;

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

  /** Resolves when the capture has ended, however it ended. */
  get result(): Promise<CaptureResult> {
    if (this.#result === undefined) throw new Error('capture not started');
    return this.#result;
  }

  /** What has been written so far. */
  progress(): CaptureProgress {
    return {
      packets: this.#packets,
      bytes: this.#output?.bytes ?? 0,
      kernelDrops: this.#stats?.droppedByKernel ?? 0,
      receivedByFilter: this.#stats?.receivedByFilter ?? 0,
      elapsedMs: this.#startedMs === 0 ? 0 : this.#clock.now() - this.#startedMs,
    };
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
    const fail = (message: string, target?: string): never => {
      throw new WirewatchError('CaptureFailed', message, target === undefined ? {} : { target });
    };
    if (o.signal?.aborted) fail('the capture was cancelled before it started');
    if (!isValidInterfaceName(o.interface))
      fail(`"${o.interface}" is not an interface name`, 'interface');
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
    const bpf = compileBpf(o.filters ?? [], { hostAddresses });

    // Claim the file name now, so that a clash is reported before capturing starts.
    const firstFile = o.ring === undefined ? filePath : ringFileName(filePath, 1);
    await access(firstFile).then(
      () => {
        throw new WirewatchError('LocalFileFailed', `${firstFile} already exists`, {
          target: 'filePath',
        });
      },
      () => undefined,
    );
    if (o.ring === undefined) this.#pendingFile = await CaptureFile.create(filePath);

    const per = this.#limits.bytesToCapturePerPacket;
    const args = tcpdumpArgs({
      iface: o.interface,
      snaplen: per === 0 || per > MAX_SNAPLEN ? MAX_SNAPLEN : per,
      bufferKiB: o.bufferKiB ?? 8192,
      bpf,
    });
    const [command, commandArgs] =
      o.netns === undefined
        ? [tcpdump!, args]
        : ['ip', ['netns', 'exec', o.netns, tcpdump!, ...args]];
    const spawn = o.spawn ?? nodeSpawn;
    try {
      const child = spawn(command, commandArgs, { stdio: ['ignore', 'pipe', 'pipe'] });
      this.#child = child;
      await this.#waitUntilListening(child, o.startTimeoutMs ?? 15_000);
    } catch (err) {
      await this.#pendingFile?.close().catch(() => undefined);
      if (this.#pendingFile !== undefined) await rm(filePath, { force: true });
      throw err;
    }
    this.#startedAt = new Date(this.#clock.now());
    this.#startedMs = this.#clock.now();
    this.#result = this.#run(filePath);

    const seconds = o.ring?.sessionTimeLimitInSeconds ?? this.#limits.timeLimitInSeconds;
    this.#timers.push(
      this.#clock.setTimeout(() => this.#requestStop('TimeExceeded'), seconds * 1000),
    );
    this.#scheduleProgress();
    if (o.signal !== undefined) {
      this.#abortListener = () => this.#requestStop('ManualIntervention');
      o.signal.addEventListener('abort', this.#abortListener, { once: true });
    }
  }

  #waitUntilListening(child: ChildProcess, timeoutMs: number): Promise<void> {
    const o = this.#options;
    return new Promise<void>((resolve, reject) => {
      const timer = this.#clock.setTimeout(() => {
        child.kill('SIGKILL');
        done(new WirewatchError('CaptureFailed', `tcpdump did not start within ${timeoutMs} ms`));
      }, timeoutMs);
      const onData = (chunk: Buffer) => {
        this.#stderr += chunk.toString('utf8');
        if (this.#stderr.includes('listening on')) done();
      };
      const onExit = () => {
        done(
          new WirewatchError(
            'CaptureFailed',
            explainTcpdumpFailure(this.#stderr, o.interface, o.netns),
          ),
        );
      };
      const onError = (cause: Error) => {
        done(
          new WirewatchError('CaptureFailed', `cannot run tcpdump: ${cause.message}`, { cause }),
        );
      };
      const done = (err?: WirewatchError) => {
        this.#clock.clearTimeout(timer);
        child.off('exit', onExit).off('error', onError);
        if (err === undefined) resolve();
        else reject(err);
      };
      child.stderr!.on('data', onData);
      child.once('exit', onExit).once('error', onError);
    }).then(() => {
      // Keep collecting stderr (counters, late errors), but only its tail.
      child.stderr!.removeAllListeners('data');
      child.stderr!.on('data', (chunk: Buffer) => {
        this.#stderr = (this.#stderr + chunk.toString('utf8')).slice(-16384);
        this.#stats = parseTcpdumpStats(this.#stderr) ?? this.#stats;
      });
    });
  }

  #scheduleProgress(): void {
    const interval = this.#options.progressIntervalMs ?? 1000;
    const tick = () => {
      if (this.#stopReason !== undefined) return;
      // SIGUSR1 makes tcpdump print its counters (kernel drops) on stderr.
      this.#child?.kill('SIGUSR1');
      this.#options.onProgress?.(this.progress());
      this.#timers.push(this.#clock.setTimeout(tick, interval));
    };
    this.#timers.push(this.#clock.setTimeout(tick, interval));
  }

  #requestStop(reason: StopReason, error?: WirewatchError): void {
    if (this.#stopReason !== undefined) return;
    this.#stopReason = reason;
    this.#error = error;
    if (reason !== 'ManualIntervention' && reason !== 'TimeExceeded') this.#writing = false;
    // SIGINT: tcpdump flushes what it captured, prints its counters and exits.
    this.#child?.kill('SIGINT');
  }

  async #run(filePath: string): Promise<CaptureResult> {
    const child = this.#child!;
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
      child.once('exit', (code, signal) => resolve({ code, signal })),
    );
    try {
      await this.#consume(child, filePath);
    } catch (err) {
      this.#requestStop('Error', toWirewatchError(err));
    }
    const { code, signal } = await exited;
    for (const timer of this.#timers) this.#clock.clearTimeout(timer);
    if (this.#abortListener !== undefined) {
      this.#options.signal?.removeEventListener('abort', this.#abortListener);
    }
    this.#stats = parseTcpdumpStats(this.#stderr) ?? this.#stats;
    if (this.#stopReason === undefined) {
      // tcpdump ended without being asked to: the interface went away or it crashed.
      const why = explainTcpdumpFailure(this.#stderr, this.#options.interface, this.#options.netns);
      this.#stopReason = 'Error';
      this.#error = new WirewatchError(
        'CaptureFailed',
        `tcpdump stopped unexpectedly (${code === null ? `signal ${signal}` : `exit ${code}`}): ${why}`,
      );
    }
    try {
      if (this.#output !== undefined) {
        await this.#output.close();
      } else if (this.#pendingFile !== undefined) {
        // tcpdump never sent a pcap header: an empty file would not be a pcap file.
        await this.#pendingFile.close();
        await rm(this.#pendingFile.path, { force: true });
      }
    } catch (err) {
      this.#stopReason = 'Error';
      this.#error ??= toWirewatchError(err);
    }
    const progress = this.progress();
    return {
      ...progress,
      stopReason: this.#stopReason,
      files: [...(this.#output?.files ?? [])],
      startedAt: this.#startedAt,
      stoppedAt: new Date(this.#clock.now()),
      tcpdumpCaptured: this.#stats?.captured ?? this.#packets,
      ...(this.#error === undefined ? {} : { error: this.#error }),
    };
  }

  /** Reads tcpdump's pcap stream and writes whole records within the limits. */
  async #consume(child: ChildProcess, filePath: string): Promise<void> {
    let pending: Buffer | undefined;
    let littleEndian = true;
    for await (const chunk of child.stdout! as AsyncIterable<Buffer>) {
      if (!this.#writing) continue; // drain, so that tcpdump can exit
      const buf = pending === undefined ? chunk : Buffer.concat([pending, chunk]);
      pending = undefined;
      let offset = 0;
      if (this.#output === undefined) {
        if (buf.length < FILE_HEADER_LENGTH) {
          pending = buf;
          continue;
        }
        const header = parseFileHeader(buf.subarray(0, FILE_HEADER_LENGTH));
        littleEndian = header.byteOrder === 'LE';
        this.#output = await this.#openOutput(buf.subarray(0, FILE_HEADER_LENGTH), filePath);
        offset = FILE_HEADER_LENGTH;
      }
      offset = await this.#writeRecords(buf, offset, littleEndian);
      if (offset < buf.length) pending = Buffer.from(buf.subarray(offset));
    }
  }

  async #openOutput(header: Buffer, filePath: string): Promise<Output> {
    const ring = this.#options.ring;
    if (ring === undefined) {
      const file = this.#pendingFile!;
      await file.append(header);
      return singleFile(file, this.#limits.totalBytesPerSession);
    }
    const buffer = new RingBuffer({
      path: filePath,
      fileCount: ring.fileCount,
      fileSizeInBytes: ring.fileSizeInBytes,
      header: Buffer.from(header),
    });
    await buffer.start();
    return ringOutput(buffer);
  }

  /** Writes the whole records in buf from offset on; returns where the first incomplete one starts. */
  async #writeRecords(buf: Buffer, start: number, littleEndian: boolean): Promise<number> {
    const output = this.#output!;
    let offset = start;
    let segmentStart = start;
    let records = 0;
    let room = output.room();
    // Hot path: read the captured length straight from the record header (bytes 8..11).
    while (offset + RECORD_HEADER_LENGTH <= buf.length) {
      const captured = littleEndian ? buf.readUInt32LE(offset + 8) : buf.readUInt32BE(offset + 8);
      const end = offset + RECORD_HEADER_LENGTH + captured;
      if (end > buf.length) break;
      if (end - offset > room && (records > 0 || output.mustFit())) {
        if (records > 0) await output.append(buf.subarray(segmentStart, offset), records);
        this.#packets += records;
        records = 0;
        segmentStart = offset;
        if (!(await output.next())) {
          this.#requestStop('SessionBytesExceeded');
          return buf.length;
        }
        room = output.room();
      }
      room -= end - offset;
      records++;
      offset = end;
    }
    if (records > 0) await output.append(buf.subarray(segmentStart, offset), records);
    this.#packets += records;
    return offset;
  }
}

function toWirewatchError(err: unknown): WirewatchError {
  if (err instanceof WirewatchError) return err;
  return new WirewatchError(
    'CaptureFailed',
    `capture failed: ${err instanceof Error ? err.message : String(err)}`,
    { cause: err },
  );
}
