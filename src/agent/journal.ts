/**
 * The agent's journal: one JSON file per session in `<data dir>/sessions/<sessionId>.json`.
 * It is the agent's memory across crashes and lost connections: written before a capture
 * starts, updated as it runs and when it stops, and removed only when the server acknowledges
 * the final state. Everything the agent tells the server in `hello` comes from here.
 */
import { mkdir, readdir, readFile, rename, rm } from 'node:fs/promises';
import path from 'node:path';
import { Type, type Static } from 'typebox';
import { Compile } from 'typebox/compile';
import {
  CaptureAssignmentSchema,
  ChannelErrorSchema,
  ProgressSchema,
  UploadReportSchema,
  type ObservedSession,
  type UploadReport,
} from '../model/channel.js';
import { StopReasonSchema } from '../model/stop-reason.js';
import type { AgentLog } from './agent-log.js';
import { isDurableTempFile, removeFileDurably, writeFileDurably } from '../files/durable-file.js';

const Time = Type.String({ format: 'date-time' });

/** How a session's blob upload stands (sessions with a blob target only). */
export const JournalUploadSchema = Type.Object({
  ...UploadReportSchema.properties,
  /** Ring: the numbers of the files committed to their blobs. */
  committedFiles: Type.Optional(Type.Array(Type.Integer({ minimum: 1 }))),
  /** Ring: the numbers of the files whose upload failed for good (kept on the agent). */
  failedFiles: Type.Optional(Type.Array(Type.Integer({ minimum: 1 }))),
});
export type JournalUpload = Static<typeof JournalUploadSchema>;

export const JournalEntrySchema = Type.Object({
  assignment: CaptureAssignmentSchema,
  state: Type.Union([Type.Literal('Running'), Type.Literal('Stopped')]),
  /**
   * Where the capture writes, resolved on disk before it starts (for a ring, the name its
   * files derive from). Set only once the agent has checked that nothing was there before,
   * so after a crash whatever lies at this path belongs to this session.
   */
  capturePath: Type.Optional(Type.String()),
  startTime: Type.Optional(Time),
  progress: Type.Optional(ProgressSchema),
  stopReason: Type.Optional(StopReasonSchema),
  stopTime: Type.Optional(Time),
  error: Type.Optional(ChannelErrorSchema),
  files: Type.Optional(Type.Array(Type.String())),
  /**
   * Present when the assignment has a blob target; Pending until every file is uploaded (or
   * the upload failed for good). The session is kept until the server acknowledges its end.
   */
  upload: Type.Optional(JournalUploadSchema),
});
export type JournalEntry = Static<typeof JournalEntrySchema>;

const entryCheck = Compile(JournalEntrySchema);
const sessionFile = /^([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})\.json$/i;

export interface JournalOptions {
  /** The agent's data dir; the journal lives in its `sessions/` folder. */
  readonly dataDir: string;
  readonly log: AgentLog;
}

/** Opens the journal: creates its folder, loads every entry, clears crash leftovers. */
export async function openJournal(options: JournalOptions): Promise<Journal> {
  const journal = new Journal(path.join(options.dataDir, 'sessions'), options.log);
  await journal.load();
  return journal;
}

/**
 * The entries in memory are the truth; every change is queued to disk per session, in order,
 * so a late progress write can never overwrite the stopped state that followed it.
 */
export class Journal {
  readonly #folder: string;
  readonly #log: AgentLog;
  readonly #entries = new Map<string, JournalEntry>();
  readonly #queues = new Map<string, Promise<void>>();

  constructor(folder: string, log: AgentLog) {
    this.#folder = folder;
    this.#log = log;
  }

  get folder(): string {
    return this.#folder;
  }

