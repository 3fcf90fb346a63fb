/**
 * The blob upload of one session (an assignment with a `blob` target). A single-file capture is
 * streamed into its blob while it runs; a continuous capture (ring) uploads each finished file
 * to its own blob (`…_n.cap`) with a SAS the server grants per file. The upload state lives in
 * the session's journal entry, so a crash or a stop resumes it; its end goes to the server as
 * `uploaded`.
 */
import type { Agent } from 'node:http';
import { readdir, rm } from 'node:fs/promises';
import path from 'node:path';
import { existingRingFiles, ringFileName } from '../capture/ring-buffer.js';
import type {
  AgentMessage,
  CaptureAssignment,
  ChannelError,
  ServerMessage,
} from '../model/channel.js';
import type { AgentLog } from './agent-log.js';
import { startBlobUpload, type BlobUpload, type BlobUploadOutcome } from './blob-upload.js';
import { uploadReport, type Journal, type JournalEntry, type JournalUpload } from './journal.js';
import { exists, keepInSpool, removeLocalFiles, ringIndex, spoolIndex } from './spool-files.js';
import { Pause } from './pause.js';

type BlobTarget = NonNullable<CaptureAssignment['blob']>;
export type BlobGrant = Extract<ServerMessage, { type: 'blobGrant' }>;

export interface SessionUploadOptions {
  /** An assignment with a `blob` target. */
  readonly assignment: CaptureAssignment;
  /** `<data dir>/spool`: finished ring files are hard-linked here until they are uploaded. */
  readonly spoolDir: string;
  readonly journal: Journal;
  /** Sends to the server if connected (`blobGrantRequest`, `uploaded`). */
  readonly report: (message: AgentMessage) => void;
  readonly log: AgentLog;
  /** See BlobUploadOptions. */
  readonly pollIntervalMs?: number;
  readonly backoffMinMs?: number;
  readonly backoffMaxMs?: number;
  /** How long to wait for a `blobGrant` before asking again (default 5 s). */
  readonly grantRetryMs?: number;
  /** The wall clock (default Date.now); read once per upload, see BlobUploadOptions.now. */
  readonly now?: () => number;
  /** The http(s) agent of a blob URL's scheme (the agent's own-port pool), see BlobUploadOptions. */
  readonly httpAgent?: (secure: boolean) => Agent;
}

/** One finished ring file waiting for its upload. */
interface RingJob {
  readonly index: number;
  /** What is uploaded: the spool link, or the ring's file itself when there is no link. */
  readonly file: string;
  /** The ring's own file (it may be gone: the ring deletes its oldest files). */
  readonly original: string;
}

/** The upload state an assignment with a blob target starts with. */
export function pendingUpload(assignment: CaptureAssignment): JournalUpload {
  return {
    state: 'Pending',
    blobs: [],
    ...(assignment.continuousCapture ? { committedFiles: [], failedFiles: [] } : {}),
  };
}

/** Starts the upload of a session whose capture starts now (see SessionUpload). */
export function startSessionUpload(options: SessionUploadOptions): SessionUpload {
  return new SessionUpload(options);
}

/**
 * Resumes the upload of a session the journal has as Pending (after a crash or a stop): its
 * files are final, so each is uploaded whole.
 */
export function resumeSessionUpload(
  options: SessionUploadOptions,
  entry: JournalEntry,
): SessionUpload {
  return new SessionUpload(options, entry);
}

export class SessionUpload {
  readonly sessionId: string;
  /** Settles when the end is recorded and reported, or the upload was closed; never rejects. */
  readonly done: Promise<void>;
  readonly #o: SessionUploadOptions;
  readonly #target: BlobTarget;
  readonly #abort = new AbortController();
  #state: JournalUpload;
  #capturePath: string | undefined;
  /** Single file: the uploader following the capture. */
  #single: BlobUpload | undefined;
  /** Ring: finished files in order, and those ever queued. */
  readonly #jobs: RingJob[] = [];
  readonly #queued = new Set<number>();
  readonly #grants = new Map<number, BlobGrant>();
  #wakeJobs: (() => void) | undefined;
  readonly #grantWait = new Pause();
  /** The capture's final files once it has ended; undefined when closed first. */
  readonly #ended: Promise<readonly string[] | undefined>;
  #resolveEnded!: (files: readonly string[] | undefined) => void;
  #hasEnded = false;
  #rewrittenFrom: number | undefined;
  #closing: Promise<void> | undefined;

