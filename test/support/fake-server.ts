/**
 * A small stand-in for the wirewatch server, for protocol-level tests of the real agent: it
 * speaks ENROLL_PATH and CHANNEL_PATH exactly as src/model/channel.ts says, on 127.0.0.1,
 * records everything it receives, and sends what a test tells it to. The real server is
 * tested elsewhere.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import { Compile } from 'typebox/compile';
import { WebSocketServer, type WebSocket } from 'ws';
import {
  CHANNEL_PATH,
  ENROLL_PATH,
  EnrollRequestSchema,
  parseAgentMessage,
  type AgentMessage,
  type EnrollRequest,
  type ServerMessage,
} from '../../src/model/channel.js';

const enrollCheck = Compile(EnrollRequestSchema);

export interface Received {
  /** Which channel connection (0, 1, …) it came on. */
  readonly connection: number;
  /** Position in the one log of everything sent and received. */
  readonly seq: number;
  readonly at: number;
  readonly message: AgentMessage;
}

export interface Sent {
  readonly connection: number;
  readonly seq: number;
  readonly at: number;
  readonly message: ServerMessage;
}

export interface FakeServerOptions {
  readonly enrollToken?: string;
  /** Ping every so often, as the real server does (default 15 s). */
  readonly pingIntervalMs?: number;
  /** Answer every hello with welcome (default true). */
  readonly welcome?: boolean;
  /** Acknowledge every `stopped` at once, and every Stopped session in a hello (default false). */
  readonly autoAck?: boolean;
  /** Serve HTTPS (and so wss) with this key and certificate. */
  readonly tls?: { readonly key: Buffer; readonly cert: Buffer };
}

export interface FakeServer {
  readonly url: string;
  readonly port: number;
  readonly enrollToken: string;
  readonly enrollments: EnrollRequest[];
  /** Credentials handed out; a connection with any other gets 401. */
  readonly credentials: Set<string>;
  readonly received: Received[];
  readonly sent: Sent[];
  /** Frames that were not valid agent messages. */
  readonly invalid: string[];
  autoAck: boolean;
  /** Silences pings to the open connections (to look dead). */
  silent: boolean;
  readonly connectionCount: number;
  readonly isConnected: boolean;
  /** Sends to the newest open connection; throws if there is none. */
  send(message: ServerMessage): Sent;
  /** Sends raw text (for invalid-message tests). */
  sendRaw(text: string): void;
  /** Waits for a message matching `match` (already received or still to come). */
  waitFor<T extends AgentMessage['type']>(
    type: T,
    match?: (message: Extract<AgentMessage, { type: T }>, received: Received) => boolean,
    timeoutMs?: number,
  ): Promise<Extract<AgentMessage, { type: T }> & { readonly received: Received }>;
  /** Drops every open connection without a close handshake (a crash of the server). */
  dropConnections(): void;
  /** Stops listening and drops every connection: the server went away. */
  stop(): Promise<void>;
  /** Listens again on the same port. */
  restart(): Promise<void>;
  close(): Promise<void>;
}