  async load(): Promise<void> {
    await mkdir(this.#folder, { recursive: true, mode: 0o700 });
    for (const name of await readdir(this.#folder)) {
      const file = path.join(this.#folder, name);
      if (isDurableTempFile(name)) {
        // A write a crash interrupted; the previous version of the entry is still in place.
        await rm(file, { force: true });
        continue;
      }
      const id = sessionFile.exec(name)?.[1];
      if (id === undefined) continue;
      let entry: unknown;
      try {
        entry = JSON.parse(await readFile(file, 'utf8'));
      } catch (err) {
        entry = err;
      }
      if (!entryCheck.Check(entry) || entry.assignment.sessionId !== id) {
        // Kept aside rather than deleted: a person may still want to read it.
        this.#log('error', 'journal entry unreadable; moved aside', { file });
        await rename(file, `${file}.unreadable`).catch(() => undefined);
        continue;
      }
      this.#entries.set(id, entry);
    }
  }

  has(sessionId: string): boolean {
    return this.#entries.has(sessionId);
  }

  get(sessionId: string): JournalEntry | undefined {
    return this.#entries.get(sessionId);
  }

  entries(): JournalEntry[] {
    return [...this.#entries.values()];
  }

  /** Records an entry's new state; resolves once it is on disk. */
  save(entry: JournalEntry): Promise<void> {
    const id = entry.assignment.sessionId;
    this.#entries.set(id, entry);
    return this.#enqueue(id);
  }

  /**
   * Changes a session's entry from its newest state (so that the capture and its upload, which
   * change different fields, never write back a stale copy of each other's); nothing when the
   * session is not in the journal.
   */
  update(sessionId: string, change: (entry: JournalEntry) => JournalEntry): Promise<void> {
    const entry = this.#entries.get(sessionId);
    if (entry === undefined) return Promise.resolve();
    return this.save(change(entry));
  }

  /** Forgets a session (the server has its final state); resolves once the file is gone. */
  remove(sessionId: string): Promise<void> {
    this.#entries.delete(sessionId);
    return this.#enqueue(sessionId);
  }

  /** Waits for every queued write. */
  async flush(): Promise<void> {
    await Promise.all([...this.#queues.values()]);
  }

  #enqueue(id: string): Promise<void> {
    const file = path.join(this.#folder, `${id}.json`);
    // Each step writes the newest state at the time it runs, so queued steps coalesce.
    const step = async (): Promise<void> => {
      const entry = this.#entries.get(id);
      if (entry === undefined) await removeFileDurably(file);
      else await writeFileDurably(file, JSON.stringify(entry, null, 2) + '\n');
    };
    const previous = this.#queues.get(id) ?? Promise.resolve();
    const next = previous.then(step);
    // The queue holds a settled copy: one failed write must not block the ones after it, and
    // the failure is the caller's to handle (through `next`), not an unhandled rejection.
    const settled: Promise<void> = next.then(
      () => this.#dequeue(id, settled),
      () => this.#dequeue(id, settled),
    );
    this.#queues.set(id, settled);
    return next;
  }

  #dequeue(id: string, settled: Promise<void>): void {
    if (this.#queues.get(id) === settled) this.#queues.delete(id);
  }
}

/** A journal entry as the agent reports it in `hello`. */
export function observedSession(entry: JournalEntry): ObservedSession {
  return {
    sessionId: entry.assignment.sessionId,
    state: entry.state,
    ...(entry.startTime === undefined ? {} : { startTime: entry.startTime }),
    ...(entry.progress === undefined ? {} : { progress: entry.progress }),
    ...(entry.stopReason === undefined ? {} : { stopReason: entry.stopReason }),
    ...(entry.stopTime === undefined ? {} : { stopTime: entry.stopTime }),
    ...(entry.error === undefined ? {} : { error: entry.error }),
    ...(entry.files === undefined ? {} : { files: entry.files }),
    ...(entry.upload === undefined ? {} : { upload: uploadReport(entry.upload) }),
  };
}

/** The upload state as the server sees it (without the agent's own bookkeeping). */
export function uploadReport(upload: JournalUpload): UploadReport {
  return {
    state: upload.state,
    blobs: upload.blobs,
    ...(upload.error === undefined ? {} : { error: upload.error }),
  };
}