  constructor(options: SessionUploadOptions, resumeFrom?: JournalEntry) {
    const blob = options.assignment.blob;
    if (blob === undefined) throw new Error('SessionUpload: the assignment has no blob target');
    this.#o = options;
    this.#target = blob;
    this.sessionId = options.assignment.sessionId;
    this.#state = resumeFrom?.upload ?? pendingUpload(options.assignment);
    this.#ended = new Promise((resolve) => (this.#resolveEnded = resolve));
    const run = resumeFrom === undefined ? this.#runLive() : this.#runResumed(resumeFrom);
    this.done = run.catch((err: unknown) => {
      // The steps handle their own failures; this is the last line against a bug there.
      this.#log('error', 'session upload failed', { error: err });
    });
  }

  /** The state as the journal has it. */
  get state(): JournalUpload {
    return this.#state;
  }

  /** Single file: the capture is writing `file`; stream it into the blob as it grows. */
  followFile(file: string): void {
    this.#capturePath = file;
    if (this.#o.assignment.continuousCapture || this.#single !== undefined) return;
    if (this.#target.sas === undefined) return; // reported as a failure at the end
    this.#single = this.#startUpload(file, this.#target.url, this.#target.sas, true);
  }

  /**
   * Ring: file `index` is complete. The capture awaits this before its ring may delete the
   * oldest file, so it only hard-links the file into the spool (cheap) and queues it.
   */
  async ringFileClosed(file: string, index: number): Promise<void> {
    if (this.#queued.has(index) || this.#isDone(index)) return;
    this.#queued.add(index);
    let kept: string;
    try {
      kept = await keepInSpool(file, {
        spoolDir: this.#o.spoolDir,
        sessionId: this.sessionId,
        index,
      });
    } catch (err) {
      // Uploaded from the ring itself then, if the ring has not deleted it by that time.
      this.#log('warn', 'cannot keep a ring file in the spool', { file, error: err });
      kept = file;
    }
    this.#jobs.push({ index, file: kept, original: file });
    this.#wakeJobs?.();
  }

  /** The capture is over; `files` are its final files (repaired, complete). */
  /**
   * The capture is over: `files` are final. `rewrittenFrom`: where the capture engine rewrote the
   * single file's bytes while repairing it (CaptureResult.rewrittenFrom).
   */
  captureEnded(files: readonly string[], rewrittenFrom?: number): void {
    this.#rewrittenFrom = rewrittenFrom;
    this.#hasEnded = true;
    this.#resolveEnded(files);
    this.#wakeJobs?.();
  }

  /** A `blobGrant` for one of this session's ring files. */
  grant(message: BlobGrant): void {
    this.#grants.set(message.fileIndex, message);
    this.#grantWait.wake();
  }

  /** Stops uploading; what is not done stays Pending in the journal. Safe to call twice. */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      this.#abort.abort(new Error('upload closed'));
      this.#resolveEnded(undefined);
      this.#wakeJobs?.();
      this.#grantWait.wake();
      await this.#single?.close();
      await this.done;
    })();
    return this.#closing;
  }

