/**
 * The agent's own ports: a small pool of local TCP ports, outside the kernel's ephemeral range
 * (so the kernel never hands them to another program's connection), that every connection the
 * agent makes is bound to. A capture's kernel filter then leaves out exactly the agent's own
 * connections, also those opened after tcpdump started (src/capture/own-traffic.ts).
 *
 * Binding is done with SO_REUSEADDR (libuv sets it for every TCP bind), so several connections
 * to different remotes share a port; a port whose 4-tuple is taken (the same remote, or a
 * connection in TIME_WAIT) fails with EADDRNOTAVAIL or EADDRINUSE and the next port is tried.
 * When every port fails the connection is made from an ephemeral port, and logged: captures
 * will then hold it.
 */
import { readFile } from 'node:fs/promises';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import type { Duplex } from 'node:stream';
import tls from 'node:tls';
import type { PortRange } from '../capture/filter-spec.js';
import { silentLog, type AgentLog } from './agent-log.js';

/** Ports in the pool by default. */
export const OWN_PORT_COUNT = 16;
/** How long a connection may take to be established when the caller sets no timeout. */
const CONNECT_TIMEOUT_MS = 30_000;

export interface OwnPortsOptions {
  /** The pool; default OWN_PORT_COUNT ports next to the ephemeral range (see chooseOwnPorts). */
  readonly ports?: PortRange;
  readonly log?: AgentLog;
  /** The kernel's ephemeral range (default: read from /proc/sys/net/ipv4/ip_local_port_range). */
  readonly ephemeral?: PortRange;
}

/**
 * Chooses the pool (or takes `ports`): OWN_PORT_COUNT ports just above the ephemeral range, or
 * just below it when there is no room above; ports a program listens on are skipped. When no
 * room is left (an ephemeral range covering 1024–65535) the pool's range is undefined and every
 * connection uses an ephemeral port.
 */
export async function reserveOwnPorts(options: OwnPortsOptions = {}): Promise<OwnPorts> {
  const log = options.log ?? silentLog;
  if (options.ports !== undefined) return new OwnPorts(options.ports, log);
  const ephemeral = options.ephemeral ?? (await ephemeralRange());
  const range = await chooseOwnPorts(ephemeral);
  if (range === undefined) {
    log(
      'warn',
      'no room for own ports outside the ephemeral range; captures will hold the agent traffic',
      {
        ephemeral: `${ephemeral.first}-${ephemeral.last}`,
      },
    );
  }
  return new OwnPorts(range, log);
}

async function chooseOwnPorts(ephemeral: PortRange): Promise<PortRange | undefined> {
  const n = OWN_PORT_COUNT;
  // Above the range, moving up past each listened port; then below it, moving down.
  for (let first = ephemeral.last + 1; first + n - 1 <= 65535;) {
    const busy = await firstListened(first, first + n - 1);
    if (busy === undefined) return { first, last: first + n - 1 };
    first = busy + 1;
  }
  for (let first = ephemeral.first - n; first >= 1024;) {
    const busy = await firstListened(first, first + n - 1);
    if (busy === undefined) return { first, last: first + n - 1 };
    first = busy - n;
  }
  return undefined;
}

/** The first port in [first, last] a program listens on (on any address), if any. */
async function firstListened(first: number, last: number): Promise<number | undefined> {
  for (let port = first; port <= last; port++) {
    if (!(await canListen(port))) return port;
  }
  return undefined;
}

async function canListen(port: number): Promise<boolean> {
  for (const host of ['::', '0.0.0.0']) {
    const result = await new Promise<'ok' | 'busy' | 'unsupported'>((resolve) => {
      const server = net.createServer();
      server.once('error', (err: NodeJS.ErrnoException) =>
        resolve(err.code === 'EADDRINUSE' ? 'busy' : 'unsupported'),
      );
      server.listen({ port, host, exclusive: true }, () => server.close(() => resolve('ok')));
    });
    if (result !== 'unsupported') return result === 'ok';
  }
  return true;
}

