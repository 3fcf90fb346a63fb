/**
 * Enrollment under attack, through a real server and real HTTP: what a holder of an enrollment
 * token can and cannot do to VMs and network watchers that exist already, and how an Owner
 * lists, revokes and scopes enrollment tokens.
 */
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CHANNEL_PATH, ENROLL_PATH } from '../../src/model/channel.js';
import {
  API,
  createTenant,
  startTestServer,
  syntheticAgentOf,
  vmId,
  watcherPath,
  type Reply,
  type Tenant,
  type TestServer,
  upgradeStatus,
} from '../lab/control-plane.js';

let t: TestServer;

beforeAll(async () => {
  t = await startTestServer();
});

afterAll(async () => {
  await t?.close();
});

interface EnrollBody {
  subscriptionId: string;
  resourceGroup: string;
  name: string;
  location: string;
  hostname: string;
  captureRoot: string;
}

function body(tenant: Tenant, overrides: Partial<EnrollBody> = {}): EnrollBody {
  return {
    subscriptionId: tenant.subscriptionId,
    resourceGroup: 'web',
    name: `vm-${randomUUID().slice(0, 8)}`,
    location: 'westeurope',
    hostname: 'web-01.example',
    captureRoot: '/var/captures',
    ...overrides,
  };
}

function enroll(token: string, request: EnrollBody): Promise<Reply> {
  return t.call('POST', ENROLL_PATH, { token, body: request });
}

const watcher = (sub: string, rg: string, name: string) =>
  `${watcherPath(sub, rg, name)}?api-version=${API}`;

describe('the automatic network watcher', () => {
  it('is created for the first VM of a location when the subscription has none', async () => {
    const tenant = await createTenant(t, 'auto-watcher');
    expect((await enroll(tenant.enrollToken, body(tenant))).status).toBe(201);
    const w = await t.call(
      'GET',
      watcher(tenant.subscriptionId, 'NetworkWatcherRG', 'NetworkWatcher_westeurope'),
      { token: tenant.reader },
    );
    expect(w.status).toBe(200);
    expect(w.body).toMatchObject({ location: 'westeurope', tags: {} });
  });

  it("never moves or re-tags an existing watcher that carries the automatic watcher's name", async () => {
    const tenant = await createTenant(t, 'keep-watcher');
    const sub = tenant.subscriptionId;
    // An operator's watcher named NetworkWatcher_westeurope, but in eastus, with tags.
    const put = await t.call('PUT', watcher(sub, 'NetworkWatcherRG', 'NetworkWatcher_westeurope'), {
      token: tenant.contributor,
      body: { location: 'eastus', tags: { owner: 'net-team' } },
    });
    expect(put.status).toBe(201);

    expect((await enroll(tenant.enrollToken, body(tenant))).status).toBe(201);

    const after = await t.call(
      'GET',
      watcher(sub, 'NetworkWatcherRG', 'NetworkWatcher_westeurope'),
      {
        token: tenant.reader,
      },
    );
    expect(after.body).toEqual(put.body);
    expect(after.body).toMatchObject({ location: 'eastus', tags: { owner: 'net-team' } });
    // No second watcher appeared either.
    const list = await t.call(
      'GET',
      `/subscriptions/${sub}/providers/Microsoft.Network/networkWatchers?api-version=${API}`,
      { token: tenant.reader },
    );
    expect(list.body.value).toHaveLength(1);
  });

  it("leaves the location's own watcher alone, whatever its name", async () => {
    const tenant = await createTenant(t, 'own-watcher');
    const sub = tenant.subscriptionId;
    const put = await t.call('PUT', watcher(sub, 'ops', 'nw-weu'), {
      token: tenant.contributor,
      body: { location: 'westeurope', tags: { team: 'ops' } },
    });
    expect(put.status).toBe(201);
    expect((await enroll(tenant.enrollToken, body(tenant))).status).toBe(201);
    const list = await t.call(
      'GET',
      `/subscriptions/${sub}/providers/Microsoft.Network/networkWatchers?api-version=${API}`,
      { token: tenant.reader },
    );
    expect(list.body.value).toEqual([put.body]);
  });
});

const channelUpgrade = (credential: string) => upgradeStatus(t.url, CHANNEL_PATH, credential);

const tokens = (sub: string) => `/api/v1/subscriptions/${sub}/enrollmentTokens`;

