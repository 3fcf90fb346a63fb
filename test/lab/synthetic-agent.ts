/**
 * A SYNTHETIC agent for tests of the control plane and for bench/control-plane: it enrolls and
 * speaks the real channel protocol (src/model/channel.ts) over a real WebSocket, but its
 * "capture engine" is made up — it captures nothing, it counts invented packets. The real agent
 * (src/agent) is tested on the lab with tcpdump.
 */
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { BlockBlobClient } from '@azure/storage-blob';
import WebSocket from 'ws';
import {
  CHANNEL_PATH,
  CHANNEL_PROTOCOL_VERSION,
  ENROLL_PATH,
  parseServerMessage,
  type AgentMessage,
  type CaptureAssignment,
  type EnrollResponse,
  type ObservedSession,
  type ServerMessage,
} from '../../src/model/channel.js';
import type { SessionStopReason } from '../../src/model/stop-reason.js';
import { parseFileHeader } from '../../src/pcap/format.js';
import { countWholeRecords, PcapRecordWalker } from '../../src/pcap/record-walker.js';

/** Bytes of a file read per binary frame, as the real agent sends them. */
const FRAME_DATA = 256 * 1024;

export interface SyntheticAgentOptions {
  readonly serverUrl: string;
  readonly ca?: Buffer;
  readonly enrollToken: string;
  readonly subscriptionId: string;
  readonly resourceGroup: string;
  /** The VM's name; an instance's hostname only (its name is `{scaleSet}_{instanceId}`). */
  readonly name: string;
  /** Enroll as an instance of this scale set (`wirewatch agent --scale-set`). */
  readonly scaleSet?: string;
  /** The instance id asked for with scaleSet; without, the server assigns the next free one. */
  readonly instanceId?: string;
  readonly location: string;
  readonly captureRoot?: string;
  /** Progress messages this often while a session runs; default 1000 ms. */
  readonly progressIntervalMs?: number;
  /** Invented packets per progress tick; default 10. */
  readonly packetsPerTick?: number;
  /** Fail every start with this error (CaptureFailed, say). */
  readonly failStarts?: { code: string; message: string };
  /** Don't answer start messages (a hung agent). */
  readonly ignoreStarts?: boolean;
  /** Don't act on stop messages: the session runs on (a hung agent). */
  readonly ignoreStops?: boolean;
  /**
   * The bytes of a pcap file every capture "writes": reads of its file are served from them
   * (also after the session is acknowledged), a live stream sends them (header, then records)
   * once, and a capture with a blob target uploads them through its SAS at the end.
   */
  readonly captureFile?: Buffer;
}

interface SyntheticSession {
  readonly assignment: CaptureAssignment;
  state: 'Running' | 'Stopped';
  startTime: string;
  packets: number;
  stopReason?: SessionStopReason;
  stopTime?: string;
  timer?: NodeJS.Timeout;
  deadline?: NodeJS.Timeout;
  /** The start failed: no file to report. */
  wroteNothing?: boolean;
}

export class SyntheticAgent {
  readonly options: SyntheticAgentOptions;
  credential: string | undefined;
  agentId: string | undefined;
  readonly received: ServerMessage[] = [];
  readonly sessions = new Map<string, SyntheticSession>();
  /** Settles with the close code and reason when the current connection closes. */
  closed: Promise<{ code: number; reason: string }> = new Promise(() => undefined);
  #socket: WebSocket | undefined;
  /** With `captureFile`: each session's file path, kept after its ack for reads. */
  readonly #files = new Map<string, string>();
  /** Live streams open on `captureFile`, by stream id: their session. */
  readonly #streams = new Map<string, string>();
  #welcomed: (() => void) | undefined;
  #listeners = new Set<(m: ServerMessage) => void>();

  constructor(options: SyntheticAgentOptions) {
    this.options = options;
  }

