/**
 * Tenant isolation, route by route and principal by principal. Two tenants A and B, each with a
 * SYNTHETIC agent (test/lab/synthetic-agent.ts) on a VM, a running capture and a token per
 * role; plus the admin token and credentials that are not API tokens at all. Every route is in
 * the table below with the least role it needs, and every (principal, route) pair is asked:
 *
 * - the other tenant's resources answer 404 exactly as a subscription that does not exist;
 * - too weak a role in one's own subscription answers 403 AuthorizationFailed;
 * - enough role answers 2xx (on disposable resources, so the fixtures survive);
 * - anything but a valid API token or the admin token answers 401.
 *
 * Refused requests go at the fixtures themselves, and a check after them shows nothing changed.
 */
import { randomUUID } from 'node:crypto';
import WebSocket from 'ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CHANNEL_PATH, ENROLL_PATH } from '../../src/model/channel.js';
import { SyntheticAgent } from '../lab/synthetic-agent.js';
import {
  API,
  capturePath,
  createTenant,
  startTestServer,
  vmId,
  waitFor,
  watcherPath,
  type Reply,
  type Tenant,
  type TestServer,
} from '../lab/control-plane.js';

const COMPUTE_API = '2024-07-01';
const RG = 'rg1';
const VM = 'vm1';
const LOCATION = 'westeurope';
const NW_RG = 'NetworkWatcherRG';
const NW = 'NetworkWatcher_westeurope';
/** The capture each tenant has running throughout. */
const MAIN = 'pc-main';

type Role = 'Reader' | 'Contributor' | 'Owner';
type Need = Role | 'Admin' | 'Any';
type SideName = 'A' | 'B';

interface Side {
  readonly name: SideName;
  readonly tenant: Tenant;
  readonly sub: string;
  readonly agent: SyntheticAgent;
  /** The create operation of MAIN. */
  readonly opId: string;
  /** An Owner token of this tenant: the target of refused revocations. */
  readonly spare: { readonly id: string; readonly token: string };
  /** An enrollment token of this tenant: the target of refused revocations. */
  readonly spareEnrollment: { readonly id: string; readonly token: string };
}

let t: TestServer;
const sides = new Map<SideName, Side>();
const side = (name: SideName): Side => sides.get(name)!;
const other = (name: SideName): SideName => (name === 'A' ? 'B' : 'A');
/** Tokens that are not API tokens, or no longer are. */
const invalid = new Map<string, string>();
let serial = 0;
const next = () => ++serial;

const net = (p: string) => `${p}?api-version=${API}`;
const compute = (p: string) => `${p}?api-version=${COMPUTE_API}`;
const nwPath = (sub: string) => watcherPath(sub, NW_RG, NW);
const pcPath = (sub: string, name: string) => capturePath(sub, NW_RG, NW, name);
const opBase = (sub: string) =>
  `/subscriptions/${sub}/providers/Microsoft.Network/locations/${LOCATION}`;
const captureBody = (sub: string, file: string) => ({
  properties: {
    target: vmId(sub, RG, VM),
    storageLocation: { filePath: `/var/captures/${file}.cap` },
  },
});

// ---- the route table ------------------------------------------------------------------------

interface Request {
  readonly path: string;
  readonly body?: unknown;
}

interface Route {
  readonly name: string;
  readonly method: 'GET' | 'PUT' | 'POST' | 'DELETE';
  /** The least a principal needs: a role in the subscription, the admin token, or any token. */
  readonly need: Need;
  /** false for the routes outside any subscription. */
  readonly scoped: boolean;
  /** The request on a side's real fixtures, with `sub` in the path (the side's, or made up). */
  readonly real: (s: Side, sub: string) => Request;
  /** A request that may succeed without harming the fixtures; default `real`. */
  readonly fresh?: (s: Side) => Request | Promise<Request>;
  /** What success answers. */
  readonly ok: readonly number[];
}