export async function startFakeServer(
  options: FakeServerOptions = {},
  port = 0,
): Promise<FakeServer> {
  const enrollToken = options.enrollToken ?? `enroll-${randomBytes(8).toString('hex')}`;
  const credentials = new Set<string>();
  const enrollments: EnrollRequest[] = [];
  const received: Received[] = [];
  const sent: Sent[] = [];
  const invalid: string[] = [];
  const sockets = new Set<WebSocket>();
  const rawSockets = new Set<Socket>();
  let current: { socket: WebSocket; index: number } | undefined;
  let connections = 0;
  let seq = 0;
  let waiters: (() => void)[] = [];
  const wss = new WebSocketServer({ noServer: true });
  let http: Server;
  const state = { autoAck: options.autoAck ?? false, silent: false };

  const notify = () => {
    const list = waiters;
    waiters = [];
    for (const w of list) w();
  };

  const sendOn = (socket: WebSocket, index: number, message: ServerMessage): Sent => {
    const entry: Sent = { connection: index, seq: seq++, at: Date.now(), message };
    sent.push(entry);
    socket.send(JSON.stringify(message));
    return entry;
  };

  const onConnection = (socket: WebSocket, index: number) => {
    sockets.add(socket);
    current = { socket, index };
    const pinger = setInterval(() => {
      if (!state.silent) socket.ping();
    }, options.pingIntervalMs ?? 15_000);
    socket.on('close', () => {
      clearInterval(pinger);
      sockets.delete(socket);
      if (current?.socket === socket) current = undefined;
    });
    socket.on('message', (data: Buffer, isBinary) => {
      const text = data.toString('utf8');
      const message = isBinary ? undefined : parseAgentMessage(text);
      if (message === undefined) {
        invalid.push(text);
        return;
      }
      received.push({ connection: index, seq: seq++, at: Date.now(), message });
      if (message.type === 'hello') {
        if (options.welcome ?? true) {
          sendOn(socket, index, {
            type: 'welcome',
            agentId: randomUUID(),
            serverTime: new Date().toISOString(),
          });
        }
        if (state.autoAck) {
          for (const s of message.sessions) {
            if (s.state === 'Stopped')
              sendOn(socket, index, { type: 'ack', sessionId: s.sessionId });
          }
        }
      }
      if (message.type === 'stopped' && state.autoAck) {
        sendOn(socket, index, { type: 'ack', sessionId: message.sessionId });
      }
      notify();
    });
  };

  const bearer = (req: IncomingMessage) =>
    /^Bearer (.+)$/.exec(req.headers.authorization ?? '')?.[1];

  const listen = async (onPort: number) => {
    const handler = (req: IncomingMessage, res: ServerResponse) => {
      const reply = (status: number, body: unknown) => {
        res.writeHead(status, { 'content-type': 'application/json' });
        res.end(JSON.stringify(body));
      };
      if (req.method !== 'POST' || req.url !== ENROLL_PATH) {
        reply(404, { error: { code: 'NotFound', message: 'no such route' } });
        return;
      }
      if (bearer(req) !== enrollToken) {
        reply(401, {
          error: { code: 'InvalidEnrollmentToken', message: 'the enrollment token is not valid' },
        });
        return;
      }
      let body = '';
      req.setEncoding('utf8');
      req.on('data', (chunk: string) => (body += chunk));
      req.on('end', () => {
        let value: unknown;
        try {
          value = JSON.parse(body);
        } catch {
          value = undefined;
        }
        if (!enrollCheck.Check(value)) {
          reply(400, { error: { code: 'InvalidRequestContent', message: 'bad enroll request' } });
          return;
        }
        enrollments.push(value);
        const credential = `cred-${randomBytes(16).toString('hex')}`;
        credentials.add(credential);
        const group = `/subscriptions/${value.subscriptionId}/resourceGroups/${value.resourceGroup}/providers/Microsoft.Compute`;
        if (value.scaleSet === undefined) {
          reply(200, {
            agentId: randomUUID(),
            vmId: `${group}/virtualMachines/${value.name}`,
            credential,
            name: value.name,
          });
          return;
        }
        // A scale-set instance: the next id is the number of instances enrolled so far.
        const instanceId =
          value.instanceId ??
          String(enrollments.filter((e) => e.scaleSet !== undefined).length - 1);
        reply(200, {
          agentId: randomUUID(),
          vmId: `${group}/virtualMachineScaleSets/${value.scaleSet}/virtualMachines/${instanceId}`,
          credential,
          name: `${value.scaleSet}_${instanceId}`,
          instanceId,
        });
      });
    };
    http =
      options.tls === undefined ? createServer(handler) : createHttpsServer(options.tls, handler);
    http.on('connection', (s: Socket) => {
      rawSockets.add(s);
      s.on('close', () => rawSockets.delete(s));
    });
    http.on('upgrade', (req: IncomingMessage, socket: Socket, head: Buffer) => {
      if (req.url !== CHANNEL_PATH) {
        socket.end('HTTP/1.1 404 Not Found\r\nconnection: close\r\ncontent-length: 0\r\n\r\n');
        return;
      }
      const credential = bearer(req);
      if (credential === undefined || !credentials.has(credential)) {
        const body = JSON.stringify({
          error: { code: 'AuthenticationFailed', message: 'unknown agent credential' },
        });
        socket.end(
          `HTTP/1.1 401 Unauthorized\r\nconnection: close\r\ncontent-type: application/json\r\ncontent-length: ${body.length}\r\n\r\n${body}`,
        );
        return;
      }
      wss.handleUpgrade(req, socket, head, (ws) => onConnection(ws, connections++));
    });
    await new Promise<void>((resolve, reject) => {
      http.once('error', reject);
      http.listen(onPort, '127.0.0.1', () => resolve());
    });
  };

  await listen(port);
  const actualPort = (http!.address() as AddressInfo).port;

  const dropConnections = () => {
    for (const s of sockets) s.terminate();
  };
  const stop = async () => {
    const closed = new Promise<void>((resolve) => http.close(() => resolve()));
    dropConnections();
    for (const s of rawSockets) s.destroy();
    await closed;
  };

  return {
    url: `${options.tls === undefined ? 'http' : 'https'}://127.0.0.1:${actualPort}`,
    port: actualPort,
    enrollToken,
    enrollments,
    credentials,
    received,
    sent,
    invalid,
    get autoAck() {
      return state.autoAck;
    },
    set autoAck(value: boolean) {
      state.autoAck = value;
    },
    get silent() {
      return state.silent;
    },
    set silent(value: boolean) {
      state.silent = value;
    },
    get connectionCount() {
      return connections;
    },
    get isConnected() {
      return current !== undefined;
    },
    send(message) {
      if (current === undefined) throw new Error('no agent is connected');
      return sendOn(current.socket, current.index, message);
    },
    sendRaw(text) {
      if (current === undefined) throw new Error('no agent is connected');
      current.socket.send(text);
    },
    waitFor(type, match, timeoutMs = 20_000) {
      type Found = Extract<AgentMessage, { type: typeof type }>;
      return new Promise((resolve, reject) => {
        let scanned = 0;
        const check = (): boolean => {
          for (; scanned < received.length; scanned++) {
            const r = received[scanned]!;
            if (r.message.type !== type) continue;
            const message = r.message as Found;
            if (match === undefined || match(message, r)) {
              resolve({ ...message, received: r });
              return true;
            }
          }
          return false;
        };
        if (check()) return;
        const timer = setTimeout(() => {
          waiters = waiters.filter((w) => w !== waiter);
          reject(new Error(`no ${type} message within ${timeoutMs} ms`));
        }, timeoutMs);
        const waiter = () => {
          if (check()) clearTimeout(timer);
          else waiters.push(waiter);
        };
        waiters.push(waiter);
      });
    },
    dropConnections,
    stop,
    restart: () => listen(actualPort),
    async close() {
      await stop().catch(() => undefined);
      wss.close();
    },
  };
}
