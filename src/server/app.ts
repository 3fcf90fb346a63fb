import { randomUUID } from 'node:crypto';
import Fastify, {
  type FastifyBaseLogger,
  type FastifyInstance,
  type FastifyReply,
  type FastifyRequest,
  type FastifyServerOptions,
} from 'fastify';
import {
  computeApiVersions,
  networkApiVersions,
  storageApiVersions,
} from '../control/api-versions.js';
import { ControlPlane, type BlobWriter } from '../control/control-plane.js';
import { StorageAccountClient } from '../blob/storage-account.js';
import { CHANNEL_PATH, ENROLL_PATH } from '../model/channel.js';
import { WirewatchError } from '../model/errors.js';
import type { Store } from '../store/store.js';
import { AgentHub, type AgentChannelLimits } from './agent-hub.js';
import { Authenticator, requireAdmin } from './auth.js';
import type { ServerContext } from './context.js';
import { sendError, toWirewatchError } from './error-handler.js';
import { ServerMetrics } from './metrics.js';
import { derivePublicUrl, parsePublicUrl } from './public-url.js';
import { addressKey, RateLimiter, type RateLimit } from './rate-limit.js';
import { agentRoutes } from './routes/agents.js';
import { captureContentRoutes } from './routes/capture-content.js';
import { captureStreamRoutes } from './routes/capture-stream.js';
import { nativeRoutes } from './routes/native.js';
import { networkWatcherRoutes } from './routes/network-watchers.js';
import { operationRoutes } from './routes/operations.js';
import { packetCaptureRoutes } from './routes/packet-captures.js';
import { storageAccountRoutes } from './routes/storage-accounts.js';
import { virtualMachineRoutes } from './routes/virtual-machines.js';
import { WebSocketGate, type WebSocketGateOptions } from './websocket-gate.js';

export interface BuildServerOptions {
  readonly store: Store;
  /** Sessions NotStarted or Running per (subscription, location); default 10,000. */
  readonly quota?: number;
  /** Largest page of an ARM list asked for with $top; default 1000. */
  readonly pageSize?: number;
  /** Largest accepted request body; default 1 MiB. */
  readonly bodyLimit?: number;
  /** Fastify's logger option (pino): false, true, or pino options / an instance. */
  readonly logger?: FastifyServerOptions['logger'] | FastifyBaseLogger;
  /** TLS material: the server speaks HTTPS when given. */
  readonly https?: { key: Buffer; cert: Buffer };
  /** How often the deadline backstop and the operation timeouts are checked; default 10 s. */
  readonly sweepIntervalMs?: number;
  readonly pingIntervalMs?: number;
  readonly deadlineGraceMs?: number;
  /** How long an agent has to acknowledge a create, stop or delete; default 60 s. */
  readonly operationTimeoutMs?: number;
  /** The control plane's clock (deadlines, operation timeouts); tests move it. */
  readonly now?: () => Date;
  /**
   * The base of the absolute URLs the server hands out (polling headers, nextLink), e.g.
   * `https://wirewatch.example.com:7443`; default the address it listens on (a wildcard
   * address becomes the host name). Never taken from a request's Host header.
   */
  readonly publicUrl?: string;
  /** Requests per API token (429 beyond); false: none. Default 100/s, bursts of 1000. */
  readonly rateLimit?: RateLimit | false;
  /**
   * Requests without a valid API token (health, agent enrollment and channel, failed
   * authentication) per remote address; false: none. Default 50/s, bursts of 500.
   */
  readonly anonymousRateLimit?: RateLimit | false;
  /** The rate limiters' clock (ms, monotonic), for tests; default performance.now. */
  readonly limiterClock?: () => number;
  /**
   * How long a request may take to arrive whole (head and body); default 30 s. Nothing sends
   * more than a small JSON body, and without a deadline a connection trickling a body is held
   * for ever.
   */
  readonly requestTimeoutMs?: number;
  /** Caps on WebSocket upgrades in flight and open sockets per token and VM. */
  readonly webSockets?: WebSocketGateOptions;
  /** What one agent may send on its channel (src/server/agent-hub.ts); defaults there. */
  readonly agentChannelLimits?: Partial<AgentChannelLimits>;
}

/** Default requests per API token: far above what the CLI, the SDK or a script polling sends. */
export const DEFAULT_RATE_LIMIT: RateLimit = { perSecond: 100, burst: 1000 };
/** Default requests without a valid token, per remote address. */
export const DEFAULT_ANONYMOUS_RATE_LIMIT: RateLimit = { perSecond: 50, burst: 500 };

export interface WirewatchServer {
  readonly app: FastifyInstance;
  readonly control: ControlPlane;
  readonly hub: AgentHub;
  /** Open WebSockets (agent channels, live streams) and the upgrades in flight. */
  readonly sockets: WebSocketGate;
  /** Stops the sweeper, closes agent channels and the HTTP server. Safe to call twice. */
  close(): Promise<void>;
}