const routes: readonly Route[] = [
  {
    name: 'PUT networkWatcher',
    method: 'PUT',
    need: 'Contributor',
    scoped: true,
    real: (_s, sub) => ({
      path: net(nwPath(sub)),
      body: { location: LOCATION, tags: { intruder: 'yes' } },
    }),
    fresh: (s) => {
      const n = next();
      return {
        path: net(watcherPath(s.sub, 'rg-nw', `nw-put-${n}`)),
        body: { location: `put${n}` },
      };
    },
    ok: [201],
  },
  {
    name: 'GET networkWatcher',
    method: 'GET',
    need: 'Reader',
    scoped: true,
    real: (_s, sub) => ({ path: net(nwPath(sub)) }),
    ok: [200],
  },
  {
    name: 'DELETE networkWatcher',
    method: 'DELETE',
    need: 'Contributor',
    scoped: true,
    real: (_s, sub) => ({ path: net(nwPath(sub)) }),
    fresh: async (s) => ({ path: net(await newWatcher(s)) }),
    ok: [202],
  },
  {
    name: 'GET networkWatchers of a resource group',
    method: 'GET',
    need: 'Reader',
    scoped: true,
    real: (_s, sub) => ({
      path: net(
        `/subscriptions/${sub}/resourceGroups/${NW_RG}/providers/Microsoft.Network/networkWatchers`,
      ),
    }),
    ok: [200],
  },
  {
    name: 'GET networkWatchers of a subscription',
    method: 'GET',
    need: 'Reader',
    scoped: true,
    real: (_s, sub) => ({
      path: net(`/subscriptions/${sub}/providers/Microsoft.Network/networkWatchers`),
    }),
    ok: [200],
  },
  {
    name: 'PUT packetCapture',
    method: 'PUT',
    need: 'Contributor',
    scoped: true,
    real: (_s, sub) => ({
      path: net(pcPath(sub, 'pc-intruder')),
      body: captureBody(sub, 'intruder'),
    }),
    fresh: (s) => {
      const name = `put-${next()}`;
      return { path: net(pcPath(s.sub, name)), body: captureBody(s.sub, name) };
    },
    ok: [201],
  },
  {
    name: 'GET packetCapture',
    method: 'GET',
    need: 'Reader',
    scoped: true,
    real: (_s, sub) => ({ path: net(pcPath(sub, MAIN)) }),
    ok: [200],
  },
  {
    name: 'GET packetCaptures (list)',
    method: 'GET',
    need: 'Reader',
    scoped: true,
    real: (_s, sub) => ({ path: net(`${nwPath(sub)}/packetCaptures`) }),
    ok: [200],
  },
  {
    name: 'DELETE packetCapture',
    method: 'DELETE',
    need: 'Contributor',
    scoped: true,
    real: (_s, sub) => ({ path: net(pcPath(sub, MAIN)) }),
    fresh: async (s) => ({ path: net(pcPath(s.sub, await newCapture(s))) }),
    ok: [202, 204],
  },
  {
    name: 'POST packetCapture/stop',
    method: 'POST',
    need: 'Contributor',
    scoped: true,
    real: (_s, sub) => ({ path: net(`${pcPath(sub, MAIN)}/stop`) }),
    fresh: async (s) => ({ path: net(`${pcPath(s.sub, await newCapture(s))}/stop`) }),
    ok: [200, 202],
  },
  {
    name: 'POST packetCapture/queryStatus',
    method: 'POST',
    need: 'Reader',
    scoped: true,
    real: (_s, sub) => ({ path: net(`${pcPath(sub, MAIN)}/queryStatus`) }),
    ok: [200],
  },
  {
    // MAIN is running, so an allowed caller learns exactly that (409); the route's tenancy is
    // what this table checks. Downloads themselves: test/server/capture-content.test.ts.
    name: 'GET packetCapture/content',
    method: 'GET',
    need: 'Reader',
    scoped: true,
    real: (_s, sub) => ({ path: net(`${pcPath(sub, MAIN)}/content`) }),
    ok: [409],
  },
  {
    // A live stream is a WebSocket; a plain GET from an allowed caller passes every check and
    // is then told to upgrade (400). Streams themselves: test/cli-stream.test.ts.
    name: 'GET packetCapture/stream',
    method: 'GET',
    need: 'Reader',
    scoped: true,
    real: (_s, sub) => ({ path: net(`${pcPath(sub, MAIN)}/stream`) }),
    ok: [400],
  },
  {
    name: 'GET operations/{id}',
    method: 'GET',
    need: 'Reader',
    scoped: true,
    real: (s, sub) => ({ path: net(`${opBase(sub)}/operations/${s.opId}`) }),
    ok: [200],
  },
  {
    name: 'GET operationResults/{id}',
    method: 'GET',
    need: 'Reader',
    scoped: true,
    real: (s, sub) => ({ path: net(`${opBase(sub)}/operationResults/${s.opId}`) }),
    ok: [200],
  },
  {
    name: 'GET virtualMachine',
    method: 'GET',
    need: 'Reader',
    scoped: true,
    real: (_s, sub) => ({ path: compute(vmId(sub, RG, VM)) }),
    ok: [200],
  },
  {
    name: 'GET virtualMachines of a resource group',
    method: 'GET',
    need: 'Reader',
    scoped: true,
    real: (_s, sub) => ({
      path: compute(
        `/subscriptions/${sub}/resourceGroups/${RG}/providers/Microsoft.Compute/virtualMachines`,
      ),
    }),
    ok: [200],
  },
  {
    name: 'GET virtualMachines of a subscription',
    method: 'GET',
    need: 'Reader',
    scoped: true,
    real: (_s, sub) => ({
      path: compute(`/subscriptions/${sub}/providers/Microsoft.Compute/virtualMachines`),
    }),
    ok: [200],
  },
  {
    name: 'DELETE virtualMachine',
    method: 'DELETE',
    need: 'Contributor',
    scoped: true,
    real: (_s, sub) => ({ path: compute(vmId(sub, RG, VM)) }),
    fresh: async (s) => ({ path: compute(vmId(s.sub, RG, await newVm(s))) }),
    ok: [200],
  },
  {
    name: 'POST /api/v1/subscriptions',
    method: 'POST',
    need: 'Admin',
    scoped: false,
    real: () => ({ path: '/api/v1/subscriptions', body: { displayName: 'intruder' } }),
    ok: [201],
  },
  {
    name: 'GET /api/v1/subscriptions',
    method: 'GET',
    need: 'Any',
    scoped: false,
    real: () => ({ path: '/api/v1/subscriptions' }),
    ok: [200],
  },
  {
    name: 'POST tokens',
    method: 'POST',
    need: 'Owner',
    scoped: true,
    real: (_s, sub) => ({ path: `/api/v1/subscriptions/${sub}/tokens`, body: { role: 'Owner' } }),
    ok: [201],
  },
  {
    name: 'DELETE tokens/{id}',
    method: 'DELETE',
    need: 'Owner',
    scoped: true,
    real: (s, sub) => ({ path: `/api/v1/subscriptions/${sub}/tokens/${s.spare.id}` }),
    fresh: async (s) => ({
      path: `/api/v1/subscriptions/${s.sub}/tokens/${(await newToken(s, 'Reader')).id}`,
    }),
    ok: [204],
  },
  {
    name: 'POST enrollmentTokens',
    method: 'POST',
    need: 'Owner',
    scoped: true,
    real: (_s, sub) => ({ path: `/api/v1/subscriptions/${sub}/enrollmentTokens`, body: {} }),
    ok: [201],
  },
  {
    name: 'GET enrollmentTokens',
    method: 'GET',
    need: 'Owner',
    scoped: true,
    real: (_s, sub) => ({ path: `/api/v1/subscriptions/${sub}/enrollmentTokens` }),
    ok: [200],
  },
  {
    name: 'DELETE enrollmentTokens/{id}',
    method: 'DELETE',
    need: 'Owner',
    scoped: true,
    real: (s, sub) => ({
      path: `/api/v1/subscriptions/${sub}/enrollmentTokens/${s.spareEnrollment.id}`,
    }),
    fresh: async (s) => ({
      path: `/api/v1/subscriptions/${s.sub}/enrollmentTokens/${(await newEnrollmentToken(s)).id}`,
    }),
    ok: [204],
  },
  {
    name: 'GET agents',
    method: 'GET',
    need: 'Reader',
    scoped: true,
    real: (_s, sub) => ({ path: `/api/v1/subscriptions/${sub}/agents` }),
    ok: [200],
  },
  {
    name: 'GET audit',
    method: 'GET',
    need: 'Owner',
    scoped: true,
    real: (_s, sub) => ({ path: `/api/v1/subscriptions/${sub}/audit` }),
    ok: [200],
  },
  {
    name: 'GET /metrics',
    method: 'GET',
    need: 'Admin',
    scoped: false,
    real: () => ({ path: '/metrics' }),
    ok: [200],
  },
];

