/**
 * WebSocket upgrades, held at the door. Node hands an upgrade request to the `upgrade` event
 * with its socket detached from the HTTP parser; whatever accepts it decides how much an
 * unauthenticated peer may make the server hold. This gate:
 *
 * - caps the upgrade requests in flight (not yet accepted or refused), in all and per remote
 *   address, and gives each a deadline; the socket is paused meanwhile, so a peer that sends a
 *   frame early fills only the socket's buffers;
 * - routes each through Fastify like any request (hooks, authentication, the route's checks),
 *   and refuses it with an HTTP answer, never an upgrade, on every route that is not a
 *   WebSocket route (`config: { webSocket: true }`) — /healthz and unknown paths included;
 * - upgrades only when the route's handler calls {@link WebSocketGate.accept}, after its
 *   checks, with the frame limit that route's protocol needs;
 * - tracks each open socket by its owner (an API token, or an agent's VM), caps them per
 *   owner, and closes an owner's sockets at once when the token is revoked or the VM deleted.
 */
import { ServerResponse, STATUS_CODES, type IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { WebSocketServer, type WebSocket } from 'ws';
import { WirewatchError } from '../model/errors.js';
import { addressKey } from './rate-limit.js';

declare module 'fastify' {
  interface FastifyContextConfig {
    /** The route accepts WebSocket upgrades (its handler calls WebSocketGate.accept). */
    webSocket?: boolean;
  }
}

/** Who a WebSocket belongs to: the API token that opened it, or the agent's VM. */
export type SocketOwner =
  | { readonly kind: 'token'; readonly tokenId: string }
  | { readonly kind: 'vm'; readonly vmId: string };

export interface WebSocketGateOptions {
  /** Upgrade requests in flight (being authenticated and checked) from anyone; default 256. */
  readonly maxPending?: number;
  /** Upgrade requests in flight from one remote address; default 64. */
  readonly maxPendingPerAddress?: number;
  /** Time an upgrade request may take to be accepted or refused; default 10 s. */
  readonly pendingTimeoutMs?: number;
  /** Open WebSockets per API token (live streams); default 32. */
  readonly maxPerToken?: number;
  /** Agent channels per VM, counting replaced ones still closing; default 4. */
  readonly maxPerVm?: number;
}

export interface AcceptOptions {
  readonly owner: SocketOwner;
  /** The largest frame and message the peer may send (ws closes with 1009 beyond). */
  readonly maxPayload: number;
}

/** What Node's `upgrade` event gave us, kept on the raw request until accept or refusal. */
interface PendingUpgrade {
  readonly socket: Duplex;
  readonly head: Buffer;
  readonly address: string;
  readonly timer: NodeJS.Timeout;
  settled: boolean;
}

interface OpenSocket {
  readonly owner: string;
  /** Undefined while the handshake is being written. */
  ws: WebSocket | undefined;
  readonly socket: Duplex;
}

const kUpgrade = Symbol('wirewatch.upgrade');

/** How long a socket closed by the server may take to answer the close frame. */
const CLOSE_GRACE_MS = 2000;

type UpgradeRequest = IncomingMessage & { [kUpgrade]?: PendingUpgrade };

export class WebSocketGate {
  readonly #maxPending: number;
  readonly #maxPendingPerAddress: number;
  readonly #pendingTimeoutMs: number;
  readonly #maxPerToken: number;
  readonly #maxPerVm: number;
  #pending = 0;
  readonly #pendingByAddress = new Map<string, number>();
  /** One ws server per frame limit (ws applies maxPayload per server). */
  readonly #servers = new Map<number, WebSocketServer>();
  readonly #byOwner = new Map<string, Set<OpenSocket>>();
  /** Owners closed in this process (revoked tokens, deleted VMs): never admitted again. */
  readonly #closedOwners = new Set<string>();
  #closed = false;

  constructor(options: WebSocketGateOptions = {}) {
    this.#maxPending = options.maxPending ?? 256;
    this.#maxPendingPerAddress = options.maxPendingPerAddress ?? 64;
    this.#pendingTimeoutMs = options.pendingTimeoutMs ?? 10_000;
    this.#maxPerToken = options.maxPerToken ?? 32;
    this.#maxPerVm = options.maxPerVm ?? 4;
  }

  /**
   * Takes over the app's upgrade requests. Call before the authentication hook is added, so
   * upgrades of routes that cannot upgrade are refused before anything is looked up.
   */
  install(app: FastifyInstance): void {
    app.server.on('upgrade', (raw: IncomingMessage, socket: Duplex, head: Buffer) =>
      this.#onUpgrade(app, raw, socket, head),
    );
    app.addHook('onRequest', async (request) => {
      if (!this.isUpgrade(request)) return;
      if (request.routeOptions.config.webSocket !== true) {
        throw new WirewatchError(
          'NotFound',
          `${request.url.split('?')[0] ?? ''} is not a WebSocket endpoint`,
        );
      }
    });
  }

  /** The request asks for a WebSocket (and has not been accepted yet). */
  isUpgrade(request: FastifyRequest): boolean {
    return (request.raw as UpgradeRequest)[kUpgrade] !== undefined;
  }

  /** Open WebSockets of an owner (for tests and metrics). */
  openCount(owner: SocketOwner): number {
    return this.#byOwner.get(ownerKey(owner))?.size ?? 0;
  }

  /**
   * Upgrades the request (the route's checks passed) and calls `onSocket` with the socket.
   * Throws, before anything is written, when the owner was closed in this process or has as
   * many sockets open as it may.
   */
  accept(
    request: FastifyRequest,
    reply: FastifyReply,
    options: AcceptOptions,
    onSocket: (ws: WebSocket) => void,
  ): void {
    const raw = request.raw as UpgradeRequest;
    const pending = raw[kUpgrade];
    if (!pending) throw new Error('accept() needs an upgrade request (check isUpgrade first)');
    if (pending.settled) {
      // The peer left, or took longer than the deadline, while the route checked it.
      reply.hijack();
      pending.socket.destroy();
      return;
    }
    const key = ownerKey(options.owner);
    if (this.#closedOwners.has(key) || this.#closed) {
      throw new WirewatchError(
        'AuthenticationFailed',
        options.owner.kind === 'token'
          ? 'The token is not valid or was revoked'
          : 'The agent credential is not valid (the VM may have been deleted)',
      );
    }
    const limit = options.owner.kind === 'token' ? this.#maxPerToken : this.#maxPerVm;
    const open = this.#byOwner.get(key) ?? new Set<OpenSocket>();
    if (open.size >= limit) {
      throw new WirewatchError(
        'TooManyRequests',
        options.owner.kind === 'token'
          ? `This token has ${open.size} WebSockets open, the most it may; close one first`
          : `This VM's agent has ${open.size} channels open or closing, the most it may; retry later`,
      );
    }
    reply.hijack();
    this.#settle(pending);
    const entry: OpenSocket = { owner: key, ws: undefined, socket: pending.socket };
    open.add(entry);
    this.#byOwner.set(key, open);
    const forget = () => {
      open.delete(entry);
      if (open.size === 0 && this.#byOwner.get(key) === open) this.#byOwner.delete(key);
    };
    // A handshake ws refuses (a bad Sec-WebSocket-Key, say) destroys the socket: forget it then.
    pending.socket.once('close', forget);
    this.#serverFor(options.maxPayload).handleUpgrade(raw, pending.socket, pending.head, (ws) => {
      entry.ws = ws;
      ws.once('close', forget);
      onSocket(ws);
    });
  }

  /**
   * Closes every socket of the owner at once (1008 with the reason) and admits none of its
   * later upgrades in this process: for a revoked token or a deleted VM.
   */
  closeOwner(owner: SocketOwner, reason: string): number {
    const key = ownerKey(owner);
    this.#closedOwners.add(key);
    const open = this.#byOwner.get(key);
    if (!open) return 0;
    for (const entry of open) closeSocket(entry, 1008, reason);
    return open.size;
  }

  /** Closes every socket; later upgrades are refused. Safe to call twice. */
  close(): void {
    this.#closed = true;
    for (const open of this.#byOwner.values()) {
      for (const entry of open) closeSocket(entry, 1001, 'server shutting down');
    }
    for (const server of this.#servers.values()) server.close();
    this.#servers.clear();
  }

  #onUpgrade(app: FastifyInstance, raw: UpgradeRequest, socket: Duplex, head: Buffer): void {
    // Node removes its own error listener before the upgrade event; a reset must not crash us.
    socket.on('error', () => socket.destroy());
    const address = addressKey((socket as Socket).remoteAddress ?? 'unknown');
    const fromAddress = this.#pendingByAddress.get(address) ?? 0;
    if (this.#closed) {
      refuseRaw(socket, new WirewatchError('NotFound', 'The server is shutting down'));
      return;
    }
    if (this.#pending >= this.#maxPending || fromAddress >= this.#maxPendingPerAddress) {
      refuseRaw(
        socket,
        new WirewatchError(
          'TooManyRequests',
          'Too many WebSocket upgrade requests are in flight; retry later',
        ),
        { 'Retry-After': '1' },
      );
      return;
    }
    this.#pending++;
    this.#pendingByAddress.set(address, fromAddress + 1);
    const timer = setTimeout(() => socket.destroy(), this.#pendingTimeoutMs);
    timer.unref();
    const pending: PendingUpgrade = { socket, head, address, timer, settled: false };
    raw[kUpgrade] = pending;
    socket.once('close', () => this.#settle(pending));

    // Fastify answers refusals on a response bound to this socket; after the answer, the
    // socket goes (no keep-alive on a refused upgrade).
    const response = new ServerResponse(raw);
    response.shouldKeepAlive = false;
    response.assignSocket(socket as Socket);
    response.once('finish', () => socket.destroy());
    try {
      app.routing(raw, response);
    } catch (err) {
      app.log.warn({ err }, 'WebSocket upgrade could not be routed');
      socket.destroy();
    }
  }

  /** The request leaves the in-flight count (accepted, refused or gone), once. */
  #settle(pending: PendingUpgrade): void {
    if (pending.settled) return;
    pending.settled = true;
    clearTimeout(pending.timer);
    this.#pending--;
    const left = (this.#pendingByAddress.get(pending.address) ?? 1) - 1;
    if (left <= 0) this.#pendingByAddress.delete(pending.address);
    else this.#pendingByAddress.set(pending.address, left);
  }

  #serverFor(maxPayload: number): WebSocketServer {
    let server = this.#servers.get(maxPayload);
    if (!server) {
      server = new WebSocketServer({ noServer: true, clientTracking: false, maxPayload });
      this.#servers.set(maxPayload, server);
    }
    return server;
  }
}

function ownerKey(owner: SocketOwner): string {
  return owner.kind === 'token' ? `token:${owner.tokenId}` : `vm:${owner.vmId}`;
}

function closeSocket(entry: OpenSocket, code: number, reason: string): void {
  if (entry.ws === undefined) {
    entry.socket.destroy();
    return;
  }
  const ws = entry.ws;
  if (ws.readyState === ws.OPEN || ws.readyState === ws.CONNECTING) ws.close(code, reason);
  // A peer that does not answer the close frame is not given ws's 30 s: what its socket
  // carried (a stream's packets) must stop now.
  const timer = setTimeout(() => ws.terminate(), CLOSE_GRACE_MS);
  timer.unref();
  ws.once('close', () => clearTimeout(timer));
}

/** An HTTP answer written straight to a socket Fastify never saw, then the socket goes. */
function refuseRaw(
  socket: Duplex,
  error: WirewatchError,
  headers: Record<string, string> = {},
): void {
  const body = JSON.stringify(error.toBody());
  const lines = [
    `HTTP/1.1 ${error.status} ${STATUS_CODES[error.status] ?? ''}`,
    'Content-Type: application/json; charset=utf-8',
    `Content-Length: ${Buffer.byteLength(body)}`,
    `x-ms-error-code: ${error.code}`,
    'Connection: close',
    ...Object.entries(headers).map(([name, value]) => `${name}: ${value}`),
  ];
  socket.end(`${lines.join('\r\n')}\r\n\r\n${body}`, () => socket.destroy());
}