  async enroll(): Promise<EnrollResponse> {
    const body = JSON.stringify({
      subscriptionId: this.options.subscriptionId,
      resourceGroup: this.options.resourceGroup,
      ...(this.options.scaleSet === undefined
        ? { name: this.options.name }
        : {
            scaleSet: this.options.scaleSet,
            ...(this.options.instanceId === undefined
              ? {}
              : { instanceId: this.options.instanceId }),
          }),
      location: this.options.location,
      hostname: `synthetic-${this.options.name}`,
      captureRoot: this.options.captureRoot ?? '/var/captures',
    });
    const { status, text } = await postJson(
      new URL(ENROLL_PATH, this.options.serverUrl),
      body,
      this.options.enrollToken,
      this.options.ca,
    );
    if (status !== 201) throw new Error(`enroll answered ${status}: ${text}`);
    const response = JSON.parse(text) as EnrollResponse;
    this.credential = response.credential;
    this.agentId = response.agentId;
    return response;
  }

  /**
   * Opens the channel, sends hello, resolves on welcome. `sessions` replaces what the hello
   * reports (a lying agent's report); by default it is what this agent runs and has finished.
   */
  async connect(options: { readonly sessions?: ObservedSession[] } = {}): Promise<void> {
    if (!this.credential) await this.enroll();
    const url = new URL(CHANNEL_PATH, this.options.serverUrl);
    url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
    const socket = new WebSocket(url, {
      headers: { authorization: `Bearer ${this.credential}` },
      ...(this.options.ca ? { ca: this.options.ca } : {}),
    });
    this.#socket = socket;
    const welcomed = new Promise<void>((resolve) => (this.#welcomed = resolve));
    await new Promise<void>((resolve, reject) => {
      socket.once('open', () => resolve());
      socket.once('error', reject);
      socket.once('unexpected-response', (_req, res) =>
        reject(new Error(`channel upgrade answered ${res.statusCode}`)),
      );
    });
    socket.on('message', (data: Buffer) => this.#onMessage(data.toString('utf8')));
    this.closed = new Promise((resolve) =>
      socket.once('close', (code: number, reason: Buffer) =>
        resolve({ code, reason: reason.toString('utf8') }),
      ),
    );
    this.#send({
      type: 'hello',
      protocolVersion: CHANNEL_PROTOCOL_VERSION,
      agentVersion: 'synthetic',
      hostname: `synthetic-${this.options.name}`,
      captureRoot: this.options.captureRoot ?? '/var/captures',
      sessions:
        options.sessions ?? [...this.sessions.entries()].map(([id, s]) => this.#observed(id, s)),
    });
    await welcomed;
  }

  /** Drops the connection (as a crash or network cut would); sessions keep "running". */
  disconnect(): Promise<void> {
    const socket = this.#socket;
    this.#socket = undefined;
    if (!socket || socket.readyState === WebSocket.CLOSED) return Promise.resolve();
    return new Promise((resolve) => {
      socket.once('close', () => resolve());
      socket.terminate();
    });
  }

  /** Resolves with the next server message that satisfies the predicate. */
  next(predicate: (m: ServerMessage) => boolean, timeoutMs = 10_000): Promise<ServerMessage> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#listeners.delete(listener);
        reject(new Error('no such message from the server in time'));
      }, timeoutMs);
      const listener = (m: ServerMessage) => {
        if (!predicate(m)) return;
        clearTimeout(timer);
        this.#listeners.delete(listener);
        resolve(m);
      };
      this.#listeners.add(listener);
    });
  }

  /** Ends a session as if a limit was hit (TimeExceeded, SessionBytesExceeded, Error …). */
  finish(sessionId: string, reason: SessionStopReason, error?: { code: string; message: string }) {
    const s = this.sessions.get(sessionId);
    if (!s || s.state === 'Stopped') return;
    clearInterval(s.timer);
    clearTimeout(s.deadline);
    s.state = 'Stopped';
    s.stopReason = reason;
    s.stopTime = new Date().toISOString();
    for (const [streamId, id] of this.#streams) {
      if (id !== sessionId) continue;
      this.#streams.delete(streamId);
      this.#send({ type: 'streamEnd', streamId, packets: this.#filePackets(), dropped: 0 });
    }
    this.#send({
      type: 'stopped',
      sessionId,
      stopReason: reason,
      startTime: s.startTime,
      stopTime: s.stopTime,
      progress: this.#progress(s),
      ...(error ? { error } : {}),
      files: s.wroteNothing ? [] : [s.assignment.filePath],
    });
    if (!s.wroteNothing) void this.#upload(sessionId, s.assignment);
  }

  async close(): Promise<void> {
    for (const s of this.sessions.values()) {
      clearInterval(s.timer);
      clearTimeout(s.deadline);
    }
    await this.disconnect();
  }

  #onMessage(text: string): void {
    const message = parseServerMessage(text);
    if (!message) throw new Error(`the server sent an invalid message: ${text.slice(0, 200)}`);
    this.received.push(message);
    switch (message.type) {
      case 'welcome':
        this.#welcomed?.();
        break;
      case 'start':
        this.#start(message.assignment);
        break;
      case 'stop':
        if (!this.options.ignoreStops) this.finish(message.sessionId, message.reason);
        break;
      case 'ack':
        if (this.sessions.get(message.sessionId)?.state === 'Stopped') {
          this.sessions.delete(message.sessionId);
        }
        break;
      case 'deregistered':
        for (const id of this.sessions.keys()) this.finish(id, 'TargetDeleted');
        break;
      // A synthetic capture has no file unless it was given one: reads and streams end at once,
      // with that said.
      case 'readFile':
        if (this.#serveRead(message)) break;
        this.#send({
          type: 'readFileEnd',
          requestId: message.requestId,
          error: { code: 'CaptureFileGone', message: 'a synthetic agent writes no files' },
        });
        break;
      case 'streamStart':
        if (this.#serveStream(message.streamId, message.sessionId)) break;
        this.#send({
          type: 'streamEnd',
          streamId: message.streamId,
          packets: 0,
          dropped: 0,
          error: { code: 'CaptureNotRunning', message: 'a synthetic agent writes no files' },
        });
        break;
      // Grants arrive only when a test asks for them (it reads `received`); nothing to cancel.
      case 'streamStop':
        this.#streams.delete(message.streamId);
        break;
      case 'blobGrant':
      case 'readFileCancel':
        break;
    }
    for (const listener of [...this.#listeners]) listener(message);
  }

  #start(assignment: CaptureAssignment): void {
    if (this.options.ignoreStarts || this.sessions.has(assignment.sessionId)) return;
    const s: SyntheticSession = {
      assignment,
      state: 'Running',
      startTime: new Date().toISOString(),
      packets: 0,
    };
    this.sessions.set(assignment.sessionId, s);
    if (this.options.captureFile) this.#files.set(assignment.sessionId, assignment.filePath);
    if (this.options.failStarts) {
      // As the real agent: a capture that never started wrote no file.
      s.wroteNothing = true;
      this.finish(assignment.sessionId, 'Error', this.options.failStarts);
      return;
    }
    this.#send({ type: 'started', sessionId: assignment.sessionId, startTime: s.startTime });
    s.timer = setInterval(() => {
      s.packets += this.options.packetsPerTick ?? 10;
      this.#send({
        type: 'progress',
        sessionId: assignment.sessionId,
        progress: this.#progress(s),
      });
    }, this.options.progressIntervalMs ?? 1000);
    s.timer.unref();
    const limitS = assignment.continuousCapture
      ? (assignment.captureSettings?.sessionTimeLimitInSeconds ?? 86400)
      : assignment.timeLimitInSeconds;
    s.deadline = setTimeout(() => this.finish(assignment.sessionId, 'TimeExceeded'), limitS * 1000);
    s.deadline.unref();
  }

  #progress(s: SyntheticSession) {
    return {
      packets: s.packets,
      bytes: 24 + s.packets * 116,
      kernelDrops: 0,
      at: new Date().toISOString(),
    };
  }

  #observed(id: string, s: SyntheticSession): ObservedSession {
    return {
      sessionId: id,
      state: s.state,
      startTime: s.startTime,
      progress: this.#progress(s),
      ...(s.stopReason ? { stopReason: s.stopReason } : {}),
      ...(s.stopTime ? { stopTime: s.stopTime } : {}),
      files: s.wroteNothing ? [] : [s.assignment.filePath],
    };
  }

  /** Answers a read of a session's `captureFile`; false when there is none to serve. */
  #serveRead(m: Extract<ServerMessage, { type: 'readFile' }>): boolean {
    const file = this.options.captureFile;
    if (!file || this.#files.get(m.sessionId) !== m.path) return false;
    const end = m.length === undefined ? file.length : Math.min(file.length, m.offset + m.length);
    for (let at = m.offset; at < end; at += FRAME_DATA) {
      this.#sendBinary(m.requestId, file.subarray(at, Math.min(end, at + FRAME_DATA)));
    }
    this.#send({ type: 'readFileEnd', requestId: m.requestId, size: file.length });
    return true;
  }

  /** Streams `captureFile` to a viewer: its header, its records, then stats until it stops. */
  #serveStream(streamId: string, sessionId: string): boolean {
    const file = this.options.captureFile;
    if (!file || this.sessions.get(sessionId)?.state !== 'Running') return false;
    this.#streams.set(streamId, sessionId);
    this.#sendBinary(streamId, file.subarray(0, 24));
    // Whole records, at most FRAME_DATA of them per frame.
    const walker = new PcapRecordWalker(file, parseFileHeader(file).byteOrder, { start: 24 });
    let from = 24;
    while (walker.next()) {
      if (walker.offset - from > FRAME_DATA) {
        this.#sendBinary(streamId, file.subarray(from, walker.start));
        from = walker.start;
      }
    }
    if (walker.offset > from) this.#sendBinary(streamId, file.subarray(from, walker.offset));
    this.#send({
      type: 'streamStats',
      streamId,
      packets: this.#filePackets(),
      dropped: 0,
      lagMs: 0,
    });
    return true;
  }

  #filePackets(): number {
    const file = this.options.captureFile;
    return file ? countWholeRecords(file.subarray(24), parseFileHeader(file).byteOrder) : 0;
  }

  /** Uploads `captureFile` to a capture's blob through its SAS and reports it. */
  async #upload(sessionId: string, assignment: CaptureAssignment): Promise<void> {
    const file = this.options.captureFile;
    const blob = assignment.blob;
    if (!file || blob?.sas === undefined) return;
    await new BlockBlobClient(`${blob.url}?${blob.sas}`).uploadData(file);
    this.#send({
      type: 'uploaded',
      sessionId,
      upload: { state: 'Completed', blobs: [{ url: blob.url, size: file.length }] },
    });
  }

  #sendBinary(id: string, data: Buffer): void {
    if (this.#socket?.readyState === WebSocket.OPEN) {
      this.#socket.send(Buffer.concat([Buffer.from(id, 'latin1'), data]), { binary: true });
    }
  }

  /** Sends any message, as a (possibly misbehaving) agent would. */
  send(message: AgentMessage): void {
    this.#send(message);
  }

  /**
   * Sends any frame at all — not JSON, breaking the schema, oversized, binary — as a malicious
   * agent would. Resolves once it is written out (false when the channel is down).
   */
  sendRaw(data: string | Buffer): Promise<boolean> {
    const socket = this.#socket;
    if (socket?.readyState !== WebSocket.OPEN) return Promise.resolve(false);
    return new Promise((resolve) =>
      socket.send(data, { binary: typeof data !== 'string' }, (err) => resolve(!err)),
    );
  }

  /** Bytes the channel has accepted but not yet written to the network. */
  get bufferedAmount(): number {
    return this.#socket?.bufferedAmount ?? 0;
  }

  #send(message: AgentMessage): void {
    if (this.#socket?.readyState === WebSocket.OPEN) this.#socket.send(JSON.stringify(message));
  }
}

function postJson(
  url: URL,
  body: string,
  token: string,
  ca: Buffer | undefined,
): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const request = (url.protocol === 'https:' ? httpsRequest : httpRequest)(
      url,
      {
        method: 'POST',
        headers: {
          authorization: `Bearer ${token}`,
          'content-type': 'application/json',
          'content-length': Buffer.byteLength(body),
        },
        ...(ca ? { ca } : {}),
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () =>
          resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }),
        );
        res.on('error', reject);
      },
    );
    request.on('error', reject);
    request.end(body);
  });
}