// ---- principals ---------------------------------------------------------------------------

type Principal =
  | { readonly kind: 'admin'; readonly label: string }
  | { readonly kind: 'token'; readonly label: string; readonly side: SideName; readonly role: Role }
  | { readonly kind: 'invalid'; readonly label: string };

const roles: readonly Role[] = ['Reader', 'Contributor', 'Owner'];
const tokenPrincipals = (['A', 'B'] as const).flatMap((s) =>
  roles.map((role) => ({ kind: 'token' as const, label: `${s}'s ${role}`, side: s, role })),
);
const admin: Principal = { kind: 'admin', label: 'the admin token' };
const invalidPrincipals: Principal[] = [
  'no token',
  'a garbage token',
  'a revoked token',
  "an agent's credential",
  'an enrollment token',
].map((label) => ({ kind: 'invalid', label }));

const rank: Record<Need, number> = { Any: 0, Reader: 1, Contributor: 2, Owner: 3, Admin: 4 };

function tokenOf(p: Principal): string {
  switch (p.kind) {
    case 'admin':
      return t.adminToken;
    case 'invalid':
      return invalid.get(p.label)!;
    case 'token': {
      const tenant = side(p.side).tenant;
      return p.role === 'Reader'
        ? tenant.reader
        : p.role === 'Contributor'
          ? tenant.contributor
          : tenant.owner;
    }
  }
}

function send(p: Principal, route: Route, request: Request): Promise<Reply> {
  return t.call(route.method, request.path, {
    token: tokenOf(p),
    ...(request.body === undefined ? {} : { body: request.body }),
  });
}

