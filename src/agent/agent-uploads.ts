/**
 * The agent's blob uploads under way: of running captures, and of stopped ones not yet uploaded
 * (src/agent/session-upload.ts), with the storage connections they share (from the agent's own
 * ports). The agent starts and resumes them here, routes grants to them, and at shutdown gives
 * them a moment to complete before it closes the rest.
 */
import type { Agent as HttpAgent } from 'node:http';
import type { AgentMessage, CaptureAssignment } from '../model/channel.js';
import type { AgentLog } from './agent-log.js';
import type { Journal, JournalEntry } from './journal.js';
import type { OwnPorts } from './own-ports.js';
import {
  resumeSessionUpload,
  startSessionUpload,
  type BlobGrant,
  type SessionUpload,
  type SessionUploadOptions,
} from './session-upload.js';

export interface AgentUploadsOptions {
  readonly ownPorts: OwnPorts;
  readonly spoolDir: string;
  readonly journal: Journal;
  readonly report: (message: AgentMessage) => void;
  readonly log: AgentLog;
  readonly backoffMinMs?: number;
  readonly backoffMaxMs?: number;
  /** The wall clock SAS expiry is read against. */
  readonly now?: () => number;
}

export class AgentUploads {
  readonly #o: AgentUploadsOptions;
  readonly #uploads = new Map<string, SessionUpload>();
  /** Connections to blob storage, from the own ports, kept alive between requests. */
  readonly #blobAgents: { readonly http: HttpAgent; readonly https: HttpAgent };

  constructor(options: AgentUploadsOptions) {
    this.#o = options;
    // At most this many connections per storage endpoint: a few own ports serve every upload.
    const blob = { keepAlive: true, maxSockets: 4 };
    this.#blobAgents = {
      http: options.ownPorts.httpAgent(false, blob),
      https: options.ownPorts.httpAgent(true, blob),
    };
  }

  /** Starts the upload of a capture starting now. */
  start(assignment: CaptureAssignment): SessionUpload {
    return this.#track(startSessionUpload(this.#uploadOptions(assignment)));
  }

  /** Goes on with an upload a previous process left unfinished (stopped, crashed). */
  resume(entry: JournalEntry): SessionUpload {
    return this.#track(resumeSessionUpload(this.#uploadOptions(entry.assignment), entry));
  }

  /** Hands a grant to its upload; false when no upload of that session is under way. */
  grant(message: BlobGrant): boolean {
    const upload = this.#uploads.get(message.sessionId);
    if (upload === undefined) return false;
    upload.grant(message);
    return true;
  }

  /** Gives the uploads up to `ms` to complete; the rest stay Pending for the next start. */
  async finish(ms: number): Promise<void> {
    const uploads = [...this.#uploads.values()];
    if (uploads.length === 0) return;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      Promise.all(uploads.map((u) => u.done)),
      new Promise((resolve) => (timer = setTimeout(resolve, ms))),
    ]);
    clearTimeout(timer);
    const left = [...this.#uploads.values()];
    if (left.length > 0) {
      this.#o.log('warn', 'uploads not finished; they resume at the next start', {
        sessions: left.map((u) => u.sessionId),
      });
    }
    await Promise.all(left.map((u) => u.close()));
  }

  /** Closes the storage connections (after {@link finish}). */
  closeConnections(): void {
    this.#blobAgents.http.destroy();
    this.#blobAgents.https.destroy();
  }

  #uploadOptions(assignment: CaptureAssignment): SessionUploadOptions {
    const o = this.#o;
    return {
      httpAgent: (secure) => (secure ? this.#blobAgents.https : this.#blobAgents.http),
      assignment,
      spoolDir: o.spoolDir,
      journal: o.journal,
      report: o.report,
      log: o.log,
      ...(o.backoffMinMs === undefined ? {} : { backoffMinMs: o.backoffMinMs }),
      ...(o.backoffMaxMs === undefined ? {} : { backoffMaxMs: o.backoffMaxMs }),
      ...(o.now === undefined ? {} : { now: o.now }),
    };
  }

  #track(upload: SessionUpload): SessionUpload {
    this.#uploads.set(upload.sessionId, upload);
    void upload.done.then(() => {
      if (this.#uploads.get(upload.sessionId) === upload) this.#uploads.delete(upload.sessionId);
    });
    return upload;
  }
}