declare module 'fastify' {
  interface FastifyInstance {
    /** The base of absolute URLs handed out (see BuildServerOptions.publicUrl). */
    readonly publicUrl: string;
  }
}

/** Paths that carry no API token: their own credentials (agents) or none (health). */
const OPEN_PATHS = new Set(['/healthz', ENROLL_PATH.toLowerCase(), CHANNEL_PATH.toLowerCase()]);

/**
 * Builds the control plane's HTTP server (not listening: the caller listens). Azure's ARM
 * routes, the native API under /api/v1, the agent channel, /metrics and /healthz.
 */
export async function buildServer(options: BuildServerOptions): Promise<WirewatchServer> {
  const logger = options.logger ?? false;
  const app = Fastify({
    ...(isLoggerInstance(logger) ? { loggerInstance: logger } : { logger: withRedaction(logger) }),
    ...(options.https ? { https: options.https } : {}),
    bodyLimit: options.bodyLimit ?? 1024 * 1024,
    requestTimeout: options.requestTimeoutMs ?? 30_000,
    routerOptions: { caseSensitive: false, ignoreTrailingSlash: true },
    genReqId: (req) => {
      const given = req.headers['x-ms-client-request-id'];
      return typeof given === 'string' && /^[\w-]{1,64}$/.test(given) ? given : randomUUID();
    },
    requestIdHeader: false,
    ajv: { customOptions: { coerceTypes: false, removeAdditional: false, useDefaults: false } },
  });

  const store = options.store;
  const storageClients = new StorageClients();
  const hub = new AgentHub({
    log: app.log,
    ...(options.pingIntervalMs === undefined ? {} : { pingIntervalMs: options.pingIntervalMs }),
    ...(options.agentChannelLimits === undefined ? {} : { limits: options.agentChannelLimits }),
  });
  const control = new ControlPlane({
    store,
    agents: hub,
    ...(options.quota === undefined ? {} : { quota: options.quota }),
    ...(options.deadlineGraceMs === undefined ? {} : { deadlineGraceMs: options.deadlineGraceMs }),
    ...(options.operationTimeoutMs === undefined
      ? {}
      : { operationTimeoutMs: options.operationTimeoutMs }),
    ...(options.now === undefined ? {} : { now: options.now }),
    log: (level, msg, fields) => app.log[level](fields ?? {}, msg),
    openStorageAccount: (record) => storageClients.open(record.connectionString),
  });
  hub.bind(control);
  const auth = new Authenticator(store);
  const metrics = new ServerMetrics(store, hub);
  const sockets = new WebSocketGate(options.webSockets);
  const ctx: ServerContext = {
    store,
    control,
    hub,
    auth,
    sockets,
    pageSize: options.pageSize ?? 1000,
  };
  const givenPublicUrl =
    options.publicUrl === undefined ? undefined : parsePublicUrl(options.publicUrl);
  app.decorate('publicUrl', {
    getter(): string {
      if (givenPublicUrl !== undefined) return givenPublicUrl;
      const address = app.server.address();
      if (address === null || typeof address === 'string') {
        throw new Error('the server is not listening on a TCP port; give publicUrl');
      }
      return derivePublicUrl(address, options.https !== undefined);
    },
  });
  const limiter = (limit: RateLimit | false | undefined, fallback: RateLimit) =>
    limit === false
      ? undefined
      : new RateLimiter({
          ...(limit ?? fallback),
          ...(options.limiterClock ? { now: options.limiterClock } : {}),
        });
  const perToken = limiter(options.rateLimit, DEFAULT_RATE_LIMIT);
  const perAddress = limiter(options.anonymousRateLimit, DEFAULT_ANONYMOUS_RATE_LIMIT);
  /** Takes a request from a bucket; an empty one is a 429 with Retry-After. */
  const charge = (
    reply: FastifyReply,
    limiter: RateLimiter | undefined,
    key: string,
    who: string,
  ) => {
    const result = limiter?.take(key);
    if (result === undefined || result.ok) return;
    reply.header('Retry-After', String(result.retryAfterSeconds));
    throw new WirewatchError(
      'TooManyRequests',
      `Too many requests ${who}; retry after ${result.retryAfterSeconds} s`,
    );
  };

  // An empty body is no body: Azure accepts `POST …/stop` with Content-Type: application/json
  // and nothing after it. A route whose schema needs a body still answers 400.
  const json = app.getDefaultJsonParser('error', 'error');
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (request, body, done) => {
    const text = typeof body === 'string' ? body : body.toString('utf8');
    if (text.trim() === '') {
      done(null, undefined);
      return;
    }
    void json(request, text, done);
  });

  app.setErrorHandler((err, request, reply) => {
    const error = toWirewatchError(err, request);
    if (error.status >= 500) request.log.error({ err }, 'request failed');
    return sendError(reply, error);
  });
  const notFound = (request: FastifyRequest) =>
    new WirewatchError('NotFound', `No route for ${request.method} ${request.url.split('?')[0]}`);
  app.setNotFoundHandler((request, reply) => sendError(reply, notFound(request)));

  // Before authentication: an upgrade of a route that cannot upgrade is refused unlooked-at.
  sockets.install(app);
  app.addHook('onRequest', async (request, reply) => {
    reply.header('x-ms-request-id', request.id);
    const path = (request.url.split('?')[0] ?? '').toLowerCase().replace(/\/+$/, '');
    if (OPEN_PATHS.has(path)) {
      charge(reply, perAddress, addressKey(request.ip), 'from this address');
      // An open path with a method it does not have (POST /healthz): answered now, before a
      // body nobody authenticated is read.
      if (request.is404) throw notFound(request);
      return;
    }
    try {
      request.principal = await auth.authenticate(request);
    } catch (err) {
      // Guessing tokens costs a lookup each: the address pays for every failed one.
      charge(reply, perAddress, addressKey(request.ip), 'from this address');
      throw err;
    }
    charge(reply, perToken, request.principal.tokenId, 'for this token');
    if (path.startsWith('/subscriptions/') || path === '/subscriptions') {
      checkApiVersion(
        (request.query as Record<string, unknown>)['api-version'],
        path.includes('/providers/microsoft.compute/')
          ? computeApiVersions
          : path.includes('/providers/microsoft.storage/storageaccounts')
            ? storageApiVersions
            : networkApiVersions,
      );
    }
  });
  app.addHook('onResponse', async (request, reply) => {
    metrics.requestDuration.observe(
      {
        method: request.method,
        route: request.routeOptions.url ?? 'unmatched',
        status_code: String(reply.statusCode),
      },
      reply.elapsedTime / 1000,
    );
  });

  app.get('/healthz', async () => ({ status: 'ok' }));
  app.get('/metrics', async (request, reply) => {
    requireAdmin(request.principal!);
    return reply.type(metrics.registry.contentType).send(await metrics.registry.metrics());
  });
  for (const plugin of [
    packetCaptureRoutes,
    captureContentRoutes,
    captureStreamRoutes,
    operationRoutes,
    networkWatcherRoutes,
    virtualMachineRoutes,
    storageAccountRoutes,
    nativeRoutes,
    agentRoutes,
  ]) {
    await app.register(plugin, ctx);
  }

  const sweeper = setInterval(() => {
    control
      .sweepDeadlines()
      .catch((err: unknown) => app.log.error({ err }, 'deadline sweep failed'));
    control
      .sweepOperations()
      .catch((err: unknown) => app.log.error({ err }, 'operation sweep failed'));
    control
      .retryUploadChecks()
      .catch((err: unknown) => app.log.error({ err }, 'upload check retry failed'));
  }, options.sweepIntervalMs ?? 10_000);
  sweeper.unref();

  let closed: Promise<void> | undefined;
  return {
    app,
    control,
    hub,
    sockets,
    close() {
      closed ??= (async () => {
        clearInterval(sweeper);
        hub.close();
        sockets.close();
        await app.close();
      })();
      return closed;
    },
  };
}

