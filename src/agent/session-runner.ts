/**
 * One capture session on the agent: from the server's `start` to its final `stopped`, with the
 * journal written before the capture starts and at every change, so that a crash at any
 * moment leaves enough on disk to recover (see {@link recoverSession}).
 */
import { readdir, readFile, readlink, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { checkCapturePath, prepareCapturePath } from '../capture/capture-path.js';
import { parseFilters } from '../capture/filter.js';
import {
  resolveCaptureLimits,
  resolveLimit,
  resolveRingSettings,
} from '../model/capture-limits.js';
import type { OwnTraffic } from '../capture/own-traffic.js';
import { existingRingFiles } from '../capture/ring-buffer.js';
import { KERNEL_BLOCK_TIMEOUT_MS } from '../capture/tcpdump.js';
import {
  startCapture,
  type CaptureProgress,
  type CaptureResult,
  type CaptureSession,
} from '../capture/runner.js';
import type {
  AgentMessage,
  CaptureAssignment,
  ChannelError,
  ChannelProgress,
} from '../model/channel.js';
import { toChannelError } from '../model/channel.js';
import { WirewatchError } from '../model/errors.js';
import type { SessionStopReason, StopRequestReason } from '../model/stop-reason.js';
import { FILE_HEADER_LENGTH } from '../pcap/format.js';
import { repairPcapFile } from '../pcap/repair.js';
import type { AgentLog } from './agent-log.js';
import type { Journal, JournalEntry } from './journal.js';
import { pendingUpload, type SessionUpload } from './session-upload.js';

export interface SessionRunnerOptions {
  readonly assignment: CaptureAssignment;
  readonly interface: string;
  readonly netns?: string;
  readonly captureRoot: string;
  readonly tcpdumpPath?: string;
  readonly progressIntervalMs: number;
  readonly journal: Journal;
  readonly log: AgentLog;
  /** Sends a message to the server if connected (nothing is queued: the journal is the memory). */
  readonly report: (message: AgentMessage) => void;
  /**
   * Claims a resolved capture path for this session; false when another running session of
   * this agent already writes there.
   */
  readonly claimPath: (capturePath: string) => boolean;
  readonly releasePath: (capturePath: string) => void;
  /** The session's blob upload, when the assignment has a blob target. */
  readonly upload?: SessionUpload;
  /**
   * The agent's own connections to leave out of the capture, found when it starts; absent, or
   * resolving to undefined, when the capture holds them (includeOwnTraffic, or no own ports).
   */
  readonly ownTraffic?: () => Promise<OwnTraffic | undefined>;
}

/** Runs one session; see {@link SessionRunner}. */
export function runSession(options: SessionRunnerOptions): SessionRunner {
  return new SessionRunner(options);
}

export class SessionRunner {
  readonly sessionId: string;
  /** Resolves once the final state is in the journal and has been offered to the server. */
  readonly finished: Promise<void>;
  readonly #options: SessionRunnerOptions;
  readonly #abort = new AbortController();
  #requestedStop: StopRequestReason | undefined;
  #capture: CaptureSession | undefined;
  #stopped = false;
  #entry: JournalEntry;
  /** Live viewers of this session, and the capture's watch they hold together. */
  #watchers = 0;
  #releaseWatch: (() => void) | undefined;

  constructor(options: SessionRunnerOptions) {
    this.#options = options;
    this.sessionId = options.assignment.sessionId;
    this.#entry = {
      assignment: options.assignment,
      state: 'Running',
      ...(options.assignment.blob === undefined
        ? {}
        : { upload: pendingUpload(options.assignment) }),
    };
    this.finished = this.#run().catch((err: unknown) => {
      // #run handles its own failures; this is the last line against a bug there.
      options.log('error', 'session runner failed', { sessionId: this.sessionId, error: err });
    });
  }

  /** True once the final state has been recorded. */
  get stopped(): boolean {
    return this.#stopped;
  }

  /**
   * A live viewer watches this session: the capture flushes its output for it (see
   * CaptureSession.watch) from now, or from the moment it starts, until released.
   */
  watch(): () => void {
    this.#watchers += 1;
    if (this.#watchers === 1 && this.#capture !== undefined) {
      this.#releaseWatch = this.#capture.watch();
    }
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.#watchers -= 1;
      if (this.#watchers === 0) {
        this.#releaseWatch?.();
        this.#releaseWatch = undefined;
      }
    };
  }

  /**
   * Stops the capture; `reason` is the stop reason reported (the capture engine itself calls
   * every requested stop ManualIntervention). The first request wins.
   */
  stop(reason: StopRequestReason): void {
    if (this.#stopped) return;
    this.#requestedStop ??= reason;
    this.#abort.abort();
  }

  async #run(): Promise<void> {
    const o = this.#options;
    const a = o.assignment;
    const log = (level: 'info' | 'warn' | 'error', msg: string, fields = {}) =>
      o.log(level, msg, { sessionId: a.sessionId, resourceId: a.resourceId, ...fields });
    let claimed: string | undefined;
    let startTime: Date | undefined;
    try {
      // Everything that can be refused is checked before anything touches the disk.
      const filters = parseFilters(a.filters);
      const ring = a.continuousCapture ? resolveRingSettings(a.captureSettings ?? {}) : undefined;
      // A ring's time is its session limit alone: the server has already folded an explicit
      // timeLimitInSeconds into it (the earlier limit wins), and the assignment's
      // timeLimitInSeconds is then only the default.
      const { timeLimitInSeconds, ...ringLimits } = resolveCaptureLimits(a);
      const limits = ring === undefined ? { ...ringLimits, timeLimitInSeconds } : ringLimits;
      const capturePath = await prepareCapturePath(a.filePath, o.captureRoot);
      if (!o.claimPath(capturePath)) {
        throw new WirewatchError(
          'LocalFileFailed',
          `${capturePath} is already being written by another capture on this host`,
          { target: 'filePath' },
        );
      }
      claimed = capturePath;
      // Only a path that held nothing is recorded: after a crash, whatever is found there
      // then is this session's and may be repaired.
      const clash =
        ring === undefined ? await existing(capturePath) : await existingRingFiles(capturePath);
      if (clash.length > 0) {
        throw new WirewatchError(
          'LocalFileFailed',
          `cannot create ${clash[0]}: it already exists`,
          { target: 'filePath' },
        );
      }
      await this.#save({ capturePath });
      if (this.#abort.signal.aborted) {
        // Stopped before it could start: nothing was captured, which is what was asked.
        await this.#finish({ reason: this.#requestedStop ?? 'ManualIntervention' });
        return;
      }
      const ownTraffic = await o.ownTraffic?.();
      if (ownTraffic !== undefined) {
        log('info', 'the capture leaves out the agent connections', {
          localPorts: `${ownTraffic.localPorts.first}-${ownTraffic.localPorts.last}`,
          remotes: ownTraffic.flows.length,
        });
      }
      this.#capture = await startCapture({
        interface: o.interface,
        ...(o.netns === undefined ? {} : { netns: o.netns }),
        filters,
        ...(ownTraffic === undefined ? {} : { ownTraffic }),
        limits,
        ...(ring === undefined ? {} : { ring }),
        filePath: a.filePath,
        captureRoot: o.captureRoot,
        ...(o.tcpdumpPath === undefined ? {} : { tcpdumpPath: o.tcpdumpPath }),
        progressIntervalMs: o.progressIntervalMs,
        onProgress: (p) => this.#onProgress(p),
        ...(ring === undefined || o.upload === undefined
          ? {}
          : { onRingFileClosed: (file, index) => o.upload!.ringFileClosed(file, index) }),
        signal: this.#abort.signal,
      });
      if (this.#watchers > 0) this.#releaseWatch = this.#capture.watch();
      // When tcpdump was capturing: the deadline the capture keeps is this plus the limit.
      startTime = this.#capture.startedAt;
      o.report({ type: 'started', sessionId: a.sessionId, startTime: startTime.toISOString() });
      log('info', 'capture started', { file: capturePath });
      if (ring === undefined) o.upload?.followFile(capturePath);
      void this.#save({ startTime: startTime.toISOString() }).catch((err: unknown) => {
        log('error', 'journal write failed', { error: err });
      });
    } catch (err) {
      const detail = captureError(err);
      log('warn', 'capture could not start', { error: detail });
      // The session's errors are for every Reader of the capture: a refused path reads the same
      // whatever the reason (a file is there, another capture writes it, a link, a permission),
      // so a create cannot be used to learn what lies under the capture root. The log keeps why.
      const error = isPathRefusal(err, a.filePath, o.captureRoot)
        ? pathRefused(a.filePath)
        : detail;
      await this.#finish({ reason: 'Error', error });
      if (claimed !== undefined) o.releasePath(claimed);
      return;
    }
    const result = await this.#capture.result;
    await this.#finish({
      reason:
        this.#requestedStop !== undefined && result.stopReason === 'ManualIntervention'
          ? this.#requestedStop
          : result.stopReason,
      result,
      ...(result.error === undefined ? {} : { error: captureError(result.error) }),
    });
    if (claimed !== undefined) o.releasePath(claimed);
  }

  #onProgress(p: CaptureProgress): void {
    if (this.#stopped) return;
    const progress: ChannelProgress = {
      packets: p.packets,
      bytes: p.bytes,
      kernelDrops: p.kernelDrops,
      at: new Date().toISOString(),
    };
    this.#options.report({ type: 'progress', sessionId: this.sessionId, progress });
    void this.#save({ progress }).catch((err: unknown) => {
      this.#options.log('error', 'journal write failed', {
        sessionId: this.sessionId,
        error: err,
      });
    });
  }

  /** Records the final state (journal first, so it survives), then reports it. */
  async #finish(end: {
    reason: SessionStopReason;
    result?: CaptureResult;
    error?: ChannelError;
  }): Promise<void> {
    const o = this.#options;
    const stopTime = end.result?.stoppedAt ?? new Date();
    const progress: ChannelProgress = {
      packets: end.result?.packets ?? 0,
      bytes: end.result?.bytes ?? 0,
      kernelDrops: end.result?.kernelDrops ?? 0,
      at: stopTime.toISOString(),
    };
    const files = [...(end.result?.files ?? [])];
    this.#stopped = true;
    try {
      await this.#save({
        state: 'Stopped',
        stopReason: end.reason,
        stopTime: stopTime.toISOString(),
        progress,
        files,
        ...(end.error === undefined ? {} : { error: end.error }),
      });
    } catch (err) {
      o.log('error', 'journal write failed; the final state may be lost on a crash', {
        sessionId: this.sessionId,
        error: err,
      });
    }
    o.log(end.reason === 'Error' ? 'warn' : 'info', 'capture stopped', {
      sessionId: this.sessionId,
      stopReason: end.reason,
      packets: progress.packets,
      bytes: progress.bytes,
      ...(end.error === undefined ? {} : { error: end.error }),
    });
    o.report(stoppedMessage(this.#entry));
    // The upload ends after this, so `uploaded` always follows `stopped`.
    o.upload?.captureEnded(files, end.result?.rewrittenFrom);
  }

  /**
   * Records a change of the capture's state. The upload's state in the same entry is the
   * session upload's to change: the newest one is kept, never this runner's older copy.
   */
  #save(change: Partial<JournalEntry>): Promise<void> {
    const upload = this.#options.journal.get(this.sessionId)?.upload ?? this.#entry.upload;
    this.#entry = { ...this.#entry, ...change, ...(upload === undefined ? {} : { upload }) };
    return this.#options.journal.save(this.#entry);
  }
}

