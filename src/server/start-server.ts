import { chmod, mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { isIP } from 'node:net';
import path from 'node:path';
import type { FastifyServerOptions } from 'fastify';
import { installAdminToken } from '../control/api-tokens.js';
import { generateToken } from '../control/tokens.js';
import { WirewatchError } from '../model/errors.js';
import { createSqliteStore } from '../store/sqlite/sqlite-store.js';
import type { SecretBox } from '../store/secret-box.js';
import type { Store } from '../store/store.js';
import { buildServer, type BuildServerOptions, type WirewatchServer } from './app.js';
import { openSecretsKeys } from './secrets-key.js';
import { serverNames } from './tls-names.js';
import { parsePublicUrl } from './public-url.js';
import type { RateLimit } from './rate-limit.js';
import type { WebSocketGateOptions } from './websocket-gate.js';
import { ensureSelfSignedTls, loadTlsFiles } from './tls.js';

export interface StartServerOptions {
  readonly dataDir: string;
  /** `HOST:PORT`, `[v6]:PORT`; port 0 picks a free one. */
  readonly listen: string;
  readonly tls?: 'self-signed' | { readonly certPath: string; readonly keyPath: string };
  /** More names for the self-signed certificate (`--tls-san`): DNS names or IP addresses. */
  readonly tlsSans?: readonly string[];
  /** `sqlite:PATH`; default `sqlite:<dataDir>/wirewatch.db`. */
  readonly db?: string;
  readonly allowInsecureHttp?: boolean;
  readonly quota?: number;
  readonly pageSize?: number;
  /** The most VMs one subscription may enroll (`--max-vms-per-subscription`); default 10,000. */
  readonly maxVmsPerSubscription?: number;
  /**
   * The admin token (WIREWATCH_ADMIN_TOKEN). Every other admin token is revoked at start, so
   * changing it retires the previous one.
   */
  readonly adminToken?: string;
  /** Make a new admin token in DIR/admin.token and revoke every other (`--rotate-admin-token`). */
  readonly rotateAdminToken?: boolean;
  /** The key that seals the store's secrets; default `DIR/secrets.key` (made when missing). */
  readonly secretsKeyPath?: string;
  /** Make a new secrets key and re-seal every secret with it (`--rotate-secrets-key`). */
  readonly rotateSecretsKey?: boolean;
  readonly logger?: FastifyServerOptions['logger'];
  readonly sweepIntervalMs?: number;
  readonly deadlineGraceMs?: number;
  /** How often connected agents are pinged (default 15 s); two unanswered pings drop one. */
  readonly pingIntervalMs?: number;
  /** How long an agent has to acknowledge a create, stop or delete; default 60 s. */
  readonly operationTimeoutMs?: number;
  /** The control plane's clock; tests move it. */
  readonly now?: () => Date;
  readonly uploadCheckBackoff?: BuildServerOptions['uploadCheckBackoff'];
  /** Base of the absolute URLs handed out; default derived from the bound address and TLS. */
  readonly publicUrl?: string;
  /** Requests per second per API token (bursts of 10 s worth); 0 turns the limit off. */
  readonly rateLimit?: number;
  /** Requests per second per remote address without a valid token; 0 turns it off. */
  readonly anonymousRateLimit?: number;
  /** Reverse proxies whose X-Forwarded-For gives the client's address (`--trust-proxy`). */
  readonly trustProxy?: readonly string[];
  /** Caps on WebSocket upgrades and open sockets (no flag; defaults suit every deployment). */
  readonly webSockets?: WebSocketGateOptions;
  /** The rate limiters' clock (ms, monotonic), for tests. */
  readonly limiterClock?: () => number;
  readonly agentChannelLimits?: BuildServerOptions['agentChannelLimits'];
}

export interface RunningServer extends WirewatchServer {
  /** The base URL, e.g. `https://127.0.0.1:7443`. */
  readonly url: string;
  /** DIR/tls/ca.crt with `--tls self-signed`. */
  readonly caPath: string | undefined;
  /** The names the self-signed server certificate is for (`DNS:x`, `IP:y`); empty otherwise. */
  readonly tlsNames: readonly string[];
  readonly adminTokenPath: string;
  /** The admin token when this start made it (first start without one, or a rotation). */
  readonly newAdminToken: string | undefined;
  /** The secrets key file, and what this start did with the stored secrets. */
  readonly secretsKeyPath: string;
  readonly secrets: { readonly resealed: number; readonly rotated: boolean };
  readonly store: Store;
}

/** Splits `HOST:PORT` / `[::1]:PORT`. */
export function parseListen(listen: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(listen.trim());
  const host = m?.[1] ?? m?.[2];
  const port = Number(m?.[3]);
  if (!m || !host || !Number.isInteger(port) || port > 65535) {
    throw new WirewatchError(
      'InvalidRequestContent',
      `--listen: "${listen}" is not HOST:PORT (e.g. 127.0.0.1:7443 or [::1]:7443)`,
      { target: 'listen' },
    );
  }
  return { host, port };
}

/** `--rate-limit N`: N requests per second in bursts of 10 s worth; 0 is no limit. */
export function rateLimitOf(perSecond: number | undefined): RateLimit | false | undefined {
  if (perSecond === undefined) return undefined;
  if (perSecond === 0) return false;
  return { perSecond, burst: perSecond * 10 };
}

export function isLoopback(host: string): boolean {
  if (host === 'localhost') return true;
  if (isIP(host) === 4) return host.startsWith('127.');
  if (isIP(host) === 6) return host === '::1';
  return false;
}

/**
 * `wirewatch server`: opens the store in the data dir, makes sure an admin token exists,
 * builds the server and listens. Refuses plain HTTP on a non-loopback address unless told.
 */
export async function startServer(options: StartServerOptions): Promise<RunningServer> {
  const { host, port } = parseListen(options.listen);
  if (!options.tls && !isLoopback(host) && !options.allowInsecureHttp) {
    throw new WirewatchError(
      'InvalidRequestContent',
      `--listen ${options.listen}: plain HTTP on a non-loopback address would send tokens and captures in clear text; use --tls self-signed, --tls-cert/--tls-key, or --allow-insecure-http`,
      { target: 'listen' },
    );
  }
  // Checked before anything is created, like --listen.
  if (options.publicUrl !== undefined) parsePublicUrl(options.publicUrl);
  const dataDir = path.resolve(options.dataDir);
  await mkdir(dataDir, { recursive: true, mode: 0o700 });
  // mkdir's mode is filtered by the umask and ignored for an existing directory.
  await chmod(dataDir, 0o700);

  let https: { key: Buffer; cert: Buffer } | undefined;
  let caPath: string | undefined;
  let tlsNames: readonly string[] = [];
  if (options.tlsSans?.length && options.tls !== 'self-signed') {
    throw new WirewatchError(
      'InvalidRequestContent',
      '--tls-san names the self-signed certificate: use it with --tls self-signed (a certificate of your own, --tls-cert, carries its own names)',
      { target: 'tls-san' },
    );
  }
  if (options.tls === 'self-signed') {
    const names = serverNames({ listenHost: host, extra: options.tlsSans ?? [] });
    const material = await ensureSelfSignedTls(dataDir, { names });
    https = { key: material.key, cert: material.cert };
    caPath = material.caPath;
    tlsNames = material.names.map((n) => `${n.type}:${n.value}`);
  } else if (options.tls) {
    https = await loadTlsFiles(options.tls.certPath, options.tls.keyPath);
  }

  const secretsKeyPath = path.resolve(options.secretsKeyPath ?? path.join(dataDir, 'secrets.key'));
  const keys = await openSecretsKeys({
    keyPath: secretsKeyPath,
    rotate: options.rotateSecretsKey ?? false,
  });
  const store = await openStore(
    options.db ?? `sqlite:${path.join(dataDir, 'wirewatch.db')}`,
    keys.box,
  );
  const adminTokenPath = path.join(dataDir, 'admin.token');
  let server: WirewatchServer | undefined;
  let newAdminToken: string | undefined;
  let secrets: RunningServer['secrets'];
  try {
    secrets = await keys.settle(store);
    newAdminToken = await ensureAdminToken(
      store,
      adminTokenPath,
      options.adminToken,
      options.rotateAdminToken ?? false,
    );
    server = await buildServer({
      store,
      ...(https ? { https } : {}),
      logger: options.logger ?? { level: 'info' },
      ...(options.quota === undefined ? {} : { quota: options.quota }),
      ...(options.pageSize === undefined ? {} : { pageSize: options.pageSize }),
      ...optional('maxVmsPerSubscription', options.maxVmsPerSubscription),
      ...optional('uploadCheckBackoff', options.uploadCheckBackoff),
      ...(options.sweepIntervalMs === undefined
        ? {}
        : { sweepIntervalMs: options.sweepIntervalMs }),
      ...(options.deadlineGraceMs === undefined
        ? {}
        : { deadlineGraceMs: options.deadlineGraceMs }),
      ...(options.pingIntervalMs === undefined ? {} : { pingIntervalMs: options.pingIntervalMs }),
      ...(options.operationTimeoutMs === undefined
        ? {}
        : { operationTimeoutMs: options.operationTimeoutMs }),
      ...(options.now === undefined ? {} : { now: options.now }),
      ...(options.publicUrl === undefined ? {} : { publicUrl: options.publicUrl }),
      ...optional('rateLimit', rateLimitOf(options.rateLimit)),
      ...optional('anonymousRateLimit', rateLimitOf(options.anonymousRateLimit)),
      ...optional('trustProxy', options.trustProxy),
      ...optional('webSockets', options.webSockets),
      ...optional('limiterClock', options.limiterClock),
      ...(options.agentChannelLimits === undefined
        ? {}
        : { agentChannelLimits: options.agentChannelLimits }),
    });
    await server.app.listen({ host, port });
  } catch (err) {
    await server?.close();
    await store.close();
    throw err;
  }
  const address = server.app.server.address();
  const boundPort = typeof address === 'object' && address ? address.port : port;
  const shownHost = isIP(host) === 6 ? `[${host}]` : host;
  const url = `${https ? 'https' : 'http'}://${shownHost}:${boundPort}`;
  const inner = server;
  let closed: Promise<void> | undefined;
  return {
    ...inner,
    url,
    caPath,
    tlsNames,
    adminTokenPath,
    newAdminToken,
    secretsKeyPath,
    secrets,
    store,
    close() {
      closed ??= (async () => {
        const results = await Promise.allSettled([inner.close()]);
        await store.close();
        for (const r of results) if (r.status === 'rejected') throw r.reason;
      })();
      return closed;
    },
  };
}

function optional<K extends string, V>(key: K, value: V | undefined): { [P in K]?: V } {
  return (value === undefined ? {} : { [key]: value }) as { [P in K]?: V };
}

async function openStore(db: string, secrets: SecretBox): Promise<Store> {
  if (db.startsWith('sqlite:')) {
    return createSqliteStore({ path: db.slice('sqlite:'.length), secrets });
  }
  throw new WirewatchError(
    'InvalidRequestContent',
    `--db: "${db.replace(/\/\/[^@]*@/, '//…@')}" is not supported; use sqlite:PATH`,
    { target: 'db' },
  );
}

/**
 * The admin credential: WIREWATCH_ADMIN_TOKEN when given, else the token in DIR/admin.token,
 * else a new one written there (mode 0600); with `rotate`, always a new one written there. Only
 * its hash goes into the store, and every other admin token is revoked: changing the variable,
 * or rotating, retires the previous token at this start. Returns the token when it is new.
 */
async function ensureAdminToken(
  store: Store,
  tokenPath: string,
  fromEnv: string | undefined,
  rotate: boolean,
): Promise<string | undefined> {
  let token = fromEnv?.trim();
  if (rotate && token) {
    throw new WirewatchError(
      'InvalidRequestContent',
      '--rotate-admin-token writes a new token to DIR/admin.token, but WIREWATCH_ADMIN_TOKEN is set: unset it (or set it to a new value, which retires the old one at start)',
      { target: 'WIREWATCH_ADMIN_TOKEN' },
    );
  }
  if (!token && !rotate) {
    try {
      token = (await readFile(tokenPath, 'utf8')).trim();
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
  }
  let fresh: string | undefined;
  if (!token) {
    token = fresh = generateToken('admin');
    const tmp = `${tokenPath}.${process.pid}.tmp`;
    await writeFile(tmp, `${token}\n`, { mode: 0o600 });
    await chmod(tmp, 0o600);
    await rename(tmp, tokenPath);
  }
  const name = fromEnv?.trim() ? 'WIREWATCH_ADMIN_TOKEN' : tokenPath;
  await installAdminToken(store, token, { name, tokenPath });
  return fresh;
}