/** The text of an answer with the subscription ids in it replaced, for comparisons. */
function normalized(r: Reply, ...subs: string[]): string {
  let text = r.text;
  for (const sub of subs) text = text.replace(new RegExp(sub, 'gi'), '{subscriptionId}');
  return text;
}

function shape(r: Reply) {
  return {
    status: r.status,
    errorCode: r.headers.get('x-ms-error-code'),
    contentType: r.headers.get('content-type'),
  };
}

// ---- fixtures -----------------------------------------------------------------------------

async function newToken(s: { sub: string }, role: Role): Promise<{ id: string; token: string }> {
  const r = await t.call('POST', `/api/v1/subscriptions/${s.sub}/tokens`, { body: { role } });
  expect(r.status).toBe(201);
  return { id: r.body.tokenId, token: r.body.token };
}

async function newEnrollmentToken(s: { sub: string }): Promise<{ id: string; token: string }> {
  const r = await t.call('POST', `/api/v1/subscriptions/${s.sub}/enrollmentTokens`, { body: {} });
  expect(r.status).toBe(201);
  return { id: r.body.tokenId, token: r.body.token };
}

async function newCapture(s: Side): Promise<string> {
  const name = `fresh-${next()}`;
  const r = await t.call('PUT', net(pcPath(s.sub, name)), { body: captureBody(s.sub, name) });
  expect(r.status).toBe(201);
  return name;
}

async function newWatcher(s: Side): Promise<string> {
  const n = next();
  const path = watcherPath(s.sub, 'rg-nw', `nw-del-${n}`);
  const r = await t.call('PUT', net(path), { body: { location: `del${n}` } });
  expect(r.status).toBe(201);
  return path;
}

/** Enrolls a VM (no channel) with the tenant's enrollment token; returns its name. */
async function newVm(s: Side): Promise<string> {
  const name = `vm-fresh-${next()}`;
  const r = await t.call('POST', ENROLL_PATH, {
    token: s.tenant.enrollToken,
    body: {
      subscriptionId: s.sub,
      resourceGroup: RG,
      name,
      location: LOCATION,
      hostname: name,
      captureRoot: '/var/captures',
    },
  });
  expect(r.status).toBe(201);
  return name;
}

async function queryStatus(s: Side, name: string) {
  const r = await t.call('POST', net(`${pcPath(s.sub, name)}/queryStatus`));
  expect(r.status).toBe(200);
  return r.body;
}

async function setUpSide(name: SideName): Promise<Side> {
  const tenant = await createTenant(t, `tenant ${name}`);
  const agent = new SyntheticAgent({
    serverUrl: t.url,
    enrollToken: tenant.enrollToken,
    subscriptionId: tenant.subscriptionId,
    resourceGroup: RG,
    name: VM,
    location: LOCATION,
    // No progress during the test: the fixtures stay byte-for-byte the same unless touched.
    progressIntervalMs: 3_600_000,
  });
  await agent.connect();
  const sub = tenant.subscriptionId;
  const created = await t.call('PUT', net(pcPath(sub, MAIN)), {
    token: tenant.contributor,
    body: captureBody(sub, MAIN),
  });
  expect(created.status).toBe(201);
  const opId = /\/operations\/([^?]+)/.exec(created.headers.get('azure-asyncoperation') ?? '')?.[1];
  expect(opId).toBeDefined();
  const s: Side = {
    name,
    tenant,
    sub,
    agent,
    opId: opId!,
    spare: await newToken({ sub }, 'Owner'),
    spareEnrollment: await newEnrollmentToken({ sub }),
  };
  await waitFor(
    () => queryStatus(s, MAIN),
    (x) => x.packetCaptureStatus === 'Running',
  );
  await waitFor(
    () => t.call('GET', net(`${opBase(sub)}/operations/${s.opId}`)),
    (x) => x.body?.status === 'Succeeded',
  );
  return s;
}

/** The session id of MAIN on the side's agent. */
function mainSessionOf(s: Side): string {
  const entry = [...s.agent.sessions.entries()].find(([, x]) =>
    x.assignment.resourceId.endsWith(`/${MAIN}`),
  );
  expect(entry).toBeDefined();
  return entry![0];
}

/** Everything a refused request could have changed, read with the admin token. */
async function snapshot(s: Side) {
  const read = async (method: string, path: string) => {
    const r = await t.call(method, path);
    return { status: r.status, body: r.body };
  };
  const audit = await read('GET', `/api/v1/subscriptions/${s.sub}/audit?$top=1000`);
  const agents = await read('GET', `/api/v1/subscriptions/${s.sub}/agents`);
  return {
    capture: await read('GET', net(pcPath(s.sub, MAIN))),
    status: await read('POST', net(`${pcPath(s.sub, MAIN)}/queryStatus`)),
    captures: await read('GET', net(`${nwPath(s.sub)}/packetCaptures`)),
    watcher: await read('GET', net(nwPath(s.sub))),
    watchers: await read(
      'GET',
      net(`/subscriptions/${s.sub}/providers/Microsoft.Network/networkWatchers`),
    ),
    // lastSeen of a connected agent reads "now"; the rest must not move.
    agents: (agents.body.value as Record<string, unknown>[]).map(
      ({ lastSeen: _lastSeen, ...rest }) => rest,
    ),
    audit,
    enrollmentTokens: await read('GET', `/api/v1/subscriptions/${s.sub}/enrollmentTokens`),
    spareTokenWorks: (await t.call('GET', '/api/v1/subscriptions', { token: s.spare.token }))
      .status,
    stopsToAgent: s.agent.received.filter(
      (m) => (m.type === 'stop' && m.sessionId === mainSessionOf(s)) || m.type === 'deregistered',
    ).length,
  };
}

