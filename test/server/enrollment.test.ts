/**
 * Enrollment under attack, through a real server and real HTTP: what a holder of an enrollment
 * token can and cannot do to VMs and network watchers that exist already, and how an Owner
 * lists, revokes and scopes enrollment tokens.
 */
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ENROLL_PATH } from '../../src/model/channel.js';
import {
  API,
  createTenant,
  startTestServer,
  watcherPath,
  type Reply,
  type Tenant,
  type TestServer,
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
