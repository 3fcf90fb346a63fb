/**
 * Tenant isolation at the edges between tenants, and the audit log. Two tenants A and B, each
 * with a SYNTHETIC agent (test/lab/synthetic-agent.ts) on a VM, a running capture and a token
 * per role: operations, tokens, VMs, enrollment and agents of one tenant reached through the
 * other's own subscription, and what the audit log records and shows.
 *
 * Route by route and principal by principal (every route × every role, own and foreign
 * subscription, invalid credentials, agent routes), with the route list taken from the server
 * itself: test/security/route-matrix.test.ts, which this file's route table grew into.
 */
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CHANNEL_PATH, ENROLL_PATH } from '../../src/model/channel.js';
import { SyntheticAgent } from '../lab/synthetic-agent.js';
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
  upgradeStatus,
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
}

let t: TestServer;
const sides = new Map<SideName, Side>();
const side = (name: SideName): Side => sides.get(name)!;

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

async function queryStatus(s: Side, name: string) {
  const r = await t.call('POST', net(`${pcPath(s.sub, name)}/queryStatus`));
  expect(r.status).toBe(200);
  return r.body;
}

async function setUpSide(name: SideName): Promise<Side> {
  const tenant = await createTenant(t, `tenant ${name}`);
  const agent = syntheticAgentOf(t, tenant, {
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
    spareTokenWorks: (await t.call('GET', '/api/v1/subscriptions', { token: s.spare.token }))
      .status,
    stopsToAgent: s.agent.received.filter(
      (m) => (m.type === 'stop' && m.sessionId === mainSessionOf(s)) || m.type === 'deregistered',
    ).length,
  };
}

let before: Record<SideName, Awaited<ReturnType<typeof snapshot>>>;

beforeAll(async () => {
  t = await startTestServer();
  for (const name of ['A', 'B'] as const) sides.set(name, await setUpSide(name));
  // A token revoked by its tenant's Owner stops working at once (and the audit log says so).
  const a = side('A');
  const revoked = await newToken(a, 'Owner');
  const revoke = await t.call('DELETE', `/api/v1/subscriptions/${a.sub}/tokens/${revoked.id}`, {
    token: a.tenant.owner,
  });
  expect(revoke.status).toBe(204);
  expect((await t.call('GET', '/api/v1/subscriptions', { token: revoked.token })).status).toBe(401);
  before = { A: await snapshot(side('A')), B: await snapshot(side('B')) };
});

afterAll(async () => {
  for (const s of sides.values()) await s.agent.close();
  await t?.close();
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

const channelUpgrade = (token: string) => upgradeStatus(t.url, CHANNEL_PATH, token);

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