/** The `stopped` message for a journal entry in state Stopped. */
export function stoppedMessage(entry: JournalEntry): AgentMessage {
  const stopTime = entry.stopTime ?? new Date().toISOString();
  return {
    type: 'stopped',
    sessionId: entry.assignment.sessionId,
    stopReason: entry.stopReason ?? 'Error',
    ...(entry.startTime === undefined ? {} : { startTime: entry.startTime }),
    stopTime,
    progress: entry.progress ?? { packets: 0, bytes: 0, kernelDrops: 0, at: stopTime },
    ...(entry.error === undefined ? {} : { error: entry.error }),
    files: entry.files ?? [],
  };
}

/**
 * A failure to take the capture's path that depends on what is on the disk (a file is there,
 * another capture writes it, a symbolic link, a permission). A path that breaks a rule on its
 * own (not absolute, outside the capture root, not .cap) says nothing of the disk and keeps its
 * precise message.
 */
function isPathRefusal(err: unknown, filePath: string, captureRoot: string): boolean {
  if (!(err instanceof WirewatchError)) return false;
  if (err.code === 'InvalidCapturePath') {
    try {
      checkCapturePath(filePath, captureRoot);
    } catch {
      return false;
    }
    return true;
  }
  return (
    err.code === 'LocalFileFailed' &&
    (err.target === 'filePath' || /\bcannot create\b/.test(err.message))
  );
}