async function newEnrollmentToken(
  tenant: Tenant,
  request: Record<string, unknown> = {},
): Promise<{ tokenId: string; token: string; expiresAt: string }> {
  const r = await t.call('POST', tokens(tenant.subscriptionId), {
    token: tenant.owner,
    body: request,
  });
  expect(r.status).toBe(201);
  return r.body;
}

async function auditActions(
  tenant: Tenant,
): Promise<
  { action: string; actor: string; resourceId: string; detail: Record<string, unknown> }[]
> {
  const r = await t.call('GET', `/api/v1/subscriptions/${tenant.subscriptionId}/audit?$top=1000`, {
    token: tenant.owner,
  });
  expect(r.status).toBe(200);
  return r.body.value;
}

describe('re-enrolling an existing VM', () => {
  it('with an ordinary token is refused (409 VmAlreadyEnrolled) and changes nothing', async () => {
    const tenant = await createTenant(t, 'hijack');
    const request = body(tenant, { captureRoot: '/var/captures' });
    const first = await enroll(tenant.enrollToken, request);
    expect(first.status).toBe(201);
    // The VM's agent is away (never connected, or briefly disconnected): a token holder tries
    // to take its name with a capture root of their choosing.
    const again = await enroll(tenant.enrollToken, {
      ...request,
      name: request.name.toUpperCase(),
      hostname: 'attacker.example',
      captureRoot: '/',
    });
    expect(again.status).toBe(409);
    expect(again.body.error).toMatchObject({ code: 'VmAlreadyEnrolled', target: 'name' });
    expect(again.body.error.message).toContain('takeover');

    const vm = await t.call(
      'GET',
      `${vmId(tenant.subscriptionId, request.resourceGroup, request.name)}?api-version=2023-03-01`,
      { token: tenant.reader },
    );
    expect(vm.body.properties.agent).toMatchObject({
      hostname: 'web-01.example',
      captureRoot: '/var/captures',
    });
    // The first agent's credential still opens the channel.
    expect(await channelUpgrade(first.body.credential)).toBe(101);
  });

  it('of concurrent enrollments of one new name, exactly one succeeds', async () => {
    const tenant = await createTenant(t, 'race');
    const request = body(tenant);
    const answers = await Promise.all(
      [1, 2, 3, 4, 5].map((i) =>
        enroll(tenant.enrollToken, { ...request, hostname: `host-${i}.example` }),
      ),
    );
    expect(answers.map((a) => a.status).sort()).toEqual([201, 409, 409, 409, 409]);
    const agents = await t.call('GET', `/api/v1/subscriptions/${tenant.subscriptionId}/agents`, {
      token: tenant.reader,
    });
    expect(agents.body.value).toHaveLength(1);
    const winner = answers.find((a) => a.status === 201)!;
    expect(await channelUpgrade(winner.body.credential)).toBe(101);
  });

  it('with a takeover token for that VM replaces its credential once, audited', async () => {
    const tenant = await createTenant(t, 'takeover');
    const request = body(tenant, { resourceGroup: 'Web' });
    const first = await enroll(tenant.enrollToken, request);
    expect(first.status).toBe(201);

    const before = Date.now();
    const takeover = await newEnrollmentToken(tenant, {
      takeover: { resourceGroup: 'web', name: request.name },
    });
    // A takeover token lives an hour unless told otherwise.
    expect(Date.parse(takeover.expiresAt) - before).toBeGreaterThan(3600_000 - 60_000);
    expect(Date.parse(takeover.expiresAt) - before).toBeLessThan(3600_000 + 60_000);

    // It enrolls no other VM, new or existing.
    const elsewhere = await enroll(takeover.token, { ...request, name: 'another-vm' });
    expect(elsewhere.status).toBe(401);
    expect(elsewhere.body.error.code).toBe('InvalidEnrollmentToken');

    const rebuilt = await enroll(takeover.token, {
      ...request,
      hostname: 'web-01-rebuilt.example',
      captureRoot: '/srv/captures',
    });
    expect(rebuilt.status).toBe(201);
    expect(rebuilt.body.agentId).toBe(first.body.agentId);
    expect(rebuilt.body.vmId).toBe(first.body.vmId);
    expect(await channelUpgrade(first.body.credential)).toBe(401);
    expect(await channelUpgrade(rebuilt.body.credential)).toBe(101);

    // Once only.
    const twice = await enroll(takeover.token, request);
    expect(twice.status).toBe(401);
    expect(twice.body.error.code).toBe('InvalidEnrollmentToken');

    const entries = await auditActions(tenant);
    const created = entries.find(
      (e) => e.action === 'enrollmentToken.create' && e.resourceId.endsWith(takeover.tokenId),
    );
    expect(created?.detail).toMatchObject({
      takeover: vmId(tenant.subscriptionId, 'web', request.name),
    });
    const taken = entries.find((e) => e.action === 'virtualMachine.takeover');
    expect(taken).toMatchObject({
      actor: `enrollment:${takeover.tokenId}`,
      resourceId: first.body.vmId,
      detail: {
        hostname: 'web-01-rebuilt.example',
        captureRoot: '/srv/captures',
        previousHostname: 'web-01.example',
        previousCaptureRoot: '/var/captures',
      },
    });
    const listed = await t.call('GET', tokens(tenant.subscriptionId), { token: tenant.owner });
    expect(
      listed.body.value.find((v: { tokenId: string }) => v.tokenId === takeover.tokenId),
    ).toMatchObject({
      state: 'Used',
      takeover: { resourceGroup: 'web', name: request.name },
      usedAt: expect.any(String),
    });
  });

  it('is refused while the VM’s agent is connected, even with a takeover token, which stays unused', async () => {
    const tenant = await createTenant(t, 'connected');
    const agent = syntheticAgentOf(t, tenant, { resourceGroup: 'web', name: 'live-01' });
    try {
      await agent.connect();
      const takeover = await newEnrollmentToken(tenant, {
        takeover: { resourceGroup: 'web', name: 'live-01' },
      });
      const r = await enroll(takeover.token, body(tenant, { name: 'live-01' }));
      expect(r.status).toBe(409);
      expect(r.body.error.code).toBe('AgentAlreadyConnected');
      const listed = await t.call('GET', tokens(tenant.subscriptionId), { token: tenant.owner });
      expect(
        listed.body.value.find((v: { tokenId: string }) => v.tokenId === takeover.tokenId),
      ).toMatchObject({ state: 'Active', usedAt: null });
    } finally {
      await agent.close();
    }
  });

  it('refuses a takeover body that does not name a valid VM', async () => {
    const tenant = await createTenant(t, 'bad-takeover');
    for (const takeover of [
      { resourceGroup: 'web' },
      { resourceGroup: 'web', name: '../x' },
      { resourceGroup: 'web', name: 'vm', extra: 1 },
      true,
    ]) {
      const r = await t.call('POST', tokens(tenant.subscriptionId), {
        token: tenant.owner,
        body: { takeover },
      });
      expect(r.status).toBe(400);
      expect(r.body.error.code).toBe('InvalidRequestContent');
    }
  });
});

