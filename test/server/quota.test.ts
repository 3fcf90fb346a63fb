/**
 * The capture quota: at most N captures NotStarted or Running per (subscription, location),
 * checked and inserted in one transaction so that concurrent creates never exceed it. A server
 * with a quota of 20 and SYNTHETIC agents (test/lab/synthetic-agent.ts).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { SyntheticAgent } from '../lab/synthetic-agent.js';
import {
  API,
  capturePath,
  createTenant,
  startTestServer,
  syntheticAgentOf,
  vmId,
  waitFor,
  watcherPath,
  type Reply,
  type Tenant,
  type TestServer,
} from '../lab/control-plane.js';

const QUOTA = 20;
const RG = 'rg1';
const WEST = { rg: 'NetworkWatcherRG', nw: 'NetworkWatcher_westeurope', vm: 'vm1' };
const EAST = { rg: 'rg-east', nw: 'nw-east', vm: 'vm-east' };
type Place = typeof WEST;

let t: TestServer;
let tenant: Tenant;
let second: Tenant;
const agents: SyntheticAgent[] = [];
/** Names of the captures accepted in (tenant, westeurope), in no particular order. */
let accepted: string[] = [];

function agentFor(of: Tenant, name: string, location: string): SyntheticAgent {
  const agent = syntheticAgentOf(t, of, {
    resourceGroup: RG,
    name,
    location,
    progressIntervalMs: 3_600_000,
  });
  agents.push(agent);
  return agent;
}

const url = (of: Tenant, place: Place, name: string, suffix = '') =>
  `${capturePath(of.subscriptionId, place.rg, place.nw, name)}${suffix}?api-version=${API}`;

function create(of: Tenant, place: Place, name: string): Promise<Reply> {
  return t.call('PUT', url(of, place, name), {
    token: of.contributor,
    body: {
      properties: {
        target: vmId(of.subscriptionId, RG, place.vm),
        storageLocation: { filePath: `/var/captures/${name}.cap` },
      },
    },
  });
}

/** Creates all at once; returns the names accepted and the answers refused. */
async function createConcurrently(of: Tenant, place: Place, names: readonly string[]) {
  const replies = await Promise.all(names.map((name) => create(of, place, name)));
  const ok = names.filter((_, i) => replies[i]!.status === 201);
  const refused = replies.filter((r) => r.status === 429);
  const other = replies.filter((r) => r.status !== 201 && r.status !== 429);
  expect(other.map((r) => `${r.status} ${r.text}`)).toEqual([]);
  return { ok, refused, replies };
}

async function status(of: Tenant, place: Place, name: string): Promise<string> {
  const r = await t.call('POST', url(of, place, name, '/queryStatus'), { token: of.reader });
  expect(r.status).toBe(200);
  return r.body.packetCaptureStatus as string;
}

/** Every capture under a watcher, page by page. */
async function listAll(of: Tenant, place: Place): Promise<string[]> {
  const names: string[] = [];
  let next: string | undefined =
    `${watcherPath(of.subscriptionId, place.rg, place.nw)}/packetCaptures?api-version=${API}`;
  while (next) {
    const r = await t.call('GET', next, { token: of.reader });
    expect(r.status).toBe(200);
    names.push(...r.body.value.map((v: { name: string }) => v.name));
    next = r.body.nextLink ? (r.body.nextLink as string).slice(t.url.length) : undefined;
  }
  return names;
}

/** Statuses of every capture under a watcher, by name. */
async function statuses(of: Tenant, place: Place): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for (const name of await listAll(of, place)) out.set(name, await status(of, place, name));
  return out;
}

const active = (m: Map<string, string>) =>
  [...m.values()].filter((s) => s === 'NotStarted' || s === 'Running').length;

/** Active sessions of a (subscription, location) as the store holds them. */
async function storeActive(of: Tenant, location: string): Promise<number> {
  const sessions = await t.server.store.listSessionsByStatus(['NotStarted', 'Running']);
  return sessions.filter((s) => s.subscriptionId === of.subscriptionId && s.location === location)
    .length;
}

function expectQuotaError(r: Reply): void {
  expect(r.status).toBe(429);
  expect(r.body).toEqual({
    error: { code: 'PacketCaptureQuotaExceeded', message: expect.any(String) },
  });
  expect(r.body.error.message).toContain(String(QUOTA));
  expect(r.headers.get('x-ms-error-code')).toBe('PacketCaptureQuotaExceeded');
  expect(r.headers.get('content-type')).toMatch(/^application\/json/);
  expect(r.headers.get('azure-asyncoperation')).toBeNull();
}

const names = (prefix: string, n: number) =>
  Array.from({ length: n }, (_, i) => `${prefix}-${String(i).padStart(2, '0')}`);

beforeAll(async () => {
  t = await startTestServer({ quota: QUOTA });
  tenant = await createTenant(t, 'quota');
  second = await createTenant(t, 'quota-second');
  await agentFor(tenant, WEST.vm, 'westeurope').connect();
  await agentFor(second, WEST.vm, 'westeurope').connect();
});

afterAll(async () => {
  for (const agent of agents) await agent.close();
  await t?.close();
});