let before: Record<SideName, Awaited<ReturnType<typeof snapshot>>>;
let subscriptionsBefore: unknown;

beforeAll(async () => {
  t = await startTestServer();
  for (const name of ['A', 'B'] as const) sides.set(name, await setUpSide(name));
  const a = side('A');

  // A token revoked by its tenant's Owner stops working at once.
  const revoked = await newToken(a, 'Owner');
  expect((await t.call('GET', '/api/v1/subscriptions', { token: revoked.token })).status).toBe(200);
  const revoke = await t.call('DELETE', `/api/v1/subscriptions/${a.sub}/tokens/${revoked.id}`, {
    token: a.tenant.owner,
  });
  expect(revoke.status).toBe(204);
  invalid.set('no token', '');
  invalid.set('a garbage token', `wwt_${randomUUID().replace(/-/g, '')}garbage`);
  invalid.set('a revoked token', revoked.token);
  invalid.set("an agent's credential", a.agent.credential!);
  invalid.set('an enrollment token', a.tenant.enrollToken);

  before = { A: await snapshot(a), B: await snapshot(side('B')) };
  subscriptionsBefore = (await t.call('GET', '/api/v1/subscriptions')).body;
});

afterAll(async () => {
  for (const s of sides.values()) await s.agent.close();
  await t?.close();
});

// ---- refusals -----------------------------------------------------------------------------

describe('refused: credentials that are not API tokens', () => {
  for (const p of invalidPrincipals) {
    for (const route of routes) {
      it(`${p.label}: ${route.name} → 401 AuthenticationFailed`, async () => {
        const a = side('A');
        const r = await send(p, route, route.real(a, a.sub));
        expect(r.status).toBe(401);
        expect(r.body).toEqual({
          error: { code: 'AuthenticationFailed', message: expect.any(String) },
        });
        expect(r.headers.get('x-ms-error-code')).toBe('AuthenticationFailed');
      });
    }
  }
});

describe("refused: another tenant's resources read as a subscription that does not exist", () => {
  for (const p of tokenPrincipals) {
    for (const route of routes.filter((x) => x.scoped)) {
      it(`${p.label}: ${route.name} of the other tenant → 404`, async () => {
        const victim = side(other(p.side));
        const foreign = await send(p, route, route.real(victim, victim.sub));
        const madeUp = randomUUID();
        const missing = await send(p, route, route.real(victim, madeUp));
        expect(foreign.status).toBe(404);
        expect(foreign.body.error.code).toBe('SubscriptionNotFound');
        expect(shape(foreign)).toEqual(shape(missing));
        expect(normalized(foreign, victim.sub)).toBe(normalized(missing, madeUp));
      });
    }
  }

  for (const route of routes.filter((x) => x.scoped)) {
    it(`the admin token: ${route.name} of a subscription that does not exist → the same 404`, async () => {
      const a = side('A');
      const madeUp = randomUUID();
      const r = await send(admin, route, route.real(a, madeUp));
      const asTenant = await send(tokenPrincipals[0]!, route, route.real(a, madeUp));
      expect(r.status).toBe(404);
      expect(r.body.error.code).toBe('SubscriptionNotFound');
      expect(shape(r)).toEqual(shape(asTenant));
      expect(normalized(r, madeUp)).toBe(normalized(asTenant, madeUp));
    });
  }
});

describe('refused: too weak a role → 403 AuthorizationFailed', () => {
  for (const p of tokenPrincipals) {
    for (const route of routes.filter((x) => rank[x.need] > rank[p.role])) {
      it(`${p.label}: ${route.name} (needs ${route.need}) → 403`, async () => {
        const own = side(p.side);
        const r = await send(p, route, route.real(own, own.sub));
        expect(r.status).toBe(403);
        expect(r.body).toEqual({
          error: { code: 'AuthorizationFailed', message: expect.any(String) },
        });
        expect(r.headers.get('x-ms-error-code')).toBe('AuthorizationFailed');
      });
    }
  }
});

