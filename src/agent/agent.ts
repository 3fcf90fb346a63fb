/**
 * The wirewatch agent: enrolls once, keeps one channel to the server, runs the captures the
 * server assigns, and keeps a journal so that no final state is lost across crashes, restarts
 * and lost connections (the flow is described in src/model/channel.ts and docs/agent.md).
 */
import { constants } from 'node:fs';
import { mkdir, open, readFile, rm } from 'node:fs/promises';
import type { Agent as HttpAgent } from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { DEFAULT_CAPTURE_ROOT } from '../capture/capture-path.js';
import type { PortRange } from '../capture/filter-spec.js';
import type { OwnTraffic } from '../capture/own-traffic.js';
import {
  CHANNEL_MAX_PAYLOAD_BYTES,
  CHANNEL_PROTOCOL_VERSION,
  MAX_HELLO_SESSIONS,
  type AgentMessage,
  type CaptureAssignment,
  type ObservedSession,
  type ServerMessage,
  type StopRequestReason,
} from '../model/channel.js';
import { silentLog, type AgentLog } from './agent-log.js';
import { createChannelClient, type ChannelClient } from './channel-client.js';
import { deleteIdentity, loadOrEnroll } from './enroll.js';
import { FileReader, sessionFiles } from './file-reader.js';
import { observedSession, openJournal, uploadReport, type Journal } from './journal.js';
import { reserveOwnPorts, type OwnPorts } from './own-ports.js';
import { endpointOf, resolveOwnTraffic, type Endpoint } from './own-traffic.js';
import { StreamRequests } from './stream-requests.js';
import { openWrittenFiles, type WrittenFiles } from './written-files.js';
import {
  recoverSession,
  runSession,
  stoppedMessage,
  type SessionRunner,
} from './session-runner.js';
import {
  removeSpooledFiles,
  resumeSessionUpload,
  startSessionUpload,
  type SessionUpload,
  type SessionUploadOptions,
} from './session-upload.js';

/** Reported in `hello`; the same version the CLI prints. */
export const AGENT_VERSION = '0.1.0';

/** The longest gap between two progress reports of a running capture. */
const MAX_PROGRESS_INTERVAL_MS = 5000;

export interface AgentOptions {
  /** The server's base URL, http:// or https://. */
  readonly serverUrl: string;
  /** CA certificate(s) to trust for an https server (PEM). */
  readonly ca?: Buffer;
  /** The subscription's enrollment token; needed only while the agent is not enrolled. */
  readonly enrollToken?: string;
  readonly subscriptionId: string;
  readonly resourceGroup: string;
  /** The VM name this host appears as. */
  readonly name: string;
  readonly location: string;
  /** The interface captures run on. */
  readonly interface: string;
  /** The network namespace the interface lives in. */
  readonly netns?: string;
  /** Holds agent.json and the journal. */
  readonly dataDir: string;
  /** Every capture file lies under it (default /var/captures). */
  readonly captureRoot?: string;
  /** Reported at enrollment and in `hello` (default: os.hostname()). */
  readonly hostname?: string;
  readonly log?: AgentLog;
  /** Reconnect backoff, first and longest wait (default 250 ms and 15 s). */
  readonly backoffMinMs?: number;
  readonly backoffMaxMs?: number;
  /** Silence from the server after which the channel is re-dialled (default 45 s). */
  readonly deadAfterMs?: number;
  /** How often a running capture reports progress (default 2000 ms, at most 5000). */
  readonly progressIntervalMs?: number;
  readonly tcpdumpPath?: string;
  /** On close, how long to wait for the server to acknowledge the final states (default 2 s). */
  readonly ackWaitMs?: number;
  /**
   * On close, how long blob uploads may take to complete after the captures have stopped
   * (default 10 s); the rest stay Pending in the journal and resume at the next start.
   */
  readonly uploadWaitMs?: number;
  /** Blob upload retry waits, first and longest (default 500 ms and 10 s). */
  readonly uploadBackoffMinMs?: number;
  readonly uploadBackoffMaxMs?: number;
  /** Aborts enrollment (which retries until it reaches the server). */
  readonly signal?: AbortSignal;
  /** The wall clock blob uploads read their SAS expiry against (default Date.now; tests jump it). */
  readonly now?: () => number;
  /**
   * The local ports every connection of the agent is bound to, so that captures can leave them
   * out (default: 16 ports next to the kernel's ephemeral range; src/agent/own-ports.ts).
   */
  readonly ownPorts?: PortRange;
}

