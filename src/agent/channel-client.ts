/**
 * The agent's end of the channel (src/model/channel.ts): one WebSocket dialled out to the
 * server, re-dialled forever with backoff. Nothing is queued while the socket is down: the
 * agent's state lives in its journal and goes out whole in the `hello` of the next connection.
 */
import type { Agent } from 'node:http';
import WebSocket, { type RawData } from 'ws';
import {
  CHANNEL_MAX_PAYLOAD_BYTES,
  CHANNEL_PATH,
  parseServerMessage,
  type AgentMessage,
  type ServerMessage,
} from '../model/channel.js';
import type { AgentLog } from './agent-log.js';
import { backoffDelay } from './backoff.js';

export interface ChannelClientOptions {
  /** The server's base URL (http or https); the channel is its CHANNEL_PATH over ws or wss. */
  readonly serverUrl: string;
  readonly credential: string;
  /** CA certificate(s) to trust for wss. */
  readonly ca?: Buffer;
  /** Makes the connection (the agent's own-port pool, src/agent/own-ports.ts). */
  readonly agent?: Agent;
  readonly log: AgentLog;
  readonly backoffMinMs: number;
  readonly backoffMaxMs: number;
  /**
   * Silence after which the connection is taken for dead and dialled again. The server pings
   * every 15 s, so the default 45 s is three missed pings.
   */
  readonly deadAfterMs?: number;
  /** Called on every (re)connect, before any server message: the place to send `hello`. */
  readonly onOpen: () => void;
  readonly onMessage: (message: ServerMessage) => void;
  readonly onClose?: () => void;
  /**
   * The server answered the upgrade with 401: the credential is revoked or the VM deleted.
   * The client has stopped; it will not dial again.
   */
  readonly onUnauthorized: () => void;
}

export interface ChannelClient {
  readonly connected: boolean;
  /** The server's address and port of the current connection, once upgraded. */
  readonly remote: { readonly address: string; readonly port: number } | undefined;
  /** Sends a message if the socket is open; false when it is not (the message is dropped). */
  send(message: AgentMessage): boolean;
  /**
   * Sends one binary frame (file data, see `readFileEnd`); resolves true once it has been
   * handed to the operating system, false when the socket is not open or fails. A sender that
   * waits for each frame before the next keeps the socket's buffer to one frame.
   */
  sendBinary(frame: Buffer): Promise<boolean>;
  /** Resolves once everything sent so far has been handed to the operating system. */
  drain(): Promise<void>;
  /** Closes the socket and stops re-dialling; safe to call twice. */
  close(): Promise<void>;
}

const DEFAULT_DEAD_AFTER_MS = 45_000;
const HANDSHAKE_TIMEOUT_MS = 15_000;
/** The channel's limit on one message (a `start` with 256 filters is ~1 MiB at most). */
const MAX_PAYLOAD = CHANNEL_MAX_PAYLOAD_BYTES;

export function createChannelClient(options: ChannelClientOptions): ChannelClient {
  return new Channel(options);
}

class Channel implements ChannelClient {
  readonly #options: ChannelClientOptions;
  readonly #url: string;
  #socket: WebSocket | undefined;
  #open = false;
  #stopped = false;
  #attempt = 0;
  #retryTimer: NodeJS.Timeout | undefined;
  #deadTimer: NodeJS.Timeout | undefined;
  #closing: Promise<void> | undefined;
  #remote: { readonly address: string; readonly port: number } | undefined;

  constructor(options: ChannelClientOptions) {
    this.#options = options;
    const url = new URL(options.serverUrl);
    url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
    this.#url = url.href.replace(/\/+$/, '') + CHANNEL_PATH;
    this.#dial();
  }

  get connected(): boolean {
    return this.#open;
  }

  get remote(): { readonly address: string; readonly port: number } | undefined {
    return this.#remote;
  }