describe('refused requests changed nothing', () => {
  for (const name of ['A', 'B'] as const) {
    it(`${name}'s capture, watcher, VM, tokens and audit log are as they were`, async () => {
      const now = await snapshot(side(name));
      expect(now).toEqual(before[name]);
      expect(now.capture.status).toBe(200);
      expect(now.status.body).toMatchObject({
        packetCaptureStatus: 'Running',
        agentConnectionState: 'Connected',
      });
      expect(now.captures.body.value.map((v: { name: string }) => v.name)).toEqual([MAIN]);
      expect(now.watcher.body.tags).toEqual({});
      expect(now.spareTokenWorks).toBe(200);
      expect(now.stopsToAgent).toBe(0);
    });
  }

  it('no subscription was created', async () => {
    expect((await t.call('GET', '/api/v1/subscriptions')).body).toEqual(subscriptionsBefore);
  });
});

// ---- allowed ------------------------------------------------------------------------------

describe('allowed: enough role → 2xx, and nothing of the other tenant in the answer', () => {
  for (const p of tokenPrincipals) {
    for (const route of routes.filter((x) => rank[x.need] <= rank[p.role])) {
      it(`${p.label}: ${route.name} → ${route.ok.join('/')}`, async () => {
        const own = side(p.side);
        const request = route.fresh ? await route.fresh(own) : route.real(own, own.sub);
        const r = await send(p, route, request);
        expect(route.ok, `${r.status} ${r.text}`).toContain(r.status);
        const foreign = side(other(p.side)).sub;
        expect(r.text).not.toContain(foreign);
        for (const [, value] of r.headers) expect(value).not.toContain(foreign);
        if (route.name === 'GET /api/v1/subscriptions') {
          expect(r.body.value.map((v: { subscriptionId: string }) => v.subscriptionId)).toEqual([
            own.sub,
          ]);
        }
      });
    }
  }

  for (const route of routes) {
    for (const name of route.scoped ? (['A', 'B'] as const) : (['A'] as const)) {
      it(`the admin token: ${route.name}${route.scoped ? ` of ${name}` : ''} → ${route.ok.join('/')}`, async () => {
        const s = side(name);
        const request = route.fresh ? await route.fresh(s) : route.real(s, s.sub);
        const r = await send(admin, route, request);
        expect(route.ok, `${r.status} ${r.text}`).toContain(r.status);
        if (route.name === 'GET /api/v1/subscriptions') {
          const ids = r.body.value.map((v: { subscriptionId: string }) => v.subscriptionId);
          expect(ids).toEqual(expect.arrayContaining([side('A').sub, side('B').sub]));
        }
      });
    }
  }
});

describe('allowed: subscription ids compare case-insensitively', () => {
  for (const route of routes.filter((x) => x.scoped && x.method === 'GET')) {
    it(`A's Owner: ${route.name} with the subscription id in capitals → the same answer`, async () => {
      const a = side('A');
      const owner = tokenPrincipals[2]!;
      const upper = await send(owner, route, route.real(a, a.sub.toUpperCase()));
      expect(upper.status, upper.text).toBe(route.ok[0]);
      const lower = await send(owner, route, route.real(a, a.sub));
      // A connected agent's lastSeen reads "now"; a nextLink repeats the path as asked.
      const strip = (text: string) => text.replace(/"(lastSeen|nextLink)":"[^"]*"/g, '"$1":…');
      expect(strip(upper.text)).toBe(strip(lower.text));
    });
  }
});

// ---- the edges between tenants ------------------------------------------------------------