describe('listing and revoking enrollment tokens', () => {
  let a: Tenant;
  let b: Tenant;

  beforeAll(async () => {
    a = await createTenant(t, 'list-a');
    b = await createTenant(t, 'list-b');
  });

  it('an Owner lists them with their state, never the token or its hash', async () => {
    const extra = await newEnrollmentToken(a, { expiresInHours: 2 });
    const r = await t.call('GET', tokens(a.subscriptionId), { token: a.owner });
    expect(r.status).toBe(200);
    const ids = r.body.value.map((v: { tokenId: string }) => v.tokenId);
    expect(ids).toContain(extra.tokenId);
    for (const v of r.body.value) {
      expect(Object.keys(v).sort()).toEqual([
        'createdAt',
        'expiresAt',
        'maxUses',
        'revokedAt',
        'state',
        'subscriptionId',
        'takeover',
        'tokenId',
        'usedAt',
        'uses',
      ]);
      expect(v).toMatchObject({
        subscriptionId: a.subscriptionId,
        state: 'Active',
        takeover: null,
      });
    }
    expect(r.text).not.toContain(a.enrollToken);
    expect(r.text).not.toContain(extra.token);
  });

  it('Readers and Contributors may not list or revoke; another tenant sees 404', async () => {
    const victim = await newEnrollmentToken(a);
    for (const token of [a.reader, a.contributor]) {
      const list = await t.call('GET', tokens(a.subscriptionId), { token });
      expect(list.status).toBe(403);
      const del = await t.call('DELETE', `${tokens(a.subscriptionId)}/${victim.tokenId}`, {
        token,
      });
      expect(del.status).toBe(403);
    }
    const cross = await t.call('GET', tokens(a.subscriptionId), { token: b.owner });
    expect(cross.status).toBe(404);
    expect(cross.body.error.code).toBe('SubscriptionNotFound');
    // B's Owner naming A's token through B's own subscription: not found.
    const sideways = await t.call('DELETE', `${tokens(b.subscriptionId)}/${victim.tokenId}`, {
      token: b.owner,
    });
    expect(sideways.status).toBe(404);
    expect(sideways.body.error.code).toBe('ResourceNotFound');
    // The token still enrolls.
    expect((await enroll(victim.token, body(a))).status).toBe(201);
  });

  it('a revoked token enrolls nothing any more; revoking is audited and idempotent', async () => {
    const victim = await newEnrollmentToken(a);
    const del = await t.call('DELETE', `${tokens(a.subscriptionId)}/${victim.tokenId}`, {
      token: a.owner,
    });
    expect(del.status).toBe(204);
    const refused = await enroll(victim.token, body(a));
    expect(refused.status).toBe(401);
    expect(refused.body.error.code).toBe('InvalidEnrollmentToken');
    const again = await t.call('DELETE', `${tokens(a.subscriptionId)}/${victim.tokenId}`, {
      token: a.owner,
    });
    expect(again.status).toBe(204);
    const unknown = await t.call('DELETE', `${tokens(a.subscriptionId)}/${randomUUID()}`, {
      token: a.owner,
    });
    expect(unknown.status).toBe(404);

    const listed = await t.call('GET', tokens(a.subscriptionId), { token: a.owner });
    expect(
      listed.body.value.find((v: { tokenId: string }) => v.tokenId === victim.tokenId),
    ).toMatchObject({ state: 'Revoked', revokedAt: expect.any(String) });
    const revocations = (await auditActions(a)).filter(
      (e) => e.action === 'enrollmentToken.revoke' && e.resourceId.endsWith(victim.tokenId),
    );
    expect(revocations).toHaveLength(2);
    expect(revocations[0]!.resourceId).toBe(
      `/subscriptions/${a.subscriptionId}/enrollmentTokens/${victim.tokenId}`,
    );
  });
});