describe('capture quota per subscription and location', () => {
  it(`60 concurrent creates: exactly ${QUOTA} answer 201 and 40 answer 429 PacketCaptureQuotaExceeded`, async () => {
    const { ok, refused, replies } = await createConcurrently(tenant, WEST, names('q', 60));
    expect(ok).toHaveLength(QUOTA);
    expect(refused).toHaveLength(60 - QUOTA);
    for (const r of refused) expectQuotaError(r);
    for (const r of replies.filter((x) => x.status === 201)) {
      expect(r.headers.get('azure-asyncoperation')).toContain('/operations/');
    }
    accepted = ok;
  });

  it(`the store holds exactly ${QUOTA} active captures, and none of the refused ones`, async () => {
    const listed = await listAll(tenant, WEST);
    expect([...listed].sort()).toEqual([...accepted].sort());
    for (const name of names('q', 60).filter((n) => !accepted.includes(n))) {
      expect((await t.call('GET', url(tenant, WEST, name))).status).toBe(404);
    }
    expect(active(await statuses(tenant, WEST))).toBe(QUOTA);
    expect(await storeActive(tenant, 'westeurope')).toBe(QUOTA);
    // The agent starts them all; the count does not move.
    const running = await waitFor(
      () => statuses(tenant, WEST),
      (m) => [...m.values()].every((s) => s === 'Running'),
    );
    expect(running.size).toBe(QUOTA);
    const metrics = await t.call('GET', '/metrics');
    expect(metrics.status).toBe(200);
    expect(metrics.text).toMatch(
      new RegExp(`^wirewatch_sessions\\{status="Running"\\} ${QUOTA}$`, 'm'),
    );
  });

  it('at the quota, an identical re-PUT is still 200 and a new name is 429', async () => {
    const again = await create(tenant, WEST, accepted[0]!);
    expect(again.status).toBe(200);
    expectQuotaError(await create(tenant, WEST, 'one-too-many'));
  });

  it('another location of the same subscription has a quota of its own', async () => {
    const nw = await t.call(
      'PUT',
      `${watcherPath(tenant.subscriptionId, EAST.rg, EAST.nw)}?api-version=${API}`,
      { token: tenant.contributor, body: { location: 'eastus' } },
    );
    expect(nw.status).toBe(201);
    await agentFor(tenant, EAST.vm, 'eastus').connect();
    const { ok, refused } = await createConcurrently(tenant, EAST, names('east', QUOTA + 5));
    expect(ok).toHaveLength(QUOTA);
    expect(refused).toHaveLength(5);
    for (const r of refused) expectQuotaError(r);
    expect(await storeActive(tenant, 'eastus')).toBe(QUOTA);
    // The west is as full as it was.
    expectQuotaError(await create(tenant, WEST, 'still-full'));
    expect(await storeActive(tenant, 'westeurope')).toBe(QUOTA);
  });

  it('another subscription in the same location has a quota of its own', async () => {
    const { ok, refused } = await createConcurrently(second, WEST, names('other', QUOTA + 5));
    expect(ok).toHaveLength(QUOTA);
    expect(refused).toHaveLength(5);
    for (const r of refused) expectQuotaError(r);
    expect(await storeActive(second, 'westeurope')).toBe(QUOTA);
    expect(await storeActive(tenant, 'westeurope')).toBe(QUOTA);
  });

  it('stopping captures frees quota; Stopped ones do not count', async () => {
    const stopped = accepted.slice(0, 5);
    for (const name of stopped) {
      const r = await t.call('POST', url(tenant, WEST, name, '/stop'), {
        token: tenant.contributor,
      });
      expect(r.status).toBe(202);
    }
    for (const name of stopped) {
      await waitFor(
        () => status(tenant, WEST, name),
        (s) => s === 'Stopped',
      );
    }
    expect(await storeActive(tenant, 'westeurope')).toBe(QUOTA - 5);
    const { ok, refused } = await createConcurrently(tenant, WEST, names('after-stop', 10));
    expect(ok).toHaveLength(5);
    expect(refused).toHaveLength(5);
    for (const r of refused) expectQuotaError(r);
    accepted = [...accepted.slice(5), ...ok];

    // 25 captures under the watcher, 5 of them Stopped, and exactly the quota active.
    const all = await statuses(tenant, WEST);
    expect(all.size).toBe(QUOTA + 5);
    expect(stopped.map((n) => all.get(n))).toEqual(Array(5).fill('Stopped'));
    expect(active(all)).toBe(QUOTA);
    expect(await storeActive(tenant, 'westeurope')).toBe(QUOTA);
  });

  it('captures that end on their own, or are deleted, free quota too', async () => {
    const agent = agents[0]!;
    const ending = accepted.slice(0, 2);
    for (const name of ending) {
      const [sessionId] = [...agent.sessions.entries()].find(([, s]) =>
        s.assignment.resourceId.endsWith(`/packetCaptures/${name}`),
      )!;
      agent.finish(sessionId, 'TimeExceeded');
    }
    for (const name of ending) {
      await waitFor(
        () => status(tenant, WEST, name),
        (s) => s === 'Stopped',
      );
    }
    const doomed = accepted[2]!;
    const del = await t.call('DELETE', url(tenant, WEST, doomed), { token: tenant.contributor });
    expect(del.status).toBe(202);
    await waitFor(
      () => t.call('GET', url(tenant, WEST, doomed)),
      (r) => r.status === 404,
    );
    expect(await storeActive(tenant, 'westeurope')).toBe(QUOTA - 3);
    const { ok, refused } = await createConcurrently(tenant, WEST, names('after-end', 6));
    expect(ok).toHaveLength(3);
    expect(refused).toHaveLength(3);
    expect(await storeActive(tenant, 'westeurope')).toBe(QUOTA);
  });
});