/** The one refusal a session reports for a path it cannot take, whatever the reason. */
export function pathRefused(filePath: string): ChannelError {
  return {
    code: 'LocalFileFailed',
    message: `filePath: cannot create a new capture file at ${filePath.slice(0, 1024)}; choose a file name that no file or capture on the VM uses`,
  };
}

/** A capture's failure as a channel error: one with an errno code is the file system's. */
function captureError(err: unknown): ChannelError {
  const errno = err instanceof Error && typeof (err as { code?: unknown }).code === 'string';
  return toChannelError(err, errno ? 'LocalFileFailed' : 'CaptureFailed');
}

async function existing(file: string): Promise<string[]> {
  try {
    await stat(file);
    return [file];
  } catch {
    return [];
  }
}

/**
 * Recovery after the agent died with this session Running: stops a tcpdump the dead agent
 * left writing the file, repairs every file of the capture (a crash can cut the last record),
 * and records the session as Stopped with stop reason AgentRestarted and the figures read
 * from the files. Nothing that holds a packet is removed.
 */
export async function recoverSession(entry: JournalEntry, log: AgentLog): Promise<JournalEntry> {
  const a = entry.assignment;
  const now = new Date().toISOString();
  const files: string[] = [];
  let packets = 0;
  let bytes = 0;
  let error: ChannelError | undefined;
  if (entry.capturePath !== undefined) {
    let candidates: string[];
    if (a.continuousCapture) {
      candidates = sortRing(await existingRingFiles(entry.capturePath));
    } else {
      await stopLeftoverWriter(entry.capturePath, log);
      candidates = await existing(entry.capturePath);
    }
    let maxBytes: number | undefined;
    if (!a.continuousCapture) {
      try {
        maxBytes = resolveLimit('totalBytesPerSession', a.totalBytesPerSession);
      } catch {
        maxBytes = undefined;
      }
    }
    for (const file of candidates) {
      try {
        if ((await stat(file)).size < FILE_HEADER_LENGTH) {
          // Created, but the crash came before tcpdump wrote its header: it holds nothing,
          // and a file without a header is not a capture anyone can open.
          await rm(file, { force: true });
          continue;
        }
        const repaired = await repairPcapFile(file, maxBytes === undefined ? {} : { maxBytes });
        if (repaired.removedBytes > 0) {
          log('warn', 'cut a damaged end off a capture file', {
            sessionId: a.sessionId,
            file,
            removedBytes: repaired.removedBytes,
          });
        }
        packets += repaired.keptRecords;
        bytes += (await stat(file)).size;
        files.push(file);
      } catch (err) {
        // Left as it is for a person to look at.
        error = captureError(err);
        log('error', 'cannot repair a capture file', { sessionId: a.sessionId, file, error });
      }
    }
  }
  log('warn', 'capture was running when the agent stopped; recorded as AgentRestarted', {
    sessionId: a.sessionId,
    packets,
    files,
  });
  return {
    ...entry,
    state: 'Stopped',
    stopReason: 'AgentRestarted',
    stopTime: now,
    progress: { packets, bytes, kernelDrops: entry.progress?.kernelDrops ?? 0, at: now },
    files,
    ...(error === undefined ? {} : { error }),
  };
}