describe('enrollment limits', () => {
  const createToken = async (tenant: Tenant, extra: Record<string, unknown>) => {
    const r = await t.call(
      'POST',
      `/api/v1/subscriptions/${tenant.subscriptionId}/enrollmentTokens`,
      { token: tenant.owner, body: extra },
    );
    expect(r.status, r.text).toBe(201);
    return r.body as { token: string; tokenId: string; maxUses: number; uses: number };
  };

  it('a token enrolls at most its maxUses VMs, racers included; then 403 EnrollmentLimitReached', async () => {
    const tenant = await createTenant(t, 'max-uses');
    const token = await createToken(tenant, { maxUses: 3 });
    expect(token).toMatchObject({ maxUses: 3, uses: 0, state: 'Active' });
    const replies = await Promise.all(
      Array.from({ length: 6 }, () => enroll(token.token, body(tenant))),
    );
    expect(replies.map((r) => r.status).sort()).toEqual([201, 201, 201, 403, 403, 403]);
    for (const r of replies.filter((x) => x.status === 403)) {
      expect(r.body.error).toMatchObject({
        code: 'EnrollmentLimitReached',
        message: expect.stringContaining('maxUses 3'),
      });
    }
    const vms = await t.call('GET', `/api/v1/subscriptions/${tenant.subscriptionId}/agents`, {
      token: tenant.reader,
    });
    expect(vms.status).toBe(200);
    expect(vms.body.value).toHaveLength(3);
    const list = await t.call(
      'GET',
      `/api/v1/subscriptions/${tenant.subscriptionId}/enrollmentTokens`,
      { token: tenant.owner },
    );
    expect(
      (list.body.value as { tokenId: string }[]).find((x) => x.tokenId === token.tokenId),
    ).toMatchObject({ state: 'Used', maxUses: 3, uses: 3 });
    // A refused enrollment of an existing name uses nothing.
    const fresh = await createToken(tenant, { maxUses: 1 });
    const name = `vm-${randomUUID().slice(0, 8)}`;
    expect((await enroll(fresh.token, body(tenant, { name }))).status).toBe(201);
    expect((await enroll(fresh.token, body(tenant, { name }))).status).toBe(403);
  });

  it('maxUses defaults to 1000 and is checked: 0 or a fraction is a 400 naming it', async () => {
    const tenant = await createTenant(t, 'max-uses-default');
    expect(await createToken(tenant, {})).toMatchObject({ maxUses: 1000, uses: 0 });
    for (const maxUses of [0, 1.5, 1_000_001, '5']) {
      const r = await t.call(
        'POST',
        `/api/v1/subscriptions/${tenant.subscriptionId}/enrollmentTokens`,
        { token: tenant.owner, body: { maxUses } },
      );
      expect(r.status, String(maxUses)).toBe(400);
      expect(JSON.stringify(r.body), String(maxUses)).toContain('maxUses');
    }
  });

  it('a subscription has at most --max-vms-per-subscription VMs, whatever the tokens', async () => {
    const capped = await startTestServer({ maxVmsPerSubscription: 2 });
    try {
      const tenant = await createTenant(capped, 'vm-cap');
      const other = await createTenant(capped, 'vm-cap-other');
      const call = (token: string, b: EnrollBody) =>
        capped.call('POST', ENROLL_PATH, { token, body: b });
      const replies = await Promise.all(
        Array.from({ length: 4 }, () => call(tenant.enrollToken, body(tenant))),
      );
      expect(replies.map((r) => r.status).sort()).toEqual([201, 201, 403, 403]);
      expect(replies.find((r) => r.status === 403)!.body.error).toMatchObject({
        code: 'EnrollmentLimitReached',
        message: expect.stringContaining('--max-vms-per-subscription 2'),
      });
      // Another token of the same subscription is refused too; another subscription is not.
      const second = await capped.call(
        'POST',
        `/api/v1/subscriptions/${tenant.subscriptionId}/enrollmentTokens`,
        { token: tenant.owner, body: {} },
      );
      expect((await call(second.body.token as string, body(tenant))).status).toBe(403);
      expect((await call(other.enrollToken, body(other))).status).toBe(201);
      // Deleting a VM makes room.
      const vms = await capped.call(
        'GET',
        `/api/v1/subscriptions/${tenant.subscriptionId}/agents`,
        {
          token: tenant.reader,
        },
      );
      const first = (vms.body.value as { resourceGroup: string; name: string }[])[0]!;
      const deleted = await capped.call(
        'DELETE',
        `${vmId(tenant.subscriptionId, first.resourceGroup, first.name)}?api-version=2023-03-01`,
        { token: tenant.contributor },
      );
      expect(deleted.status, deleted.text).toBeLessThan(300);
      expect((await call(tenant.enrollToken, body(tenant))).status).toBe(201);
    } finally {
      await capped.close();
    }
  });
});

