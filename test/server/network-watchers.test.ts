/**
 * Deleting a network watcher through the API, against a real server on loopback and a SYNTHETIC
 * agent: its running captures are ended by the control plane (a stop with its reason to the
 * agent) and the delete is audited like every other delete.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { SyntheticAgent } from '../lab/synthetic-agent.js';
import {
  API,
  capturePath,
  startServerWithAgent,
  vmId,
  waitFor,
  watcherPath,
  type Tenant,
  type TestServer,
} from '../lab/control-plane.js';

const RG = 'rg1';
const NW_RG = 'NetworkWatcherRG';
const NW = 'NetworkWatcher_westeurope';

let t: TestServer;
let tenant: Tenant;
let agent: SyntheticAgent;

beforeAll(async () => {
  ({ t, tenant, agent } = await startServerWithAgent({
    tenantName: 'watcher-delete',
    agent: { resourceGroup: RG, name: 'vm1', progressIntervalMs: 200 },
  }));
});

afterAll(async () => {
  await agent?.close();
  await t?.close();
});

describe('DELETE of a network watcher', () => {
  it('stops its running captures through the control plane and is audited', async () => {
    const sub = tenant.subscriptionId;
    const captureUrl = `${capturePath(sub, NW_RG, NW, 'running')}?api-version=${API}`;
    const put = await t.call('PUT', captureUrl, {
      token: tenant.contributor,
      body: {
        properties: {
          target: vmId(sub, RG, 'vm1'),
          storageLocation: { filePath: '/var/captures/running.cap' },
        },
      },
    });
    expect(put.status).toBe(201);
    await waitFor(
      () =>
        t.call('POST', `${capturePath(sub, NW_RG, NW, 'running')}/queryStatus?api-version=${API}`, {
          token: tenant.reader,
        }),
      (r) => r.body?.packetCaptureStatus === 'Running',
    );
    const sessionId = agent.received.flatMap((m) =>
      m.type === 'start' ? [m.assignment.sessionId] : [],
    )[0]!;
    const stopped = agent.next((m) => m.type === 'stop' && m.sessionId === sessionId);

    const del = await t.call('DELETE', `${watcherPath(sub, NW_RG, NW)}?api-version=${API}`, {
      token: tenant.contributor,
    });
    expect(del.status).toBe(202);
    expect(await stopped).toEqual({ type: 'stop', sessionId, reason: 'ManualIntervention' });
    expect(
      (
        await t.call('GET', `${watcherPath(sub, NW_RG, NW)}?api-version=${API}`, {
          token: tenant.reader,
        })
      ).status,
    ).toBe(404);
    expect((await t.call('GET', captureUrl, { token: tenant.reader })).status).toBe(404);

    const audit = await t.call('GET', `/api/v1/subscriptions/${sub}/audit?$top=1000`, {
      token: tenant.owner,
    });
    expect(audit.status).toBe(200);
    const entries = (audit.body.value as { action: string }[]).filter(
      (e) => e.action === 'networkWatcher.delete',
    );
    expect(entries).toEqual([
      expect.objectContaining({
        action: 'networkWatcher.delete',
        resourceId: watcherPath(sub, NW_RG, NW),
        detail: { location: 'westeurope', stoppedCaptures: 1 },
      }),
    ]);
    expect(entries[0]).toHaveProperty('actor', expect.stringMatching(/^token:/));
  });

  it('of a watcher that does not exist is a 204 and audits nothing', async () => {
    const sub = tenant.subscriptionId;
    const del = await t.call('DELETE', `${watcherPath(sub, NW_RG, 'nothing')}?api-version=${API}`, {
      token: tenant.contributor,
    });
    expect(del.status).toBe(204);
    const audit = await t.call('GET', `/api/v1/subscriptions/${sub}/audit?$top=1000`, {
      token: tenant.owner,
    });
    expect(
      (audit.body.value as { resourceId: string }[]).some((e) => e.resourceId.endsWith('/nothing')),
    ).toBe(false);
  });
});
