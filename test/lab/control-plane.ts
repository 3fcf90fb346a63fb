/**
 * Test helpers for the control plane: a real server listening on loopback with its data in a
 * temp dir, a tiny JSON client (plain HTTP, or HTTPS trusting a given CA), tenants with a token
 * per role, and synthetic agents of a tenant (alone, or with a server and tenant of their own).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { request as httpsRequest } from 'node:https';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { WebSocket } from 'ws';
import {
  startServer,
  type RunningServer,
  type StartServerOptions,
} from '../../src/server/start-server.js';
import { SyntheticAgent, type SyntheticAgentOptions } from './synthetic-agent.js';

export const API = '2025-05-01';

/**
 * The status of a WebSocket upgrade of `path` (with its query) on the server at `baseUrl`: the
 * refusal's HTTP status, or 101 when it opened (the socket is then closed at once). No token, or
 * '', sends no Authorization header.
 */
export function upgradeStatus(baseUrl: string, path: string, token?: string): Promise<number> {
  const url = new URL(path, baseUrl);
  url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, token ? { headers: { authorization: `Bearer ${token}` } } : {});
    ws.once('error', reject);
    ws.once('unexpected-response', (req, res) => {
      res.resume();
      req.destroy();
      resolve(res.statusCode ?? 0);
    });
    ws.once('open', () => {
      ws.terminate();
      resolve(101);
    });
  });
}

export interface Reply {
  readonly status: number;
  readonly headers: Headers;
  // Bodies are whatever the server sent; tests inspect them.
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  readonly body: any;
  readonly text: string;
}

export interface CallOptions {
  /** Bearer token; default the admin token; '' sends none. */
  token?: string;
  body?: unknown;
  raw?: string;
  headers?: Record<string, string>;
}

/** A JSON client of a server's API, authenticated with the admin token by default. */
export interface ApiClient {
  readonly url: string;
  readonly adminToken: string;
  readonly call: (method: string, pathAndQuery: string, options?: CallOptions) => Promise<Reply>;
}

export interface TestServer extends ApiClient {
  readonly server: RunningServer;
  readonly dataDir: string;
  close(): Promise<void>;
}

export interface Tenant {
  readonly subscriptionId: string;
  readonly enrollToken: string;
  readonly owner: string;
  readonly contributor: string;
  readonly reader: string;
}

export async function startTestServer(
  options: Partial<StartServerOptions> = {},
  dataDir?: string,
): Promise<TestServer> {
  const dir = dataDir ?? (await mkdtemp(path.join(tmpdir(), 'ww-server-')));
  const adminToken = options.adminToken ?? `wwadmin_test_${Math.random().toString(36).slice(2)}`;
  const server = await startServer({
    dataDir: dir,
    listen: '127.0.0.1:0',
    logger: false,
    ...options,
    adminToken,
  });
  const { call } = apiClient(server.url, adminToken);
  return {
    server,
    url: server.url,
    dataDir: dir,
    adminToken,
    call,
    async close() {
      await server.close();
      if (!dataDir) await rm(dir, { recursive: true, force: true });
    },
  };
}

/**
 * A client of a server at `url` (one started by startTestServer, or another process). With
 * `ca`, HTTPS requests trust that CA (PEM) and only it; without, requests go through fetch.
 */
export function apiClient(
  url: string,
  adminToken: string,
  options: { readonly ca?: Buffer } = {},
): ApiClient {
  const call: ApiClient['call'] = async (method, pathAndQuery, o = {}) => {
    const headers: Record<string, string> = { ...(o.headers ?? {}) };
    const token = o.token === undefined ? adminToken : o.token;
    if (token !== '') headers['authorization'] = `Bearer ${token}`;
    let body: string | undefined;
    if (o.raw !== undefined) body = o.raw;
    else if (o.body !== undefined) body = JSON.stringify(o.body);
    if (body !== undefined && !headers['content-type'])
      headers['content-type'] = 'application/json';
    const target = `${url}${pathAndQuery}`;
    const { status, responseHeaders, text } = options.ca
      ? await requestWithCa(target, method, headers, body, options.ca)
      : await fetch(target, { method, headers, ...(body === undefined ? {} : { body }) }).then(
          async (res) => ({
            status: res.status,
            responseHeaders: res.headers,
            text: await res.text(),
          }),
        );
    let parsed: unknown;
    try {
      parsed = text ? JSON.parse(text) : undefined;
    } catch {
      // Not JSON (an empty 202, say): tests look at `text`.
    }
    return { status, headers: responseHeaders, body: parsed, text };
  };
  return { url, adminToken, call };
}

