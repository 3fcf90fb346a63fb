/**
 * The wirewatch agent: enrolls once, keeps one channel to the server, runs the captures the
 * server assigns, and keeps a journal so that no final state is lost across crashes, restarts
 * and lost connections (the flow is described in src/model/channel.ts and docs/agent.md).
 */
import path from 'node:path';
import type { OwnTraffic } from '../capture/own-traffic.js';
import {
  CHANNEL_PROTOCOL_VERSION,
  type AgentMessage,
  type CaptureAssignment,
  type ObservedSession,
  type ServerMessage,
} from '../model/channel.js';
import type { StopRequestReason } from '../model/stop-reason.js';
import type { AgentLog } from './agent-log.js';
import type { Agent, AgentEvent, AgentExit, AgentOptions } from './agent-options.js';
import { prepareAgent, type AgentParts } from './agent-start.js';
import { AgentUploads } from './agent-uploads.js';
import { createChannelClient, type ChannelClient } from './channel-client.js';
import { deleteIdentity } from './enroll.js';
import { FileReader, sessionFiles } from './file-reader.js';
import { fitHello } from './hello.js';
import { observedSession, uploadReport, type Journal } from './journal.js';
import { endpointOf, resolveOwnTraffic, type Endpoint } from './own-traffic.js';
import { StreamRequests } from './stream-requests.js';
import { runSession, stoppedMessage, type SessionRunner } from './session-runner.js';

export type { Agent, AgentEvent, AgentExit, AgentOptions } from './agent-options.js';

/** Reported in `hello`; the same version the CLI prints. */
export const AGENT_VERSION = '0.1.0';

/** The longest gap between two progress reports of a running capture. */
const MAX_PROGRESS_INTERVAL_MS = 5000;

/**
 * Starts an agent: enrolls if needed, recovers what a previous process left running, and
 * connects. Rejects when enrollment is refused or the data dir is unusable.
 */
export async function createAgent(options: AgentOptions): Promise<Agent> {
  const parts = await prepareAgent(options);
  try {
    return new AgentImpl(parts);
  } catch (err) {
    await parts.unlock();
    throw err;
  }
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
  readonly #uploads: AgentUploads;
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

  constructor(parts: AgentParts) {
    this.#parts = parts;
    this.#log = parts.log;
    this.#journal = parts.journal;
    this.agentId = parts.agentId;
    this.vmId = parts.vmId;
    this.captureRoot = parts.captureRoot;
    this.exited = new Promise((resolve) => (this.#resolveExited = resolve));
    const o = parts.options;
    this.#uploads = new AgentUploads({
      ownPorts: parts.ownPorts,
      spoolDir: path.join(o.dataDir, 'spool'),
      journal: this.#journal,
      report: (message) => this.#send(message),
      log: this.#log,
      ...(o.uploadBackoffMinMs === undefined ? {} : { backoffMinMs: o.uploadBackoffMinMs }),
      ...(o.uploadBackoffMaxMs === undefined ? {} : { backoffMaxMs: o.uploadBackoffMaxMs }),
      ...(o.now === undefined ? {} : { now: o.now }),
    });
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
      this.#uploads.resume(entry);
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
        if (!this.#uploads.grant(message))
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
    const upload = assignment.blob === undefined ? undefined : this.#uploads.start(assignment);
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
    await step('finishing uploads', () => this.#uploads.finish(o.uploadWaitMs ?? 10_000));
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
      this.#uploads.closeConnections();
      return Promise.resolve();
    });
    await step('unlocking the data dir', () => this.#parts.unlock());
    if (exit.reason === 'unauthorized') this.#log('error', exit.error.message);
    this.#log('info', 'agent stopped', { exit: exit.reason, failures: failures.length });
    this.#emit({ type: 'exit', exit });
    this.#resolveExited(exit);
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
