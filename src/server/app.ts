import { randomUUID } from 'node:crypto';
import Fastify, {
  type FastifyBaseLogger,
  type FastifyInstance,
  type FastifyRequest,
  type FastifyServerOptions,
} from 'fastify';
import {
  computeApiVersions,
  networkApiVersions,
  storageApiVersions,
} from '../control/api-versions.js';
import {
  ControlPlane,
  type BlobWriter,
  type ControlPlaneOptions,
} from '../control/control-plane.js';
import { StorageAccountClient } from '../blob/storage-account.js';
import { CHANNEL_PATH, ENROLL_PATH } from '../model/channel.js';
import { WirewatchError } from '../model/errors.js';
import type { Store } from '../store/store.js';
import { AgentHub, type AgentChannelLimits } from './agent-hub.js';
import { Authenticator, authorizeRoute, requireAdmin } from './auth.js';
import type { ServerContext } from './context.js';
import { sendError, toWirewatchError } from './error-handler.js';
import { ServerMetrics } from './metrics.js';
import { derivePublicUrl, parsePublicUrl } from './public-url.js';
import type { RateLimit } from './rate-limit.js';
import { RequestLimits } from './request-limits.js';
import { agentRoutes } from './routes/agents.js';
import { captureContentRoutes } from './routes/capture-content.js';
import { captureStreamRoutes } from './routes/capture-stream.js';
import { nativeRoutes } from './routes/native.js';
import { networkWatcherRoutes } from './routes/network-watchers.js';
import { operationRoutes } from './routes/operations.js';
import { packetCaptureRoutes } from './routes/packet-captures.js';
import { storageAccountRoutes } from './routes/storage-accounts.js';
import { scaleSetRoutes } from './routes/scale-sets.js';
import { virtualMachineRoutes } from './routes/virtual-machines.js';
import { WebSocketGate, type WebSocketGateOptions } from './websocket-gate.js';

export interface BuildServerOptions {
  readonly store: Store;
  /** Sessions NotStarted or Running per (subscription, location); default 10,000. */
  readonly quota?: number;
  /** Largest page of an ARM list asked for with $top; default 1000. */
  readonly pageSize?: number;
  /** The most VMs one subscription may enroll; default DEFAULT_MAX_VMS_PER_SUBSCRIPTION. */
  readonly maxVmsPerSubscription?: number;
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
  /** See ControlPlaneOptions.uploadCheckBackoff (default 10 s doubling to 10 min). */
  readonly uploadCheckBackoff?: ControlPlaneOptions['uploadCheckBackoff'];
  /**
   * The base of the absolute URLs the server hands out (polling headers, nextLink), e.g.
   * `https://wirewatch.example.com:7443`; default the address it listens on (a wildcard
   * address becomes the host name). Never taken from a request's Host header.
   */
  readonly publicUrl?: string;
  /** Requests per API token (429 beyond); false: none. Default 100/s, bursts of 1000. */
  readonly rateLimit?: RateLimit | false;
  /**
   * Requests per remote address without an API token, in two buckets: failed authentications
   * (API token, agent credential, enrollment token), and agents' enrollments and channel
   * connects; false: none. Default 50/s, bursts of 500, each. /healthz is not limited.
   */
  readonly anonymousRateLimit?: RateLimit | false;
  /**
   * Addresses of reverse proxies whose X-Forwarded-For is believed: a request from one of them
   * is taken to come from the last address in that header that is not one of them. Default
   * none: the peer's address is the client's.
   */
  readonly trustProxy?: readonly string[];
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

/** Default of `--max-vms-per-subscription`. */
export const DEFAULT_MAX_VMS_PER_SUBSCRIPTION = 10_000;

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
    ...(options.trustProxy && options.trustProxy.length > 0
      ? { trustProxy: [...options.trustProxy] }
      : {}),
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
    ...(options.uploadCheckBackoff === undefined
      ? {}
      : { uploadCheckBackoff: options.uploadCheckBackoff }),
    log: (level, msg, fields) => app.log[level](fields ?? {}, msg),
    openStorageAccount: (record) => storageClients.open(record.connectionString),
    probeStorageAccount: async (connectionString) => {
      // Parses the string (InvalidConnectionString) and proves endpoint and key work.
      const client = new StorageAccountClient(connectionString);
      await client.ensureContainer();
      return { accountName: client.accountName, blobEndpoint: client.blobEndpoint };
    },
  });
  hub.bind(control);
  const auth = new Authenticator(control.tokens);
  const metrics = new ServerMetrics(control, hub);
  const sockets = new WebSocketGate(options.webSockets);
  // Open live streams of a revoked token end at once (after the authenticator forgets it).
  control.tokens.onRevoked((tokenId) =>
    sockets.closeOwner({ kind: 'token', tokenId }, 'token revoked'),
  );
  const limits = new RequestLimits({
    perToken: options.rateLimit ?? DEFAULT_RATE_LIMIT,
    perAddress: options.anonymousRateLimit ?? DEFAULT_ANONYMOUS_RATE_LIMIT,
    ...(options.limiterClock ? { now: options.limiterClock } : {}),
  });
  const ctx: ServerContext = {
    control,
    hub,
    auth,
    sockets,
    limits,
    pageSize: options.pageSize ?? 1000,
    maxVmsPerSubscription: options.maxVmsPerSubscription ?? DEFAULT_MAX_VMS_PER_SUBSCRIPTION,
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
    // Refused before its body arrived (credentials, role, subscription): the connection goes
    // with the answer, instead of being held while the rest of the body trickles in.
    if (!request.raw.complete) reply.header('Connection', 'close');
    if (error.status >= 500) request.log.error({ err }, 'request failed');
    return sendError(reply, error);
  });
  const notFound = (request: FastifyRequest) =>
    new WirewatchError('NotFound', `No route for ${request.method} ${request.url.split('?')[0]}`);
  app.setNotFoundHandler((request, reply) => sendError(reply, notFound(request)));

  // Every route that may read a body says who may send it (config.need), so that the role and
  // subscription are checked before the body is read; open paths check their own credentials
  // first (routes/agents.ts).
  app.addHook('onRoute', (route) => {
    const methods = Array.isArray(route.method) ? route.method : [route.method];
    const readsBody = methods.some((m) => m !== 'GET' && m !== 'HEAD');
    const open = OPEN_PATHS.has(route.url.toLowerCase());
    if (readsBody && !open && route.config?.need === undefined) {
      throw new Error(`${methods.join(',')} ${route.url} may read a body: give it config.need`);
    }
  });

  // Before authentication: an upgrade of a route that cannot upgrade is refused unlooked-at.
  sockets.install(app);
  app.addHook('onRequest', async (request, reply) => {
    reply.header('x-ms-request-id', request.id);
    const path = (request.url.split('?')[0] ?? '').toLowerCase().replace(/\/+$/, '');
    if (OPEN_PATHS.has(path)) {
      // An open path with a method it does not have (POST /healthz): answered now, before a
      // body nobody authenticated is read. Agents' routes charge their own limits.
      if (request.is404) throw notFound(request);
      return;
    }
    let principal;
    try {
      principal = await auth.authenticate(request);
    } catch (err) {
      throw limits.failedLogin(request, reply, err);
    }
    request.principal = principal;
    limits.token(reply, principal.tokenId);
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
    // The route's role and subscription check, before its body is read (the handler checks
    // again; this one only answers earlier).
    const need = request.routeOptions.config.need;
    if (need !== undefined) await authorizeRoute(control, principal, request.params, need);
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
    scaleSetRoutes,
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