describe('between tenants', () => {
  it("an operation of B read through A's own subscription is OperationNotFound, like a made-up id", async () => {
    const a = side('A');
    const b = side('B');
    for (const kind of ['operations', 'operationResults']) {
      const foreign = await t.call('GET', net(`${opBase(a.sub)}/${kind}/${b.opId}`), {
        token: a.tenant.owner,
      });
      const madeUp = randomUUID();
      const missing = await t.call('GET', net(`${opBase(a.sub)}/${kind}/${madeUp}`), {
        token: a.tenant.owner,
      });
      expect(foreign.status).toBe(404);
      expect(foreign.body.error.code).toBe('OperationNotFound');
      expect(foreign.text.replace(b.opId, '{id}')).toBe(missing.text.replace(madeUp, '{id}'));
    }
  });

  it("A's Owner cannot revoke B's token through A's own subscription", async () => {
    const a = side('A');
    const b = side('B');
    const r = await t.call('DELETE', `/api/v1/subscriptions/${a.sub}/tokens/${b.spare.id}`, {
      token: a.tenant.owner,
    });
    expect(r.status).toBe(404);
    expect(r.body.error.code).toBe('ResourceNotFound');
    const madeUp = randomUUID();
    const missing = await t.call('DELETE', `/api/v1/subscriptions/${a.sub}/tokens/${madeUp}`, {
      token: a.tenant.owner,
    });
    expect(r.text.replace(b.spare.id, '{id}')).toBe(missing.text.replace(madeUp, '{id}'));
    expect((await t.call('GET', '/api/v1/subscriptions', { token: b.spare.token })).status).toBe(
      200,
    );
  });

  it("an Owner cannot revoke the admin token, whose id A's audit log shows", async () => {
    const a = side('A');
    const entries = await auditOf(a, a.tenant.owner);
    const adminActor = entries.find((e) => e.actor.startsWith('admin:'))?.actor;
    expect(adminActor).toBeDefined();
    const adminId = adminActor!.slice('admin:'.length);
    const r = await t.call('DELETE', `/api/v1/subscriptions/${a.sub}/tokens/${adminId}`, {
      token: a.tenant.owner,
    });
    expect(r.status).toBe(404);
    expect(r.body.error.code).toBe('ResourceNotFound');
    expect((await t.call('GET', '/metrics')).status).toBe(200);
  });

  it("an agent of A that speaks of B's capture changes nothing of B", async () => {
    const a = side('A');
    const b = side('B');
    const sessionId = mainSessionOf(b);
    const entry = b.agent.sessions.get(sessionId)!;
    const rogue = new SyntheticAgent({
      ...a.agent.options,
      name: 'vm-rogue',
      progressIntervalMs: 3_600_000,
    });
    await rogue.enroll();
    // Its hello claims B's session as running with packets; the server answers with a stop,
    // to which the rogue answers "stopped" (Error, with figures) for B's session.
    rogue.sessions.set(sessionId, {
      assignment: entry.assignment,
      state: 'Running',
      startTime: new Date().toISOString(),
      packets: 999,
    });
    try {
      const stop = rogue.next((m) => m.type === 'stop' && m.sessionId === sessionId);
      await rogue.connect();
      await stop;
      // A second hello is handled after everything before it: its welcome is the barrier.
      await rogue.disconnect();
      await rogue.connect();
      const now = await snapshot(b);
      expect(now.capture).toEqual(before.B.capture);
      expect(now.status.body).toMatchObject({
        packetCaptureStatus: 'Running',
        packetsCaptured: 0,
        packetCaptureError: [],
      });
      expect(now.stopsToAgent).toBe(0);
    } finally {
      await rogue.close();
    }
  });

  it('an Owner cannot mint an admin token', async () => {
    const a = side('A');
    const r = await t.call('POST', `/api/v1/subscriptions/${a.sub}/tokens`, {
      token: a.tenant.owner,
      body: { role: 'Admin' },
    });
    expect(r.status).toBe(400);
    expect(r.body.error).toMatchObject({ code: 'InvalidRequestContent', target: 'role' });
  });

  it("A cannot capture on B's VM: InvalidTarget, as for a VM that does not exist", async () => {
    const a = side('A');
    const b = side('B');
    const foreign = await t.call('PUT', net(pcPath(a.sub, 'pc-cross')), {
      token: a.tenant.contributor,
      body: { properties: { ...captureBody(b.sub, 'cross').properties } },
    });
    const missing = await t.call('PUT', net(pcPath(a.sub, 'pc-cross')), {
      token: a.tenant.contributor,
      body: {
        properties: {
          ...captureBody(a.sub, 'cross').properties,
          target: vmId(a.sub, RG, 'no-such-vm'),
        },
      },
    });
    expect(foreign.status).toBe(400);
    expect(foreign.body.error).toMatchObject({
      code: 'InvalidTarget',
      target: 'properties.target',
    });
    expect(shape(foreign)).toEqual(shape(missing));
    expect(foreign.text).not.toContain(b.sub);
    expect((await t.call('GET', net(pcPath(a.sub, 'pc-cross')))).status).toBe(404);
  });

  it("A's enrollment token cannot enroll a VM into B; API tokens cannot enroll at all", async () => {
    const a = side('A');
    const b = side('B');
    const enroll = (token: string, subscriptionId: string) =>
      t.call('POST', ENROLL_PATH, {
        token,
        body: {
          subscriptionId,
          resourceGroup: RG,
          name: 'vm-sneaky',
          location: LOCATION,
          hostname: 'sneaky',
          captureRoot: '/var/captures',
        },
      });
    for (const [token, sub] of [
      [a.tenant.enrollToken, b.sub],
      [a.tenant.owner, a.sub],
      [t.adminToken, a.sub],
    ] as const) {
      const r = await enroll(token, sub);
      expect(r.status).toBe(401);
      expect(r.body.error.code).toBe('InvalidEnrollmentToken');
    }
    for (const s of [a, b]) {
      expect((await t.call('GET', compute(vmId(s.sub, RG, 'vm-sneaky')))).status).toBe(404);
    }
  });

  it('API tokens, enrollment tokens and the admin token do not open the agent channel', async () => {
    const a = side('A');
    for (const token of [a.tenant.owner, a.tenant.enrollToken, t.adminToken]) {
      expect(await channelUpgrade(token)).toBe(401);
    }
  });
});