/** How the agent's run ended. */
export type AgentExit =
  | { readonly reason: 'closed' }
  /** The server deregistered the VM: captures stopped (TargetDeleted), agent.json removed. */
  | { readonly reason: 'deregistered' }
  /** The server refused the credential (HTTP 401): same clean-up, and `error` says so. */
  | { readonly reason: 'unauthorized'; readonly error: Error };

export type AgentEvent =
  | { readonly type: 'connected' }
  | { readonly type: 'disconnected' }
  | { readonly type: 'received'; readonly message: ServerMessage }
  | { readonly type: 'sent'; readonly message: AgentMessage }
  | { readonly type: 'exit'; readonly exit: AgentExit };

export interface Agent {
  readonly agentId: string;
  readonly vmId: string;
  readonly captureRoot: string;
  readonly connected: boolean;
  /** Settles when the agent has stopped, for whatever reason; never rejects. */
  readonly exited: Promise<AgentExit>;
  /** Every session in the journal, as `hello` would report it. */
  sessions(): ObservedSession[];
  /** Subscribes to what the agent does; returns the unsubscribe function. */
  onEvent(listener: (event: AgentEvent) => void): () => void;
  /**
   * Stops every running capture (ManualIntervention; each file complete and fsynced, each
   * final state journaled and sent), waits briefly for the server's acks, and disconnects.
   * Safe to call twice.
   */
  close(): Promise<void>;
}

/**
 * Starts an agent: enrolls if needed, recovers what a previous process left running, and
 * connects. Rejects when enrollment is refused or the data dir is unusable.
 */
export async function createAgent(options: AgentOptions): Promise<Agent> {
  const log = options.log ?? silentLog;
  const captureRoot = path.resolve(options.captureRoot ?? DEFAULT_CAPTURE_ROOT);
  const hostname = options.hostname ?? os.hostname();
  await mkdir(options.dataDir, { recursive: true, mode: 0o700 });
  const lock = await lockDataDir(options.dataDir);
  try {
    // Every connection of the agent comes from its own ports, the enrollment's too.
    const ownPorts = await reserveOwnPorts({
      ...(options.ownPorts === undefined ? {} : { ports: options.ownPorts }),
      log,
    });
    const identity = await loadOrEnroll({
      agent: ownPorts.httpAgent(new URL(options.serverUrl).protocol === 'https:'),
      serverUrl: options.serverUrl,
      ...(options.ca === undefined ? {} : { ca: options.ca }),
      ...(options.enrollToken === undefined ? {} : { enrollToken: options.enrollToken }),
      dataDir: options.dataDir,
      subscriptionId: options.subscriptionId,
      resourceGroup: options.resourceGroup,
      name: options.name,
      location: options.location,
      hostname,
      captureRoot,
      log,
      backoffMinMs: options.backoffMinMs ?? 250,
      backoffMaxMs: options.backoffMaxMs ?? 15_000,
      ...(options.signal === undefined ? {} : { signal: options.signal }),
    });
    const journal = await openJournal({ dataDir: options.dataDir, log });
    for (const entry of journal.entries()) {
      if (entry.state === 'Running') await journal.save(await recoverSession(entry, log));
    }
    const written = await openWrittenFiles({ dataDir: options.dataDir, log });
    const spoolDir = path.join(options.dataDir, 'spool');
    await mkdir(spoolDir, { recursive: true, mode: 0o700 });
    for (const entry of journal.entries()) {
      await removeSpooledFiles(entry, spoolDir).catch((err: unknown) =>
        log('warn', 'cannot remove a spooled capture', {
          sessionId: entry.assignment.sessionId,
          error: err,
        }),
      );
    }
    return new AgentImpl({
      options,
      log,
      captureRoot,
      hostname,
      journal,
      written,
      ownPorts,
      agentId: identity.agentId,
      vmId: identity.vmId,
      credential: identity.credential,
      unlock: lock,
    });
  } catch (err) {
    await lock();
    throw err;
  }
}