describe('scale-set instances over HTTP', () => {
  it('enrolls instances with assigned ids; a bad scale set or id is a 400 naming the field', async () => {
    const tenant = await createTenant(t, 'scale-set-enroll');
    const { name: _name, ...host } = body(tenant);
    const instance = (extra: Record<string, string>) =>
      t.call('POST', ENROLL_PATH, { token: tenant.enrollToken, body: { ...host, ...extra } });
    const first = await instance({ scaleSet: 'web' });
    expect(first.status, first.text).toBe(201);
    expect(first.body).toMatchObject({
      name: 'web_0',
      instanceId: '0',
      vmId: `/subscriptions/${tenant.subscriptionId}/resourceGroups/web/providers/Microsoft.Compute/virtualMachineScaleSets/web/virtualMachines/0`,
    });
    expect((await instance({ scaleSet: 'WEB' })).body).toMatchObject({ name: 'web_1' });
    const refusals: [Record<string, string>, number, string, string, RegExp][] = [
      [{ scaleSet: 'web_0' }, 400, 'InvalidResourceName', 'scaleSet', /^scaleSet: .*letters/],
      [
        { scaleSet: 'web', instanceId: '007' },
        400,
        'InvalidRequestContent',
        'instanceId',
        /^instanceId: "007" is not an instance id: digits only/,
      ],
      [{ scaleSet: 'web', name: 'vm-1' }, 400, 'InvalidRequestContent', 'name', /not both/],
      [{}, 400, 'InvalidRequestContent', 'name', /^name: is required \(or scaleSet/],
      [
        { scaleSet: 'web', instanceId: '1' },
        409,
        'VmAlreadyEnrolled',
        'instanceId',
        /^Instance '1' of scale set 'web' .* -n web_1\)$/,
      ],
      [{ scaleSet: 'web', location: 'eastus' }, 400, 'InvalidLocation', 'location', /westeurope/],
    ];
    for (const [extra, status, code, target, message] of refusals) {
      const r = await instance(extra);
      expect(r.status, JSON.stringify(extra)).toBe(status);
      expect(r.body.error).toMatchObject({ code, target, message: expect.stringMatching(message) });
    }
  });
});
