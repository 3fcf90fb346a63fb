/**
 * The world the security suite attacks: a real server (loopback, real SQLite) with two tenants,
 * each with a SYNTHETIC agent on a VM, a running capture, a network watcher tagged with a secret
 * marker, and a token per role. Markers are random per run, so "the other tenant's data is not in
 * this answer" is a plain substring check.
 *
 * Also: the route list the server really registers (from `printRoutes`), so that a suite built
 * on a table of routes fails when the server grows a route the table does not know.
 */
import { randomBytes } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import { expect } from 'vitest';
import { ENROLL_PATH } from '../../src/model/channel.js';
import { SyntheticAgent } from '../lab/synthetic-agent.js';
import {
  API,
  capturePath,
  createTenant,
  vmId,
  waitFor,
  watcherPath,
  type Tenant,
  type TestServer,
} from '../lab/control-plane.js';

export const COMPUTE_API = '2024-07-01';
export const STORAGE_API = '2023-05-01';
export const RG = 'rg1';
export const VM = 'vm1';
export const LOCATION = 'westeurope';
export const NW_RG = 'NetworkWatcherRG';
export const NW = 'NetworkWatcher_westeurope';
/** The capture each tenant has running throughout. */
export const MAIN = 'pc-main';

export const net = (p: string): string => `${p}?api-version=${API}`;
export const compute = (p: string): string => `${p}?api-version=${COMPUTE_API}`;
export const storage = (p: string): string => `${p}?api-version=${STORAGE_API}`;
export const nwPath = (sub: string): string => watcherPath(sub, NW_RG, NW);
export const pcPath = (sub: string, name: string): string => capturePath(sub, NW_RG, NW, name);
export const opBase = (sub: string): string =>
  `/subscriptions/${sub}/providers/Microsoft.Network/locations/${LOCATION}`;

/** A capture body that the tenant's VM accepts; `file` becomes /var/captures/{file}.cap. */
export function captureBody(sub: string, file: string) {
  return {
    properties: {
      target: vmId(sub, RG, VM),
      storageLocation: { filePath: `/var/captures/${file}.cap` },
    },
  };
}

export interface Side {
  readonly tenant: Tenant;
  readonly sub: string;
  readonly agent: SyntheticAgent;
  /** In this tenant's watcher tags and MAIN's file path: must never reach another tenant. */
  readonly marker: string;
  /** The create operation of MAIN. */
  readonly opId: string;
}

/** A tenant with a connected synthetic agent, its watcher tagged and MAIN running. */
export async function createSide(t: TestServer, label: string): Promise<Side> {
  const tenant = await createTenant(t, `tenant ${label}`);
  const sub = tenant.subscriptionId;
  const marker = `mk${randomBytes(8).toString('hex')}`;
  const agent = new SyntheticAgent({
    serverUrl: t.url,
    enrollToken: tenant.enrollToken,
    subscriptionId: sub,
    resourceGroup: RG,
    name: VM,
    location: LOCATION,
    // No progress: the fixtures stay byte for byte the same unless someone touches them.
    progressIntervalMs: 3_600_000,
  });
  await agent.connect();
  const tagged = await t.call('PUT', net(nwPath(sub)), {
    body: { location: LOCATION, tags: { secret: marker } },
  });
  expect(tagged.status, tagged.text).toBe(200);
  const created = await t.call('PUT', net(pcPath(sub, MAIN)), {
    token: tenant.contributor,
    body: captureBody(sub, marker),
  });
  expect(created.status, created.text).toBe(201);
  const opId = /\/operations\/([^?]+)/.exec(created.headers.get('azure-asyncoperation') ?? '')?.[1];
  expect(opId).toBeDefined();
  await waitFor(
    () => t.call('POST', net(`${pcPath(sub, MAIN)}/queryStatus`)),
    (r) =>
      (r.body as { packetCaptureStatus?: string } | undefined)?.packetCaptureStatus === 'Running',
  );
  await waitFor(
    () => t.call('GET', net(`${opBase(sub)}/operations/${opId!}`)),
    (r) => (r.body as { status?: string } | undefined)?.status === 'Succeeded',
  );
  return { tenant, sub, agent, marker, opId: opId! };
}

/**
 * Enrolls a VM (no channel) with the side's enrollment token; its name and credential. With
 * `{ scaleSet }` instead of a name, an instance of that scale set (the server picks its id).
 */
export async function enrollVm(
  t: TestServer,
  s: Side,
  host: string | { readonly scaleSet: string },
): Promise<{ name: string; credential: string; instanceId?: string }> {
  const r = await t.call('POST', ENROLL_PATH, {
    token: s.tenant.enrollToken,
    body: {
      subscriptionId: s.sub,
      resourceGroup: RG,
      ...(typeof host === 'string' ? { name: host } : host),
      location: LOCATION,
      hostname: typeof host === 'string' ? host : host.scaleSet,
      captureRoot: '/var/captures',
    },
  });
  expect(r.status, r.text).toBe(201);
  return r.body as { name: string; credential: string; instanceId?: string };
}

export interface RegisteredRoute {
  readonly method: string;
  /** As registered, static parts lower-cased (the router is case-insensitive). */
  readonly url: string;
}

/**
 * Every (method, url) the app answers, read from `printRoutes` (its tree, each line a path
 * suffix and its methods, nesting shown by 4-character indents).
 */
export function registeredRoutes(app: FastifyInstance): RegisteredRoute[] {
  const text = app.printRoutes({ commonPrefix: false });
  const prefixes: string[] = [];
  const out: RegisteredRoute[] = [];
  for (const line of text.split('\n')) {
    if (line.trim() === '') continue;
    const m = /^((?:[│ ] {3})*)[├└]── (\S+)(?: \(([^)]*)\))?$/.exec(line);
    if (!m) throw new Error(`printRoutes line not understood: ${JSON.stringify(line)}`);
    const depth = m[1]!.length / 4;
    const url = `${prefixes[depth - 1] ?? ''}${m[2]!}`;
    prefixes[depth] = url;
    prefixes.length = depth + 1;
    for (const method of (m[3] ?? '').split(',').map((x) => x.trim())) {
      if (method) out.push({ method, url: url.toLowerCase() });
    }
  }
  return out;
}

/** A route pattern as a regular expression over a request path (no query). */
export function routeRegExp(pattern: string): RegExp {
  const source = pattern
    .split('/')
    .map((part) => (part.startsWith(':') ? '[^/]+' : part.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')))
    .join('/');
  return new RegExp(`^${source}/?$`, 'i');
}