/** One client per connection string: SAS minting reuses the account's key credential. */
class StorageClients {
  readonly #clients = new Map<string, StorageAccountClient>();

  open(connectionString: string): BlobWriter {
    let client = this.#clients.get(connectionString);
    if (!client) {
      if (this.#clients.size > 1000) this.#clients.clear();
      client = new StorageAccountClient(connectionString);
      this.#clients.set(connectionString, client);
    }
    return client;
  }
}

function checkApiVersion(raw: unknown, accepted: ReadonlySet<string>): void {
  const values = Array.isArray(raw) ? (raw as unknown[]) : raw === undefined ? [] : [raw];
  if (values.length === 0 || values.every((v) => v === '')) {
    throw new WirewatchError(
      'MissingApiVersionParameter',
      'The api-version query parameter (?api-version=) is required for all requests',
      { target: 'api-version' },
    );
  }
  // Polling URLs may come back with the api-version added a second time; all must be valid.
  for (const v of values) {
    if (typeof v !== 'string' || !accepted.has(v)) {
      throw new WirewatchError(
        'InvalidApiVersionParameter',
        `The api-version '${String(v).slice(0, 40)}' is invalid. The supported versions are '${[...accepted].join(',')}'`,
        { target: 'api-version' },
      );
    }
  }
}

function isLoggerInstance(value: unknown): value is FastifyBaseLogger {
  return (
    typeof value === 'object' &&
    value !== null &&
    typeof (value as FastifyBaseLogger).child === 'function'
  );
}

/** Authorization headers never reach a log line. */
function withRedaction(logger: FastifyServerOptions['logger']): FastifyServerOptions['logger'] {
  if (logger === false || logger === undefined) return false;
  const base = logger === true ? {} : logger;
  return {
    ...base,
    redact: {
      paths: ['req.headers.authorization', 'req.headers.cookie', 'headers.authorization'],
      censor: '[redacted]',
    },
  };
}