  send(message: AgentMessage): boolean {
    const socket = this.#socket;
    if (!this.#open || socket === undefined || socket.readyState !== WebSocket.OPEN) return false;
    socket.send(JSON.stringify(message));
    return true;
  }

  sendBinary(frame: Buffer): Promise<boolean> {
    const socket = this.#socket;
    if (!this.#open || socket === undefined || socket.readyState !== WebSocket.OPEN) {
      return Promise.resolve(false);
    }
    return new Promise((resolve) => {
      socket.send(frame, { binary: true }, (err) => resolve(err === undefined || err === null));
    });
  }

  drain(): Promise<void> {
    const socket = this.#socket;
    if (!this.#open || socket === undefined) return Promise.resolve();
    // An empty callback-carrying ping is queued behind every frame sent before it.
    return new Promise((resolve) => socket.ping(undefined, undefined, () => resolve()));
  }

  close(): Promise<void> {
    this.#closing ??= this.#close();
    return this.#closing;
  }

  async #close(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#retryTimer);
    clearTimeout(this.#deadTimer);
    const socket = this.#socket;
    if (socket === undefined || socket.readyState === WebSocket.CLOSED) return;
    await new Promise<void>((resolve) => {
      socket.once('close', () => resolve());
      if (socket.readyState === WebSocket.OPEN) {
        socket.close(1000, 'agent stopping');
        // A server that never answers the close frame must not hold the agent up.
        setTimeout(() => socket.terminate(), 2000).unref();
      } else {
        socket.terminate();
      }
    });
  }

  #dial(): void {
    if (this.#stopped) return;
    const o = this.#options;
    let status: number | undefined;
    const socket = new WebSocket(this.#url, {
      headers: { authorization: `Bearer ${o.credential}` },
      handshakeTimeout: HANDSHAKE_TIMEOUT_MS,
      perMessageDeflate: false,
      maxPayload: MAX_PAYLOAD,
      followRedirects: false,
      ...(o.ca === undefined ? {} : { ca: o.ca }),
      ...(o.agent === undefined ? {} : { agent: o.agent }),
    });
    this.#socket = socket;

    socket.on('upgrade', (response) => {
      const { remoteAddress, remotePort } = response.socket;
      if (remoteAddress !== undefined && remotePort !== undefined) {
        this.#remote = { address: remoteAddress, port: remotePort };
      }
    });
    socket.on('unexpected-response', (_request, response) => {
      status = response.statusCode;
      response.resume();
      socket.terminate();
    });
    socket.on('open', () => {
      this.#open = true;
      o.log('info', 'connected to the server', { url: this.#url });
      this.#armDeadTimer(socket);
      try {
        o.onOpen();
      } catch (err) {
        o.log('error', 'sending hello failed', { error: err });
        socket.terminate();
      }
    });
    socket.on('message', (data: RawData, isBinary: boolean) => {
      this.#armDeadTimer(socket);
      // A healthy server talks to us: the next outage starts again with a short wait.
      this.#attempt = 0;
      const text = isBinary ? undefined : rawText(data);
      const message = text === undefined ? undefined : parseServerMessage(text);
      if (message === undefined) {
        o.log('warn', 'ignored an invalid message from the server', {
          sample: (text ?? '<binary>').slice(0, 200),
        });
        return;
      }
      try {
        o.onMessage(message);
      } catch (err) {
        o.log('error', 'handling a server message failed', { type: message.type, error: err });
      }
    });
    socket.on('ping', () => this.#armDeadTimer(socket));
    socket.on('pong', () => this.#armDeadTimer(socket));
    socket.on('error', (err) => {
      if (status === undefined && !this.#stopped) {
        o.log('warn', 'channel error', { error: err.message });
      }
    });
    socket.on('close', (code: number) => {
      const wasOpen = this.#open;
      if (this.#socket === socket) {
        this.#open = false;
        this.#socket = undefined;
      }
      clearTimeout(this.#deadTimer);
      if (wasOpen) {
        o.log(this.#stopped ? 'info' : 'warn', 'disconnected from the server', { code });
        o.onClose?.();
      }
      if (this.#stopped) return;
      if (status === 401) {
        this.#stopped = true;
        o.log('error', 'the server refused the agent credential (HTTP 401)', { url: this.#url });
        o.onUnauthorized();
        return;
      }
      if (status !== undefined) {
        o.log('warn', 'the server refused the channel', { status });
      }
      const delay = backoffDelay(this.#attempt++, o.backoffMinMs, o.backoffMaxMs);
      o.log('debug', 'reconnecting', { inMs: delay });
      this.#retryTimer = setTimeout(() => this.#dial(), delay);
    });
  }

  /** Any frame from the server proves the connection alive; silence for too long ends it. */
  #armDeadTimer(socket: WebSocket): void {
    clearTimeout(this.#deadTimer);
    const ms = this.#options.deadAfterMs ?? DEFAULT_DEAD_AFTER_MS;
    this.#deadTimer = setTimeout(() => {
      this.#options.log('warn', 'no word from the server; reconnecting', { silentForMs: ms });
      socket.terminate();
    }, ms);
  }
}

function rawText(data: RawData): string {
  if (Array.isArray(data)) return Buffer.concat(data).toString('utf8');
  if (data instanceof ArrayBuffer) return Buffer.from(data).toString('utf8');
  return data.toString('utf8');
}