  #log(level: 'debug' | 'info' | 'warn' | 'error', msg: string, fields = {}): void {
    this.#o.log(level, msg, { sessionId: this.sessionId, ...fields });
  }

  #isDone(index: number): boolean {
    return (
      (this.#state.committedFiles?.includes(index) ?? false) ||
      (this.#state.failedFiles?.includes(index) ?? false)
    );
  }

  #startUpload(file: string, url: string, sas: string, growing: boolean): BlobUpload {
    const o = this.#o;
    return startBlobUpload({
      file,
      url,
      sas,
      expiresAt: new Date(this.#target.expiresAt),
      growing,
      ...(o.httpAgent === undefined ? {} : { agent: o.httpAgent(url.startsWith('https:')) }),
      ...(o.pollIntervalMs === undefined ? {} : { pollIntervalMs: o.pollIntervalMs }),
      ...(o.backoffMinMs === undefined ? {} : { backoffMinMs: o.backoffMinMs }),
      ...(o.backoffMaxMs === undefined ? {} : { backoffMaxMs: o.backoffMaxMs }),
      log: o.log,
      logFields: { sessionId: this.sessionId },
      ...(o.now === undefined ? {} : { now: o.now }),
    });
  }

  async #runLive(): Promise<void> {
    if (this.#o.assignment.continuousCapture) {
      await this.#runRing();
      return;
    }
    const files = await this.#ended;
    if (files === undefined) return; // closed before the capture ended: stays Pending
    const file = this.#capturePath;
    if (file === undefined || !files.includes(file)) {
      // The capture made no file (refused, failed at once, nothing written): nothing to upload.
      await this.#single?.close();
      await this.#end();
      return;
    }
    if (this.#single === undefined) {
      await this.#end(noSas());
      return;
    }
    this.#single.finish(this.#rewrittenFrom);
    await this.#endSingle(file, await this.#single.outcome);
  }

  async #endSingle(file: string, outcome: BlobUploadOutcome): Promise<void> {
    switch (outcome.state) {
      case 'Abandoned':
        return;
      case 'Failed':
        await this.#end(outcome.error);
        return;
      case 'Completed':
        this.#state = { ...this.#state, blobs: [{ url: outcome.url, size: outcome.size }] };
        await this.#end(undefined, [file]);
        return;
    }
  }

  /** Ring files in order, one at a time, until the capture has ended and every one is done. */
  async #runRing(): Promise<void> {
    let firstError: ChannelError | undefined = this.#state.error;
    for (;;) {
      if (this.#abort.signal.aborted) return;
      const job = this.#jobs.shift();
      if (job === undefined) {
        if (!this.#hasEnded) {
          await new Promise<void>((resolve) => (this.#wakeJobs = resolve));
          this.#wakeJobs = undefined;
          continue;
        }
        if (await this.#queueLeftovers()) continue;
        break;
      }
      const outcome = await this.#uploadRingFile(job);
      if (outcome.state === 'Abandoned') return;
      if (outcome.state === 'Completed') {
        this.#state = {
          ...this.#state,
          committedFiles: [...(this.#state.committedFiles ?? []), job.index],
          blobs: [...this.#state.blobs, { url: outcome.url, size: outcome.size }],
        };
      } else {
        firstError ??= outcome.error;
        this.#state = {
          ...this.#state,
          failedFiles: [...(this.#state.failedFiles ?? []), job.index],
          error: firstError,
        };
        this.#log('warn', 'a ring file could not be uploaded; it is kept', {
          file: job.file,
          index: job.index,
        });
      }
      // Recorded before its local copy goes: a crash in between only leaves a copy behind.
      await this.#save();
      await this.#removeRingCopies(job, outcome.state === 'Completed');
    }
    await this.#end(firstError);
  }

  async #uploadRingFile(job: RingJob): Promise<BlobUploadOutcome> {
    const grant = await this.#grantFor(job.index);
    if (this.#abort.signal.aborted) return { state: 'Abandoned' };
    if (grant === undefined) {
      return {
        state: 'Failed',
        error: {
          code: 'StorageFailed',
          message: `the server granted no SAS for ring file ${job.index} before the upload deadline`,
        },
      };
    }
    const upload = this.#startUpload(job.file, grant.url, grant.sas, false);
    const onAbort = () => void upload.close();
    this.#abort.signal.addEventListener('abort', onAbort, { once: true });
    try {
      return await upload.outcome;
    } finally {
      this.#abort.signal.removeEventListener('abort', onAbort);
    }
  }

  /**
   * Ring files named at the capture's end that never came through the hook (the capture failed
   * around it) are uploaded from where they lie. True when there were any.
   */
  async #queueLeftovers(): Promise<boolean> {
    for (const file of (await this.#ended) ?? []) {
      const index = ringIndex(file);
      if (index === undefined || this.#queued.has(index) || this.#isDone(index)) continue;
      this.#queued.add(index);
      this.#jobs.push({ index, file, original: file });
    }
    return this.#jobs.length > 0;
  }

  /**
   * After a ring file's upload the spool link goes, and with spoolOnly the ring's file too. A
   * file that failed is kept: as the ring's own file while the ring has it, else as the link.
   */
  async #removeRingCopies(job: RingJob, committed: boolean): Promise<void> {
    try {
      if (job.file !== job.original && (committed || (await exists(job.original)))) {
        await rm(job.file, { force: true });
      }
      if (committed && this.#target.spoolOnly) await rm(job.original, { force: true });
    } catch (err) {
      this.#log('warn', 'cannot remove an uploaded ring file', { file: job.file, error: err });
    }
  }

  /** The SAS of ring file `index`: asked for, and asked again while no answer comes. */
  async #grantFor(index: number): Promise<BlobGrant | undefined> {
    // On the monotonic clock, so that a jump of the host's clock changes nothing.
    const deadline =
      performance.now() + Date.parse(this.#target.expiresAt) - (this.#o.now ?? Date.now)();
    for (;;) {
      const grant = this.#grants.get(index);
      if (grant !== undefined) {
        this.#grants.delete(index);
        return grant;
      }
      if (this.#abort.signal.aborted || performance.now() >= deadline) return undefined;
      // Not queued while the channel is down, hence the asking again.
      this.#o.report({ type: 'blobGrantRequest', sessionId: this.sessionId, fileIndex: index });
      const wait = Math.min(
        this.#o.grantRetryMs ?? 5000,
        Math.max(0, deadline - performance.now()),
      );
      await this.#grantWait.for(wait);
    }
  }

  /** After a crash or a stop: uploads from the disk what the journal says is not done yet. */
  async #runResumed(entry: JournalEntry): Promise<void> {
    const capturePath = entry.capturePath;
    this.#capturePath = capturePath;
    this.#hasEnded = true;
    this.#resolveEnded([]);
    if (!this.#o.assignment.continuousCapture) {
      if (capturePath === undefined || !(entry.files ?? []).includes(capturePath)) {
        await this.#end();
        return;
      }
      if (!(await exists(capturePath))) {
        await this.#end({
          code: 'StorageFailed',
          message: `${capturePath} is gone; it was not uploaded`,
        });
        return;
      }
      if (this.#target.sas === undefined) {
        await this.#end(noSas());
        return;
      }
      this.#log('info', 'resuming the upload of the capture file', { file: capturePath });
      // The blocks the previous process staged are not known: the whole file is staged again.
      this.#single = this.#startUpload(capturePath, this.#target.url, this.#target.sas, false);
      await this.#endSingle(capturePath, await this.#single.outcome);
      return;
    }
    const found = new Map<number, RingJob>();
    if (capturePath !== undefined) {
      for (const file of await existingRingFiles(capturePath)) {
        const index = ringIndex(file);
        if (index !== undefined) found.set(index, { index, file, original: file });
      }
      // A link in the spool is preferred: it holds the file even when the ring has deleted it.
      for (const name of await readdir(this.#o.spoolDir).catch(() => [] as string[])) {
        const index = spoolIndex(name, this.sessionId);
        if (index === undefined) continue;
        const file = path.join(this.#o.spoolDir, name);
        found.set(index, { index, file, original: ringFileName(capturePath, index) });
      }
    }
    for (const job of [...found.values()].sort((x, y) => x.index - y.index)) {
      if (this.#isDone(job.index)) {
        // Its upload ended before the crash; only the clean-up may have been missed.
        await this.#removeRingCopies(job, this.#state.committedFiles?.includes(job.index) ?? false);
        continue;
      }
      this.#queued.add(job.index);
      this.#jobs.push(job);
    }
    this.#log('info', 'resuming the upload of ring files', {
      files: this.#jobs.map((j) => j.index),
    });
    await this.#runRing();
  }

  async #save(): Promise<void> {
    const upload = this.#state;
    try {
      await this.#o.journal.update(this.sessionId, (e) => ({ ...e, upload }));
    } catch (err) {
      this.#log('error', 'journal write failed', { error: err });
    }
  }

  /**
   * The end: recorded in the journal first; then, Completed with spoolOnly, the local file is
   * removed (never before the journal says the blob is committed); then it is reported.
   */
  async #end(error?: ChannelError, spooled: readonly string[] = []): Promise<void> {
    if (this.#abort.signal.aborted) return;
    this.#state = {
      ...this.#state,
      state: error === undefined ? 'Completed' : 'Failed',
      ...(error === undefined ? {} : { error }),
    };
    await this.#save();
    if (this.#state.state === 'Completed' && this.#target.spoolOnly) {
      await removeLocalFiles(spooled).catch((err: unknown) =>
        this.#log('warn', 'cannot remove the spooled capture', { error: err }),
      );
    }
    this.#log(error === undefined ? 'info' : 'warn', 'upload ended', {
      state: this.#state.state,
      blobs: this.#state.blobs.length,
      ...(error === undefined ? {} : { error }),
    });
    this.#o.report({
      type: 'uploaded',
      sessionId: this.sessionId,
      upload: uploadReport(this.#state),
    });
  }
}

function noSas(): ChannelError {
  return { code: 'StorageFailed', message: 'the assignment has a blob target but no SAS' };
}