/** The kernel's ephemeral port range of this network namespace. */
export async function ephemeralRange(): Promise<PortRange> {
  try {
    const text = await readFile('/proc/sys/net/ipv4/ip_local_port_range', 'utf8');
    const [first, last] = text.trim().split(/\s+/).map(Number);
    if (Number.isInteger(first) && Number.isInteger(last)) return { first: first!, last: last! };
  } catch {
    // not Linux, or /proc not mounted: Linux's default
  }
  return { first: 32768, last: 60999 };
}

/** Options of one outgoing connection, as http.Agent and ws hand them over. */
type ConnectOptions = http.ClientRequestArgs;

export class OwnPorts {
  /** The pool; undefined when there is none (every connection uses an ephemeral port). */
  readonly range: PortRange | undefined;
  readonly #log: AgentLog;
  /** Where the next connection starts looking, so that ports are used in turn. */
  #next = 0;

  constructor(range: PortRange | undefined, log: AgentLog = silentLog) {
    this.range = range;
    this.#log = log;
  }

  /**
   * Connects over TCP from a port of the pool (then TLS when `secure`), calling back once the
   * connection is established. The http.Agent callback form, so that a port found taken can be
   * given up for the next one before anyone sees the socket.
   */
  connect(
    options: ConnectOptions,
    secure: boolean,
    callback: (err: Error | null, socket: Duplex) => void,
  ): void {
    const ports = this.#candidates();
    const timeoutMs = typeof options.timeout === 'number' ? options.timeout : CONNECT_TIMEOUT_MS;
    const attempt = (i: number): void => {
      const port = ports[i];
      if (port === undefined && ports.length > 0) {
        this.#log(
          'warn',
          'every own port is taken; this connection is made from an ephemeral port and captures will hold it',
          {
            host: options.host,
            port: options.port,
          },
        );
      }
      const socket = net.connect({
        host: options.host ?? 'localhost',
        port: Number(options.port),
        ...(options.family === undefined ? {} : { family: options.family }),
        ...(options.lookup === undefined ? {} : { lookup: options.lookup }),
        ...(port === undefined ? {} : { localPort: port }),
        ...(options.localAddress === undefined ? {} : { localAddress: options.localAddress }),
        noDelay: true,
      });
      const timer = setTimeout(() => {
        const err = Object.assign(
          new Error(`connect to ${options.host}:${options.port} timed out`),
          {
            code: 'ETIMEDOUT',
          },
        );
        socket.destroy(err);
      }, timeoutMs);
      const onError = (err: NodeJS.ErrnoException) => {
        clearTimeout(timer);
        socket.destroy();
        if (port !== undefined && (err.code === 'EADDRINUSE' || err.code === 'EADDRNOTAVAIL')) {
          attempt(i + 1);
        } else callback(err, socket);
      };
      socket.once('error', onError);
      socket.once('connect', () => {
        clearTimeout(timer);
        socket.off('error', onError);
        if (!secure) return callback(null, socket);
        const { path: _path, socketPath: _socketPath, timeout: _timeout, ...rest } = options;
        const secured = tls.connect({ ...(rest as tls.ConnectionOptions), socket });
        const onTlsError = (err: Error) => {
          secured.destroy();
          callback(err, secured);
        };
        secured.once('error', onTlsError);
        secured.once('secureConnect', () => {
          secured.off('error', onTlsError);
          callback(null, secured);
        });
      });
    };
    attempt(0);
  }

  /** An http(s) agent whose connections come from the pool. */
  httpAgent(secure: boolean, options: http.AgentOptions = {}): http.Agent {
    const agent: http.Agent = secure ? new https.Agent(options) : new http.Agent(options);
    // The callback form of createConnection (http.Agent supports it): the socket is handed over
    // once connected from a port of the pool.
    agent.createConnection = (request, callback) => {
      this.connect(request, secure, callback ?? (() => undefined));
      return undefined;
    };
    return agent;
  }

  /** The pool's ports, starting with the one after the last used. */
  #candidates(): number[] {
    const range = this.range;
    if (range === undefined) return [];
    const count = range.last - range.first + 1;
    const start = this.#next++ % count;
    return Array.from({ length: count }, (_, i) => range.first + ((start + i) % count));
  }
}