/** Ring files in order of their sequence number (readdir order is arbitrary). */
function sortRing(files: string[]): string[] {
  const n = (file: string) => Number(/_(\d+)\.[^.]+$/.exec(path.basename(file))?.[1] ?? 0);
  return files.sort((x, y) => n(x) - n(y));
}

/**
 * A tcpdump writes a single-file capture through its stdout. It normally dies with the agent
 * (parent-death signal) but may still be flushing; it is recognised safely as the tcpdump
 * process whose stdout is this very file, asked to finish (SIGINT flushes), and killed if it
 * does not.
 */
async function stopLeftoverWriter(file: string, log: AgentLog): Promise<void> {
  let pids: string[];
  try {
    pids = (await readdir('/proc')).filter((name) => /^\d+$/.test(name));
  } catch {
    return;
  }
  for (const pid of pids) {
    try {
      if ((await readlink(`/proc/${pid}/fd/1`)) !== file) continue;
      if ((await readFile(`/proc/${pid}/comm`, 'utf8')).trim() !== 'tcpdump') continue;
    } catch {
      continue; // gone, or not ours to read
    }
    log('warn', 'stopping a tcpdump left from before the restart', { pid: Number(pid), file });
    // A zombie counts as gone: it holds no file open any more, and in a container nobody
    // may ever reap it.
    const alive = async () => {
      try {
        const state = (await readFile(`/proc/${pid}/stat`, 'utf8')).replace(/^.*\) /s, '');
        return !state.startsWith('Z') && !state.startsWith('X');
      } catch {
        return false;
      }
    };
    // The kernel hands tcpdump its packets a block at a time: a SIGINT now would lose those of
    // the last second, captured before the crash. (Its guard may be stopping it meanwhile.)
    await new Promise((resolve) => setTimeout(resolve, KERNEL_BLOCK_TIMEOUT_MS));
    try {
      process.kill(Number(pid), 'SIGINT');
    } catch {
      continue;
    }
    for (let waited = 0; waited < 5000 && (await alive()); waited += 50) {
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    if (await alive()) {
      try {
        process.kill(Number(pid), 'SIGKILL');
      } catch {
        // gone meanwhile
      }
      for (let waited = 0; waited < 2000 && (await alive()); waited += 50) {
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    }
  }
}