interface AgentParts {
  readonly options: AgentOptions;
  readonly log: AgentLog;
  readonly captureRoot: string;
  readonly hostname: string;
  readonly journal: Journal;
  readonly written: WrittenFiles;
  readonly ownPorts: OwnPorts;
  readonly agentId: string;
  readonly vmId: string;
  readonly credential: string;
  readonly unlock: () => Promise<void>;
}

class AgentImpl implements Agent {
  readonly agentId: string;
  readonly vmId: string;
  readonly captureRoot: string;
  readonly exited: Promise<AgentExit>;
  readonly #parts: AgentParts;
  readonly #log: AgentLog;
  readonly #journal: Journal;
  readonly #channel: ChannelClient;
  /** Downloads of captures whose only copy is here, served over the channel. */
  readonly #fileReader: FileReader;
  /** Live views of captures running here. */
  readonly #streams: StreamRequests;
  readonly #runners = new Map<string, SessionRunner>();
  /** Blob uploads under way: of running captures, and of stopped ones not yet uploaded. */
  readonly #uploads = new Map<string, SessionUpload>();
  /**
   * Final reports (`stopped`, `uploaded`, a Stopped session in `hello`) sent on this connection
   * and not yet acknowledged, per session: a session is forgotten only once the server has
   * acknowledged everything it was told, so an ack of `stopped` that crosses `uploaded` on the
   * wire does not make the agent forget the upload's outcome.
   */
  readonly #unacked = new Map<string, number>();
  readonly #paths = new Set<string>();
  /** Stopped sessions left out of the last hello (it would not fit), offered after welcome. */
  #heldBack: string[] = [];
  readonly #listeners = new Set<(event: AgentEvent) => void>();
  /** Waiters for acks, while close() gives the server a moment to take the final states. */
  readonly #ackWaiters = new Set<() => void>();
  #shutdown: Promise<void> | undefined;
  #resolveExited!: (exit: AgentExit) => void;
  /** Connections to blob storage, from the own ports, kept alive between requests. */
  readonly #blobAgents: { readonly http: HttpAgent; readonly https: HttpAgent };