function channelUpgrade(token: string): Promise<number> {
  const url = new URL(CHANNEL_PATH, t.url);
  url.protocol = 'ws:';
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { headers: { authorization: `Bearer ${token}` } });
    ws.on('error', reject);
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

// ---- audit --------------------------------------------------------------------------------

interface AuditEntry {
  id: string;
  time: string;
  actor: string;
  action: string;
  resourceId: string;
  sourceIp: string;
  detail: Record<string, unknown>;
}

async function auditOf(s: Side, token: string): Promise<AuditEntry[]> {
  const entries: AuditEntry[] = [];
  let path: string | undefined = `/api/v1/subscriptions/${s.sub}/audit?$top=7`;
  while (path) {
    const r = await t.call('GET', path, { token });
    expect(r.status).toBe(200);
    entries.push(...(r.body.value as AuditEntry[]));
    path = r.body.nextLink ? (r.body.nextLink as string).slice(t.url.length) : undefined;
  }
  return entries;
}

describe('audit log', () => {
  it('records create, stop and delete with actor, action, resourceId, sourceIp and time', async () => {
    const a = side('A');
    const started = Date.now();
    const minted = await t.call('POST', `/api/v1/subscriptions/${a.sub}/tokens`, {
      token: a.tenant.owner,
      body: { role: 'Contributor' },
    });
    expect(minted.status).toBe(201);
    const actor = `token:${minted.body.tokenId as string}`;
    const token = minted.body.token as string;
    const url = (suffix = '') => net(`${pcPath(a.sub, 'pc-audited')}${suffix}`);

    expect(
      (await t.call('PUT', url(), { token, body: captureBody(a.sub, 'pc-audited') })).status,
    ).toBe(201);
    await waitFor(
      () => queryStatus(a, 'pc-audited'),
      (x) => x.packetCaptureStatus === 'Running',
    );
    expect((await t.call('POST', url('/stop'), { token })).status).toBe(202);
    await waitFor(
      () => queryStatus(a, 'pc-audited'),
      (x) => x.packetCaptureStatus === 'Stopped',
    );
    expect((await t.call('DELETE', url(), { token })).status).toBe(204);
    const finished = Date.now();

    const entries = await auditOf(a, a.tenant.owner);
    const resourceId = pcPath(a.sub, 'pc-audited');
    const mine = entries.filter((e) => e.resourceId === resourceId);
    // Newest first.
    expect(mine.map((e) => e.action)).toEqual([
      'packetCapture.delete',
      'packetCapture.stop',
      'packetCapture.create',
    ]);
    for (const e of mine) {
      expect(e).toMatchObject({
        actor,
        sourceIp: expect.stringMatching(/^(::ffff:)?127\.0\.0\.1$/),
      });
      expect(typeof e.id).toBe('string');
      expect(new Date(e.time).toISOString()).toBe(e.time);
      expect(Date.parse(e.time)).toBeGreaterThanOrEqual(started - 1000);
      expect(Date.parse(e.time)).toBeLessThanOrEqual(finished + 1000);
    }
    expect(mine[2]!.detail).toMatchObject({ target: vmId(a.sub, RG, VM) });
    // The token's creation is there too, and no secret is.
    expect(
      entries.some(
        (e) => e.action === 'token.create' && e.resourceId.endsWith(minted.body.tokenId),
      ),
    ).toBe(true);
    expect(entries.some((e) => e.action === 'token.revoke')).toBe(true);
    const text = JSON.stringify(entries);
    for (const secret of [token, a.tenant.owner, a.tenant.enrollToken, a.agent.credential!]) {
      expect(text).not.toContain(secret);
    }
  });

  it("A's audit log never shows B's entries, whoever reads it", async () => {
    const a = side('A');
    const b = side('B');
    const ofA = await auditOf(a, a.tenant.owner);
    const ofAByAdmin = await auditOf(a, t.adminToken);
    const ofB = await auditOf(b, t.adminToken);
    expect(ofA.length).toBeGreaterThan(0);
    expect(ofB.length).toBeGreaterThan(0);
    expect(ofAByAdmin.map((e) => e.id)).toEqual(ofA.map((e) => e.id));
    const idsOfB = new Set(ofB.map((e) => e.id));
    for (const e of ofA) {
      expect(idsOfB.has(e.id)).toBe(false);
      expect(e.resourceId.toLowerCase().startsWith(`/subscriptions/${a.sub}`)).toBe(true);
    }
    for (const e of ofB)
      expect(e.resourceId.toLowerCase().startsWith(`/subscriptions/${b.sub}`)).toBe(true);
    expect(JSON.stringify(ofA)).not.toContain(b.sub);
    // B's own actions (its capture, its tokens) are in B's log, and only there.
    expect(ofB.some((e) => e.action === 'packetCapture.create')).toBe(true);
  });
});