/** One request over node:https trusting `ca` (fetch cannot be given a CA). */
function requestWithCa(
  target: string,
  method: string,
  headers: Record<string, string>,
  body: string | undefined,
  ca: Buffer,
): Promise<{ status: number; responseHeaders: Headers; text: string }> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest(
      target,
      {
        method,
        ca,
        headers: {
          ...headers,
          ...(body === undefined ? {} : { 'content-length': String(Buffer.byteLength(body)) }),
        },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('error', reject);
        res.on('end', () => {
          const responseHeaders = new Headers();
          for (const [name, value] of Object.entries(res.headers)) {
            if (value === undefined) continue;
            for (const v of Array.isArray(value) ? value : [value]) responseHeaders.append(name, v);
          }
          resolve({
            status: res.statusCode ?? 0,
            responseHeaders,
            text: Buffer.concat(chunks).toString('utf8'),
          });
        });
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

/** A subscription with an enrollment token and an API token per role. */
export async function createTenant(
  t: Pick<ApiClient, 'call'>,
  displayName = 'test',
): Promise<Tenant> {
  const sub = await t.call('POST', '/api/v1/subscriptions', { body: { displayName } });
  if (sub.status !== 201) throw new Error(`create subscription: ${sub.status} ${sub.text}`);
  const subscriptionId = (sub.body as { subscriptionId: string }).subscriptionId;
  const token = async (role: string) => {
    const r = await t.call('POST', `/api/v1/subscriptions/${subscriptionId}/tokens`, {
      body: { role },
    });
    if (r.status !== 201) throw new Error(`create token: ${r.status} ${r.text}`);
    return (r.body as { token: string }).token;
  };
  const enroll = await t.call('POST', `/api/v1/subscriptions/${subscriptionId}/enrollmentTokens`, {
    body: {},
  });
  if (enroll.status !== 201) throw new Error(`enrollment token: ${enroll.status} ${enroll.text}`);
  return {
    subscriptionId,
    enrollToken: (enroll.body as { token: string }).token,
    owner: await token('Owner'),
    contributor: await token('Contributor'),
    reader: await token('Reader'),
  };
}

/** What a synthetic agent of a tenant is told beyond its server, tenant and location. */
export type TenantAgentOptions = Omit<
  SyntheticAgentOptions,
  'serverUrl' | 'enrollToken' | 'subscriptionId' | 'location'
> & { readonly location?: string };

/**
 * A synthetic agent (test/lab/synthetic-agent.ts) of `tenant`, enrolling with its token on the
 * server at `t.url`, in westeurope unless `options` names another location. Not yet connected.
 */
export function syntheticAgentOf(
  t: Pick<ApiClient, 'url'>,
  tenant: Tenant,
  options: TenantAgentOptions,
): SyntheticAgent {
  return new SyntheticAgent({
    serverUrl: t.url,
    enrollToken: tenant.enrollToken,
    subscriptionId: tenant.subscriptionId,
    location: 'westeurope',
    ...options,
  });
}

/** A test server with one tenant and one connected synthetic agent of that tenant. */
export interface ServerWithAgent {
  readonly t: TestServer;
  readonly tenant: Tenant;
  readonly agent: SyntheticAgent;
}

/**
 * Starts a test server, creates a tenant (`tenantName`, default 'test') and connects one
 * synthetic agent of it: the setup most control-plane tests share. If a step fails, what was
 * started is closed before the error is thrown; otherwise the caller closes the agent, then the
 * server.
 */
export async function startServerWithAgent(options: {
  readonly server?: Partial<StartServerOptions>;
  readonly tenantName?: string;
  readonly agent: TenantAgentOptions;
}): Promise<ServerWithAgent> {
  const t = await startTestServer(options.server);
  let agent: SyntheticAgent | undefined;
  try {
    const tenant = await createTenant(t, options.tenantName);
    agent = syntheticAgentOf(t, tenant, options.agent);
    await agent.connect();
    return { t, tenant, agent };
  } catch (err) {
    await agent?.close();
    await t.close();
    throw err;
  }
}

/** A test server with one tenant and connected synthetic agents, instances of one scale set. */
export interface ServerWithScaleSet {
  readonly t: TestServer;
  readonly tenant: Tenant;
  /** Instance `i` is agents[i] (enrolled with instance id `String(i)`). */
  readonly agents: SyntheticAgent[];
}

/**
 * Starts a test server, creates a tenant and connects `instances` synthetic agents enrolled as
 * instances "0", "1", … of scale set `scaleSet` (in `agent.resourceGroup`). If a step fails,
 * what was started is closed before the error is thrown; otherwise the caller closes the agents,
 * then the server.
 */
export async function startServerWithScaleSet(options: {
  readonly server?: Partial<StartServerOptions>;
  readonly tenantName?: string;
  readonly scaleSet: string;
  readonly instances: number;
  readonly agent: Omit<TenantAgentOptions, 'name' | 'scaleSet' | 'instanceId'>;
}): Promise<ServerWithScaleSet> {
  const t = await startTestServer(options.server);
  const agents: SyntheticAgent[] = [];
  try {
    const tenant = await createTenant(t, options.tenantName);
    for (let i = 0; i < options.instances; i++) {
      const agent = instanceAgentOf(t, tenant, options.scaleSet, String(i), options.agent);
      agents.push(agent);
      await agent.connect();
    }
    return { t, tenant, agents };
  } catch (err) {
    for (const agent of agents) await agent.close();
    await t.close();
    throw err;
  }
}

/** A synthetic agent of `tenant` that enrolls as instance `instanceId` of `scaleSet`. */
export function instanceAgentOf(
  t: Pick<ApiClient, 'url'>,
  tenant: Tenant,
  scaleSet: string,
  instanceId: string,
  options: Omit<TenantAgentOptions, 'name' | 'scaleSet' | 'instanceId'>,
): SyntheticAgent {
  return syntheticAgentOf(t, tenant, {
    ...options,
    name: `${scaleSet}-${instanceId}`,
    scaleSet,
    instanceId,
  });
}

export function scaleSetId(subscriptionId: string, rg: string, name: string): string {
  return `/subscriptions/${subscriptionId}/resourceGroups/${rg}/providers/Microsoft.Compute/virtualMachineScaleSets/${name}`;
}

/** Registers the storage account `logs` in resource group `lab` for `tenant` (Contributor). */
export async function registerStorageAccount(
  t: ApiClient,
  tenant: Tenant,
  connectionString: string,
): Promise<void> {
  const registered = await t.call(
    'POST',
    `/api/v1/subscriptions/${tenant.subscriptionId}/storageAccounts`,
    {
      token: tenant.contributor,
      body: { name: 'logs', resourceGroup: 'lab', connectionString },
    },
  );
  if (registered.status !== 201) {
    throw new Error(
      `registering storage account logs answered ${registered.status}: ${registered.text}`,
    );
  }
}

export function watcherPath(subscriptionId: string, rg: string, name: string): string {
  return `/subscriptions/${subscriptionId}/resourceGroups/${rg}/providers/Microsoft.Network/networkWatchers/${name}`;
}

export function capturePath(subscriptionId: string, rg: string, nw: string, name: string): string {
  return `${watcherPath(subscriptionId, rg, nw)}/packetCaptures/${name}`;
}

export function vmId(subscriptionId: string, rg: string, name: string): string {
  return `/subscriptions/${subscriptionId}/resourceGroups/${rg}/providers/Microsoft.Compute/virtualMachines/${name}`;
}

/** Polls until the predicate holds; throws with the last value after the timeout. */
export async function waitFor<T>(
  read: () => Promise<T>,
  predicate: (value: T) => boolean,
  timeoutMs = 15_000,
  intervalMs = 100,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: T = await read();
  while (!predicate(last)) {
    if (Date.now() > deadline) {
      throw new Error(`condition not met in ${timeoutMs} ms; last value: ${JSON.stringify(last)}`);
    }
    await new Promise((r) => setTimeout(r, intervalMs));
    last = await read();
  }
  return last;
}