  constructor(parts: AgentParts) {
    this.#parts = parts;
    this.#log = parts.log;
    this.#journal = parts.journal;
    this.agentId = parts.agentId;
    this.vmId = parts.vmId;
    this.captureRoot = parts.captureRoot;
    this.exited = new Promise((resolve) => (this.#resolveExited = resolve));
    const o = parts.options;
    // At most this many connections per storage endpoint: a few own ports serve every upload.
    const blob = { keepAlive: true, maxSockets: 4 };
    this.#blobAgents = {
      http: parts.ownPorts.httpAgent(false, blob),
      https: parts.ownPorts.httpAgent(true, blob),
    };
    this.#channel = createChannelClient({
      serverUrl: o.serverUrl,
      credential: parts.credential,
      ...(o.ca === undefined ? {} : { ca: o.ca }),
      agent: parts.ownPorts.httpAgent(new URL(o.serverUrl).protocol === 'https:'),
      log: parts.log,
      backoffMinMs: o.backoffMinMs ?? 250,
      backoffMaxMs: o.backoffMaxMs ?? 15_000,
      ...(o.deadAfterMs === undefined ? {} : { deadAfterMs: o.deadAfterMs }),
      onOpen: () => {
        this.#emit({ type: 'connected' });
        this.#sendHello();
      },
      onMessage: (message) => this.#onMessage(message),
      onClose: () => {
        // Nothing sent on the lost connection will be acknowledged; the next hello re-sends it.
        this.#unacked.clear();
        this.#emit({ type: 'disconnected' });
      },
      onUnauthorized: () => {
        void this.#stopAll('TargetDeleted', {
          reason: 'unauthorized',
          error: new Error(
            'the server refused the agent credential (HTTP 401): the VM was deleted or the ' +
              'credential revoked; agent.json was removed, enroll again with --enroll-token',
          ),
        });
      },
    });
    this.#fileReader = new FileReader({
      roots: [this.captureRoot, path.join(o.dataDir, 'spool')],
      files: async (sessionId) => {
        const entry = this.#journal.get(sessionId);
        return entry === undefined ? parts.written.get(sessionId) : sessionFiles(entry);
      },
      send: (reply) => this.#send(reply),
      sendBinary: (frame) => this.#channel.sendBinary(frame),
      log: this.#log,
    });
    this.#streams = new StreamRequests({
      session: (sessionId) => {
        const runner = this.#runners.get(sessionId);
        if (runner === undefined || runner.stopped) return undefined;
        return {
          entry: () => this.#journal.get(sessionId),
          finished: runner.finished,
          watch: () => runner.watch(),
        };
      },
      captureRoot: this.captureRoot,
      send: (reply) => this.#send(reply),
      sendBinary: (frame) => this.#channel.sendBinary(frame),
      onDisconnect: (listener) =>
        this.onEvent((event) => {
          if (event.type === 'disconnected') listener();
        }),
      log: this.#log,
    });
    parts.log('info', 'agent started', {
      agentId: this.agentId,
      vmId: this.vmId,
      interface: o.interface,
      ...(o.netns === undefined ? {} : { netns: o.netns }),
      captureRoot: this.captureRoot,
    });
    // Uploads a previous process left unfinished (stopped, crashed) go on from the files.
    for (const entry of this.#journal.entries()) {
      if (entry.upload?.state !== 'Pending' || entry.state !== 'Stopped') continue;
      this.#trackUpload(resumeSessionUpload(this.#uploadOptions(entry.assignment), entry));
    }
  }

  get connected(): boolean {
    return this.#channel.connected;
  }

  sessions(): ObservedSession[] {
    return this.#journal.entries().map(observedSession);
  }

  onEvent(listener: (event: AgentEvent) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  close(): Promise<void> {
    return this.#stopAll('ManualIntervention', { reason: 'closed' });
  }

  #emit(event: AgentEvent): void {
    for (const listener of this.#listeners) {
      try {
        listener(event);
      } catch (err) {
        this.#log('error', 'agent event listener failed', { error: err });
      }
    }
  }

  #send(message: AgentMessage): void {
    if (!this.#channel.send(message)) return;
    if (message.type === 'stopped' || message.type === 'uploaded') {
      this.#unacked.set(message.sessionId, (this.#unacked.get(message.sessionId) ?? 0) + 1);
    }
    this.#emit({ type: 'sent', message });
  }

  #sendHello(): void {
    this.#unacked.clear();
    const { sessions, heldBack } = fitHello(this.sessions());
    if (heldBack.length > 0) {
      this.#log('warn', 'hello too large; stopped sessions follow it one by one', {
        inHello: sessions.length,
        heldBack: heldBack.length,
      });
    }
    this.#heldBack = heldBack;
    for (const s of sessions) if (s.state === 'Stopped') this.#unacked.set(s.sessionId, 1);
    this.#send({
      type: 'hello',
      protocolVersion: CHANNEL_PROTOCOL_VERSION,
      agentVersion: AGENT_VERSION,
      hostname: this.#parts.hostname,
      captureRoot: this.captureRoot,
      sessions,
    });
  }

  /** After welcome: the stopped sessions that did not fit in the hello, one message each. */
  #offerHeldBack(): void {
    const ids = this.#heldBack;
    this.#heldBack = [];
    for (const id of ids) {
      const entry = this.#journal.get(id);
      if (entry?.state !== 'Stopped') continue;
      this.#send(stoppedMessage(entry));
      if (entry.upload !== undefined && entry.upload.state !== 'Pending') {
        this.#send({ type: 'uploaded', sessionId: id, upload: uploadReport(entry.upload) });
      }
    }
  }

  #onMessage(message: ServerMessage): void {
    this.#emit({ type: 'received', message });
    switch (message.type) {
      case 'welcome':
        this.#log('info', 'in sync with the server', { serverTime: message.serverTime });
        this.#offerHeldBack();
        return;
      case 'start':
        this.#start(message.assignment);
        return;
      case 'stop': {
        const runner = this.#runners.get(message.sessionId);
        if (runner !== undefined) {
          this.#log('info', 'stop requested', {
            sessionId: message.sessionId,
            reason: message.reason,
          });
          runner.stop(message.reason);
          return;
        }
        // Already over: the server missed the final state, so offer it again.
        const entry = this.#journal.get(message.sessionId);
        if (entry?.state === 'Stopped') {
          this.#send(stoppedMessage(entry));
          if (entry.upload !== undefined && entry.upload.state !== 'Pending') {
            this.#send({
              type: 'uploaded',
              sessionId: message.sessionId,
              upload: uploadReport(entry.upload),
            });
          }
        } else this.#log('warn', 'stop for an unknown session', { sessionId: message.sessionId });
        return;
      }
      case 'blobGrant': {
        const upload = this.#uploads.get(message.sessionId);
        if (upload !== undefined) upload.grant(message);
        else
          this.#log('debug', 'blob grant for no upload; ignored', { sessionId: message.sessionId });
        return;
      }
      case 'ack':
        this.#ack(message.sessionId);
        return;
      case 'deregistered':
        this.#log('warn', 'the server deregistered this VM; stopping every capture');
        void this.#stopAll('TargetDeleted', { reason: 'deregistered' });
        return;
      case 'readFile':
      case 'readFileCancel':
        // A download of a capture whose only copy is here (src/agent/file-reader.ts).
        this.#fileReader.handle(message);
        return;
      case 'streamStart':
      case 'streamStop':
        // A live view of a capture running here (src/agent/live-stream.ts).
        this.#streams.handle(message);
        return;
    }
  }

  #start(assignment: CaptureAssignment): void {
    const id = assignment.sessionId;
    if (this.#shutdown !== undefined) return; // the next start's hello tells the server
    if (this.#runners.has(id) || this.#journal.has(id)) {
      this.#log('debug', 'start for a session already known; ignored', { sessionId: id });
      return;
    }
    const o = this.#parts.options;
    this.#log('info', 'start requested', { sessionId: id, resourceId: assignment.resourceId });
    const upload =
      assignment.blob === undefined
        ? undefined
        : this.#trackUpload(startSessionUpload(this.#uploadOptions(assignment)));
    const runner = runSession({
      assignment,
      interface: o.interface,
      ...(o.netns === undefined ? {} : { netns: o.netns }),
      captureRoot: this.captureRoot,
      ...(o.tcpdumpPath === undefined ? {} : { tcpdumpPath: o.tcpdumpPath }),
      progressIntervalMs: Math.min(o.progressIntervalMs ?? 2000, MAX_PROGRESS_INTERVAL_MS),
      journal: this.#journal,
      log: this.#log,
      report: (message) => this.#send(message),
      claimPath: (capturePath) => {
        if (this.#paths.has(capturePath)) return false;
        this.#paths.add(capturePath);
        return true;
      },
      releasePath: (capturePath) => this.#paths.delete(capturePath),
      ...(upload === undefined ? {} : { upload }),
      ...(assignment.includeOwnTraffic === true
        ? {}
        : { ownTraffic: () => this.#ownTraffic(assignment) }),
    });
    this.#runners.set(id, runner);
    void runner.finished.then(() => {
      if (this.#runners.get(id) === runner) this.#runners.delete(id);
    });
  }

  /**
   * The agent's own connections as a capture starting now leaves them out: the server (every
   * address its name resolves to, and the one the channel is connected to) and the blob
   * endpoints of this capture and of every upload still to finish. An endpoint named later (a
   * capture created afterwards uploading to another storage account) is not in the filter.
   */
  async #ownTraffic(assignment: CaptureAssignment): Promise<OwnTraffic | undefined> {
    const range = this.#parts.ownPorts.range;
    if (range === undefined) return undefined;
    const endpoints: Endpoint[] = [];
    const add = (endpoint: Endpoint | undefined) => {
      if (endpoint !== undefined) endpoints.push(endpoint);
    };
    add(endpointOf(this.#parts.options.serverUrl));
    const remote = this.#channel.remote;
    if (remote !== undefined) add({ host: remote.address, port: remote.port });
    const blobs = [assignment, ...this.#journal.entries().map((e) => e.assignment)];
    for (const a of blobs) if (a.blob !== undefined) add(endpointOf(a.blob.url));
    return resolveOwnTraffic(range, endpoints);
  }

  #uploadOptions(assignment: CaptureAssignment): SessionUploadOptions {
    const o = this.#parts.options;
    return {
      httpAgent: (secure) => (secure ? this.#blobAgents.https : this.#blobAgents.http),
      assignment,
      spoolDir: path.join(o.dataDir, 'spool'),
      journal: this.#journal,
      report: (message) => this.#send(message),
      log: this.#log,
      ...(o.uploadBackoffMinMs === undefined ? {} : { backoffMinMs: o.uploadBackoffMinMs }),
      ...(o.uploadBackoffMaxMs === undefined ? {} : { backoffMaxMs: o.uploadBackoffMaxMs }),
      ...(o.now === undefined ? {} : { now: o.now }),
    };
  }

  #trackUpload(upload: SessionUpload): SessionUpload {
    this.#uploads.set(upload.sessionId, upload);
    void upload.done.then(() => {
      if (this.#uploads.get(upload.sessionId) === upload) this.#uploads.delete(upload.sessionId);
    });
    return upload;
  }

  #ack(sessionId: string): void {
    const entry = this.#journal.get(sessionId);
    if (entry === undefined) return;
    if (entry.state !== 'Stopped') {
      this.#log('warn', 'ack for a session still running; ignored', { sessionId });
      return;
    }
    const unacked = Math.max(0, (this.#unacked.get(sessionId) ?? 0) - 1);
    if (unacked > 0) this.#unacked.set(sessionId, unacked);
    else this.#unacked.delete(sessionId);
    // The upload's outcome is still to be reported (and acknowledged) before it is forgotten.
    if (unacked > 0 || entry.upload?.state === 'Pending') return;
    // Its files stay downloadable (and only they): the record takes over from the journal (in
    // memory at once; on disk, should a crash come between, the capture is only not served).
    this.#parts.written
      .record(sessionId, entry.files ?? [])
      .catch((err: unknown) =>
        this.#log('error', 'cannot record the files of a session', { sessionId, error: err }),
      );
    this.#journal
      .remove(sessionId)
      .catch((err: unknown) => this.#log('error', 'journal removal failed', { error: err }))
      .finally(() => {
        for (const waiter of this.#ackWaiters) waiter();
      });
  }

  /** Stops every capture with `reason`, records and reports it, then ends the agent. */
  #stopAll(reason: StopRequestReason, exit: AgentExit): Promise<void> {
    this.#shutdown ??= this.#runShutdown(reason, exit);
    return this.#shutdown;
  }

  async #runShutdown(reason: StopRequestReason, exit: AgentExit): Promise<void> {
    const o = this.#parts.options;
    const failures: unknown[] = [];
    const step = async (name: string, fn: () => Promise<void>) => {
      try {
        await fn();
      } catch (err) {
        failures.push(err);
        this.#log('error', `shutdown: ${name} failed`, { error: err });
      }
    };
    this.#log('info', 'stopping every capture', { reason, exit: exit.reason });
    await step('stopping captures', async () => {
      const runners = [...this.#runners.values()];
      for (const runner of runners) runner.stop(reason);
      await Promise.all(runners.map((runner) => runner.finished));
    });
    await step('finishing uploads', () => this.#finishUploads(o.uploadWaitMs ?? 10_000));
    if (exit.reason === 'closed') {
      await step('waiting for acks', () => this.#waitForAcks(o.ackWaitMs ?? 2000));
    } else {
      await step('removing agent.json', () => deleteIdentity(o.dataDir));
    }
    await step('flushing the journal', () => this.#journal.flush());
    await step('closing the channel', async () => {
      await this.#channel.drain();
      await this.#channel.close();
    });
    await step('closing file reads and live streams', () => {
      this.#fileReader.close();
      this.#streams.close();
      return Promise.resolve();
    });
    await step('closing storage connections', () => {
      this.#blobAgents.http.destroy();
      this.#blobAgents.https.destroy();
      return Promise.resolve();
    });
    await step('unlocking the data dir', () => this.#parts.unlock());
    if (exit.reason === 'unauthorized') this.#log('error', exit.error.message);
    this.#log('info', 'agent stopped', { exit: exit.reason, failures: failures.length });
    this.#emit({ type: 'exit', exit });
    this.#resolveExited(exit);
  }

  /** Gives the uploads up to `ms` to complete; the rest stay Pending for the next start. */
  async #finishUploads(ms: number): Promise<void> {
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
      this.#log('warn', 'uploads not finished; they resume at the next start', {
        sessions: left.map((u) => u.sessionId),
      });
    }
    await Promise.all(left.map((u) => u.close()));
  }

  /** While connected, gives the server up to `ms` to acknowledge every stopped session. */
  async #waitForAcks(ms: number): Promise<void> {
    // Sessions whose upload is still Pending stay in the journal whatever the server says.
    const pending = () =>
      this.#journal.entries().some((e) => e.state === 'Stopped' && e.upload?.state !== 'Pending');
    if (!this.#channel.connected || !pending()) return;
    await new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.#ackWaiters.delete(check);
        resolve();
      };
      const check = () => {
        if (!pending() || !this.#channel.connected) done();
      };
      const timer = setTimeout(done, ms);
      this.#ackWaiters.add(check);
    });
  }
}

/** Room kept in a hello for everything but its sessions. */
const HELLO_ENVELOPE_BYTES = 64 * 1024;

/**
 * The sessions a hello can carry within CHANNEL_MAX_PAYLOAD_BYTES and MAX_HELLO_SESSIONS: every
 * running one (the server would otherwise take a running session it does not hear of as lost),
 * then stopped ones while they fit. The others are held back, to be offered after welcome.
 * Running sessions go without their files and the blobs of their pending upload, which the
 * server reads only from a session's end, so that all of them fit: 10,000 take about 3 MiB.
 */
export function fitHello(all: readonly ObservedSession[]): {
  sessions: ObservedSession[];
  heldBack: string[];
} {
  const running = all.filter((s) => s.state === 'Running').map(withoutBulk);
  const stopped = all.filter((s) => s.state !== 'Running');
  const sessions: ObservedSession[] = [];
  const heldBack: string[] = [];
  let bytes = HELLO_ENVELOPE_BYTES;
  for (const s of [...running, ...stopped]) {
    const size = Buffer.byteLength(JSON.stringify(s)) + 1;
    const fits = sessions.length < MAX_HELLO_SESSIONS && bytes + size <= CHANNEL_MAX_PAYLOAD_BYTES;
    if (fits || s.state === 'Running') {
      sessions.push(s);
      bytes += size;
    } else heldBack.push(s.sessionId);
  }
  return { sessions, heldBack };
}

function withoutBulk(s: ObservedSession): ObservedSession {
  const { files: _files, ...rest } = s;
  return s.upload?.state === 'Pending' ? { ...rest, upload: { ...s.upload, blobs: [] } } : rest;
}

/** Data dirs locked by agents of this process. */
const lockedHere = new Set<string>();

/**
 * One agent per data dir: a second one would mark the first one's captures AgentRestarted and
 * write the same journal. The lock file names its owner by pid and process start time, so a
 * lock left by a crash is taken over even when a new process got the same pid (a container's
 * pid 1 is the agent on every restart).
 */
async function lockDataDir(dataDir: string): Promise<() => Promise<void>> {
  const key = path.resolve(dataDir);
  if (lockedHere.has(key)) throw new Error(`an agent in this process is already using ${dataDir}`);
  const file = path.join(dataDir, 'agent.lock');
  const me = `${process.pid} ${await processStartTime(process.pid)}`;
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      const handle = await open(
        file,
        constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW,
        0o600,
      );
      try {
        await handle.writeFile(`${me}\n`);
      } finally {
        await handle.close();
      }
      lockedHere.add(key);
      let released = false;
      return async () => {
        if (released) return;
        released = true;
        lockedHere.delete(key);
        await rm(file, { force: true });
      };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    const [pid, started] = (await readFile(file, 'utf8').catch(() => '')).trim().split(' ');
    const owner = Number(pid);
    if (
      Number.isInteger(owner) &&
      owner > 0 &&
      `${owner} ${started}` !== me &&
      (await processStartTime(owner)) === started
    ) {
      throw new Error(`another agent (pid ${owner}) is using ${dataDir}`);
    }
    // The owner is gone: the lock is stale.
    await rm(file, { force: true });
  }
  throw new Error(`cannot lock ${dataDir}`);
}

/** A process's start time in clock ticks since boot (/proc/PID/stat field 22); '' if none. */
async function processStartTime(pid: number): Promise<string> {
  try {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command name, which may itself contain spaces and parentheses.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return fields[19] ?? '';
  } catch {
    return '';
  }
}
