/**
 * The packetCaptures API against a real server on loopback and SYNTHETIC agents (real channel
 * protocol, invented packets; see test/lab/synthetic-agent.ts). The real agent with tcpdump is
 * covered in test/control-plane-lab.test.ts.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SyntheticAgent } from '../lab/synthetic-agent.js';
import {
  API,
  capturePath,
  createTenant,
  startServerWithAgent,
  vmId,
  waitFor,
  watcherPath,
  type Tenant,
  type TestServer,
} from '../lab/control-plane.js';

let t: TestServer;
let tenant: Tenant;
let agent: SyntheticAgent;
const rg = 'rg1';
const nw = 'NetworkWatcher_westeurope';
const nwRg = 'NetworkWatcherRG';
let counter = 0;

function body(overrides: Record<string, unknown> = {}) {
  return {
    properties: {
      target: vmId(tenant.subscriptionId, rg, 'vm1'),
      storageLocation: { filePath: `/var/captures/pc${++counter}.cap` },
      ...overrides,
    },
  };
}

const url = (name: string, suffix = '') =>
  `${capturePath(tenant.subscriptionId, nwRg, nw, name)}${suffix}?api-version=${API}`;

beforeAll(async () => {
  ({ t, tenant, agent } = await startServerWithAgent({
    server: { pageSize: 3, sweepIntervalMs: 200, deadlineGraceMs: 500 },
    agent: { resourceGroup: rg, name: 'vm1', progressIntervalMs: 200 },
  }));
});

afterAll(async () => {
  await agent?.close();
  await t?.close();
});

async function status(name: string) {
  const r = await t.call('POST', url(name, '/queryStatus'), { token: tenant.reader });
  expect(r.status).toBe(200);
  return r.body;
}

describe('packet capture lifecycle', () => {
  it('the first agent of a location brings NetworkWatcher_{location} in NetworkWatcherRG', async () => {
    const r = await t.call(
      'GET',
      `${watcherPath(tenant.subscriptionId, nwRg, nw)}?api-version=${API}`,
    );
    expect(r.status).toBe(200);
    expect(r.body).toMatchObject({
      name: nw,
      location: 'westeurope',
      type: 'Microsoft.Network/networkWatchers',
    });
  });

  it('create answers 201 with the result body and async-operation headers, then runs', async () => {
    const r = await t.call('PUT', url('life'), {
      token: tenant.contributor,
      body: body({ timeLimitInSeconds: 60 }),
    });
    expect(r.status).toBe(201);
    expect(r.body).toMatchObject({
      name: 'life',
      id: capturePath(tenant.subscriptionId, nwRg, nw, 'life'),
      properties: {
        target: vmId(tenant.subscriptionId, rg, 'vm1'),
        bytesToCapturePerPacket: 0,
        totalBytesPerSession: 1073741824,
        timeLimitInSeconds: 60,
        filters: [],
      },
    });
    expect(r.body.etag).toMatch(/^W\/"/);
    const op = r.headers.get('azure-asyncoperation')!;
    expect(op).toMatch(
      new RegExp(
        `^${t.url}/subscriptions/${tenant.subscriptionId}/providers/Microsoft.Network/locations/westeurope/operations/`,
      ),
    );
    expect(r.headers.get('retry-after')).toBe('1');
    // The polling URL works as given and with api-version added a second time.
    const done = await waitFor(
      () => t.call('GET', `${op.slice(t.url.length)}&api-version=${API}`, { token: tenant.reader }),
      (x) => x.body?.status !== 'InProgress',
    );
    expect(done.status).toBe(200);
    expect(done.body.status).toBe('Succeeded');
    const s = await waitFor(
      () => status('life'),
      (x) => x.packetsCaptured > 0,
    );
    expect(s).toMatchObject({
      name: 'life',
      packetCaptureStatus: 'Running',
      packetCaptureError: [],
    });
    expect(typeof s.captureStartTime).toBe('string');
    expect(typeof s.lastProgressTime).toBe('string');
    const get = await t.call('GET', url('life'), { token: tenant.reader });
    expect(get.body.properties.provisioningState).toBe('Succeeded');
  });

  it('stop answers 202 with Location, which answers 202 until the agent confirms, then 200', async () => {
    const r = await t.call('POST', url('life', '/stop'), { token: tenant.contributor });
    expect(r.status).toBe(202);
    const location = r.headers.get('location')!;
    expect(location).toContain('/operationResults/');
    const final = await waitFor(
      () => t.call('GET', location.slice(t.url.length), { token: tenant.reader }),
      (x) => x.status !== 202,
    );
    expect(final.status).toBe(200);
    const s = await status('life');
    expect(s).toMatchObject({ packetCaptureStatus: 'Stopped', stopReason: 'ManualIntervention' });
    expect(s.packetsCaptured).toBeGreaterThan(0);
    // Stopping a stopped capture is a plain 200.
    expect((await t.call('POST', url('life', '/stop'), { token: tenant.contributor })).status).toBe(
      200,
    );
  });

  it('reports each stop reason the agent gives', async () => {
    for (const reason of ['TimeExceeded', 'SessionBytesExceeded'] as const) {
      const name = `reason-${reason}`;
      expect(
        (await t.call('PUT', url(name), { token: tenant.contributor, body: body() })).status,
      ).toBe(201);
      await waitFor(
        () => status(name),
        (x) => x.packetCaptureStatus === 'Running',
      );
      const session = [...agent.sessions.entries()].find(([, s]) =>
        s.assignment.resourceId.endsWith(`/${name}`),
      )!;
      agent.finish(session[0], reason);
      const s = await waitFor(
        () => status(name),
        (x) => x.packetCaptureStatus !== 'Running',
      );
      expect(s).toMatchObject({ packetCaptureStatus: 'Stopped', stopReason: reason });
    }
  });

  it('the agent enforces the time limit it is given', async () => {
    expect(
      (
        await t.call('PUT', url('short'), {
          token: tenant.contributor,
          body: body({ timeLimitInSeconds: 1 }),
        })
      ).status,
    ).toBe(201);
    const s = await waitFor(
      () => status('short'),
      (x) => x.packetCaptureStatus === 'Stopped',
    );
    expect(s.stopReason).toBe('TimeExceeded');
  });

  it('a capture that fails on the host reads Error, and its create operation fails with the code', async () => {
    const failing = new SyntheticAgent({
      ...agent.options,
      name: 'vm-broken',
      failStarts: { code: 'CaptureFailed', message: 'interface wwa0 does not exist' },
    });
    await failing.connect();
    try {
      const r = await t.call('PUT', url('fails'), {
        token: tenant.contributor,
        body: body({ target: vmId(tenant.subscriptionId, rg, 'vm-broken') }),
      });
      expect(r.status).toBe(201);
      const op = await waitFor(
        () => t.call('GET', r.headers.get('azure-asyncoperation')!.slice(t.url.length)),
        (x) => x.body?.status !== 'InProgress',
      );
      expect(op.body).toMatchObject({ status: 'Failed', error: { code: 'CaptureFailed' } });
      const s = await status('fails');
      expect(s).toMatchObject({
        packetCaptureStatus: 'Error',
        stopReason: 'Error',
        packetCaptureError: ['CaptureFailed'],
      });
      expect(s.packetCaptureErrorDetails[0].message).toContain('wwa0');
    } finally {
      await failing.close();
    }
  });

  it("reports an agent's code outside Azure's PcError as its PcError, keeping the code in the details", async () => {
    const picky = new SyntheticAgent({
      ...agent.options,
      name: 'vm-picky',
      failStarts: { code: 'InvalidFilter', message: 'filters[0].localPort: "80-" is not a port' },
    });
    await picky.connect();
    try {
      const r = await t.call('PUT', url('picky'), {
        token: tenant.contributor,
        body: body({ target: vmId(tenant.subscriptionId, rg, 'vm-picky') }),
      });
      expect(r.status).toBe(201);
      const s = await waitFor(
        () => status('picky'),
        (x) => x.packetCaptureStatus === 'Error',
      );
      expect(s.packetCaptureError).toEqual(['CaptureFailed']);
      expect(s.packetCaptureErrorDetails).toEqual([
        { code: 'InvalidFilter', message: 'filters[0].localPort: "80-" is not a port' },
      ]);
    } finally {
      await picky.close();
    }
  });

  it("echoes filter protocols and targetType in Azure's spelling in PUT, GET and list answers", async () => {
    const sent = body({
      targetType: 'azurevm',
      filters: [
        { protocol: 'tcp', localPort: '80' },
        { protocol: 'uDp' },
        { protocol: 'ANY' },
        { protocol: '' },
        { remotePort: '443' },
      ],
    });
    const expected = {
      targetType: 'AzureVM',
      filters: [
        { protocol: 'TCP', localPort: '80' },
        { protocol: 'UDP' },
        { protocol: 'Any' },
        { protocol: 'Any' },
        { protocol: 'Any', remotePort: '443' },
      ],
    };
    const put = await t.call('PUT', url('spelling'), { token: tenant.contributor, body: sent });
    expect(put.status).toBe(201);
    expect(put.body.properties).toMatchObject(expected);
    const get = await t.call('GET', url('spelling'), { token: tenant.reader });
    expect(get.body.properties).toMatchObject(expected);
    const list = await t.call(
      'GET',
      `${watcherPath(tenant.subscriptionId, nwRg, nw)}/packetCaptures?api-version=${API}`,
      { token: tenant.reader },
    );
    const listed = list.body.value.find((v: { name: string }) => v.name === 'spelling');
    expect(listed.properties).toMatchObject(expected);
    // The same body again is the same capture, however it was spelt.
    const again = await t.call('PUT', url('spelling'), { token: tenant.contributor, body: sent });
    expect(again.status).toBe(200);
    const bad = await t.call('PUT', url('spelling-bad'), {
      token: tenant.contributor,
      body: body({ targetType: 'AzureVMs' }),
    });
    expect(bad.status).toBe(400);
    expect(bad.body.error).toMatchObject({
      code: 'InvalidRequestContent',
      target: 'properties.targetType',
    });
  });

  it('re-PUT with the same body is idempotent; with another body it is a 409', async () => {
    const b = body();
    expect((await t.call('PUT', url('again'), { token: tenant.contributor, body: b })).status).toBe(
      201,
    );
    const same = await t.call('PUT', url('AGAIN'), { token: tenant.contributor, body: b });
    expect(same.status).toBe(200);
    expect(same.body.name).toBe('again');
    const other = await t.call('PUT', url('again'), {
      token: tenant.contributor,
      body: { ...b, properties: { ...b.properties, timeLimitInSeconds: 5 } },
    });
    expect(other.status).toBe(409);
    expect(other.body.error.code).toBe('PacketCaptureAlreadyExists');
  });

  it('lists every capture at once, or in pages linked by an absolute nextLink when asked with $top', async () => {
    const all = await t.call(
      'GET',
      `${watcherPath(tenant.subscriptionId, nwRg, nw)}/packetCaptures?api-version=${API}`,
      { token: tenant.reader },
    );
    expect(all.status).toBe(200);
    expect(all.body.nextLink).toBeUndefined();
    const names: string[] = [];
    let next: string | undefined =
      `${watcherPath(tenant.subscriptionId, nwRg, nw)}/packetCaptures?api-version=${API}&$top=2`;
    let pages = 0;
    while (next) {
      const r = await t.call('GET', next, { token: tenant.reader });
      expect(r.status).toBe(200);
      expect(r.body.value.length).toBeLessThanOrEqual(2);
      names.push(...r.body.value.map((v: { name: string }) => v.name));
      next = r.body.nextLink ? (r.body.nextLink as string).slice(t.url.length) : undefined;
      if (r.body.nextLink) expect(r.body.nextLink).toMatch(/^http:\/\/127\.0\.0\.1:\d+\//);
      pages++;
    }
    expect(pages).toBeGreaterThan(1);
    expect(new Set(names).size).toBe(names.length);
    expect(names).toEqual(expect.arrayContaining(['life', 'again', 'short', 'fails']));
    expect(names).toEqual(all.body.value.map((v: { name: string }) => v.name));
  });

  it('$expand=status lists each capture with its queryStatus in one call (pages keep it)', async () => {
    const list = `${watcherPath(tenant.subscriptionId, nwRg, nw)}/packetCaptures?api-version=${API}`;
    const all = await t.call('GET', `${list}&$expand=status`, { token: tenant.reader });
    expect(all.status).toBe(200);
    const byName = new Map<string, { properties: { status: { packetCaptureStatus: string } } }>(
      all.body.value.map((v: { name: string }) => [v.name, v]),
    );
    for (const name of ['life', 'fails']) {
      const expected = await status(name);
      expect(byName.get(name)!.properties.status).toEqual(expected);
    }
    expect(byName.get('fails')!.properties.status.packetCaptureStatus).toBe('Error');
    const one = await t.call('GET', `${url('life')}&$expand=STATUS`, { token: tenant.reader });
    expect(one.body.properties.status).toEqual(await status('life'));
    // Without $expand the body stays Azure's PacketCaptureResult.
    expect(
      (await t.call('GET', url('life'), { token: tenant.reader })).body.properties.status,
    ).toBe(undefined);
    const page = await t.call('GET', `${list}&$expand=status&$top=1`, { token: tenant.reader });
    expect(page.body.nextLink).toMatch(/\$expand=status&/);
    expect(page.body.value[0].properties.status.name).toBe(page.body.value[0].name);
    const bad = await t.call('GET', `${list}&$expand=files`, { token: tenant.reader });
    expect(bad.status).toBe(400);
    expect(bad.body.error).toEqual({
      code: 'InvalidRequestContent',
      message: '$expand: "files" is not supported; the one value is "status"',
      target: '$expand',
    });
  });

  it('delete of a running capture stops it first (202, Location), then it is gone', async () => {
    expect(
      (await t.call('PUT', url('doomed'), { token: tenant.contributor, body: body() })).status,
    ).toBe(201);
    await waitFor(
      () => status('doomed'),
      (x) => x.packetCaptureStatus === 'Running',
    );
    const r = await t.call('DELETE', url('doomed'), { token: tenant.contributor });
    expect(r.status).toBe(202);
    const final = await waitFor(
      () => t.call('GET', r.headers.get('location')!.slice(t.url.length)),
      (x) => x.status !== 202,
    );
    expect(final.status).toBe(204);
    expect((await t.call('GET', url('doomed'))).status).toBe(404);
    // A stopped capture is deleted at once; a missing one answers 204 too.
    expect((await t.call('DELETE', url('life'), { token: tenant.contributor })).status).toBe(204);
    expect((await t.call('DELETE', url('life'), { token: tenant.contributor })).status).toBe(204);
  });

  it('reads Unknown with AgentStopped while the agent is away, and its true state when it is back', async () => {
    expect(
      (await t.call('PUT', url('away'), { token: tenant.contributor, body: body() })).status,
    ).toBe(201);
    await waitFor(
      () => status('away'),
      (x) => x.packetCaptureStatus === 'Running',
    );
    await agent.disconnect();
    const away = await waitFor(
      () => status('away'),
      (x) => x.packetCaptureStatus === 'Unknown',
    );
    expect(away.packetCaptureError).toEqual(['AgentStopped']);
    await agent.connect();
    const back = await waitFor(
      () => status('away'),
      (x) => x.packetCaptureStatus === 'Running',
    );
    expect(back.packetCaptureError).toEqual([]);
  });

  it('a stop asked while the agent is away happens when it reconnects', async () => {
    expect(
      (await t.call('PUT', url('later'), { token: tenant.contributor, body: body() })).status,
    ).toBe(201);
    await waitFor(
      () => status('later'),
      (x) => x.packetCaptureStatus === 'Running',
    );
    await agent.disconnect();
    const r = await t.call('POST', url('later', '/stop'), { token: tenant.contributor });
    expect(r.status).toBe(202);
    expect((await status('later')).packetCaptureStatus).toBe('Unknown');
    await agent.connect();
    const s = await waitFor(
      () => status('later'),
      (x) => x.packetCaptureStatus === 'Stopped',
    );
    expect(s.stopReason).toBe('ManualIntervention');
  });

  it('a capture created while its agent is away starts when it connects', async () => {
    await agent.disconnect();
    expect(
      (await t.call('PUT', url('queued'), { token: tenant.contributor, body: body() })).status,
    ).toBe(201);
    expect((await status('queued')).packetCaptureStatus).toBe('Unknown');
    await agent.connect();
    await waitFor(
      () => status('queued'),
      (x) => x.packetCaptureStatus === 'Running',
    );
  });

  it('the server stops a capture that runs past its deadline (backstop)', async () => {
    const deaf = new SyntheticAgent({ ...agent.options, name: 'vm-deaf' });
    await deaf.connect();
    try {
      expect(
        (
          await t.call('PUT', url('overdue'), {
            token: tenant.contributor,
            body: body({
              target: vmId(tenant.subscriptionId, rg, 'vm-deaf'),
              timeLimitInSeconds: 1,
            }),
          })
        ).status,
      ).toBe(201);
      // This agent's own timer is cleared, as if it failed to enforce the limit.
      const entry = await waitFor(
        () => Promise.resolve([...deaf.sessions.entries()][0]),
        (x) => x !== undefined,
      );
      const [id, s] = entry!;
      clearTimeout(s.deadline);
      const stop = await deaf.next((m) => m.type === 'stop' && m.sessionId === id);
      expect(stop).toMatchObject({ reason: 'TimeExceeded' });
      const st = await waitFor(
        () => status('overdue'),
        (x) => x.packetCaptureStatus === 'Stopped',
      );
      expect(st.stopReason).toBe('TimeExceeded');
      // The agent stopped well after the deadline; the capture still ended at it.
      expect(Date.parse(st.captureStopTime) - Date.parse(st.captureStartTime)).toBe(1000);
    } finally {
      await deaf.close();
    }
  });

  it('deleting the VM stops its captures with TargetDeleted and revokes the agent', async () => {
    const doomed = new SyntheticAgent({ ...agent.options, name: 'vm-doomed' });
    await doomed.connect();
    expect(
      (
        await t.call('PUT', url('on-doomed'), {
          token: tenant.contributor,
          body: body({ target: vmId(tenant.subscriptionId, rg, 'vm-doomed') }),
        })
      ).status,
    ).toBe(201);
    await waitFor(
      () => status('on-doomed'),
      (x) => x.packetCaptureStatus === 'Running',
    );
    const gone = doomed.next((m) => m.type === 'deregistered');
    const r = await t.call(
      'DELETE',
      `${vmId(tenant.subscriptionId, rg, 'vm-doomed')}?api-version=2024-07-01`,
      { token: tenant.contributor },
    );
    expect(r.status).toBe(200);
    await gone;
    const s = await status('on-doomed');
    expect(s).toMatchObject({ packetCaptureStatus: 'Stopped', stopReason: 'TargetDeleted' });
    await doomed.disconnect();
    await expect(doomed.connect()).rejects.toThrow(/401/);
  });
});

describe('the agent channel', () => {
  it('answers a plain GET (no WebSocket upgrade) with an Azure error body', async () => {
    const r = await t.call('GET', '/api/v1/agent/channel', { token: agent.credential! });
    expect(r.status).toBe(400);
    expect(r.body.error.code).toBe('InvalidRequestContent');
    const anonymous = await t.call('GET', '/api/v1/agent/channel', { token: '' });
    expect([anonymous.status, anonymous.body.error.code]).toEqual([401, 'AuthenticationFailed']);
  });
});

describe('targets and bodies', () => {
  it('refuses a target in another subscription as if it did not exist', async () => {
    const other = await createTenant(t, 'other');
    const r = await t.call('PUT', url('foreign'), {
      token: tenant.contributor,
      body: body({ target: vmId(other.subscriptionId, rg, 'vm1') }),
    });
    expect(r.status).toBe(400);
    expect(r.body.error).toMatchObject({ code: 'InvalidTarget', target: 'properties.target' });
  });

  it('refuses a VM in another location than the network watcher', async () => {
    const east = new SyntheticAgent({ ...agent.options, name: 'vm-east', location: 'eastus' });
    await east.connect();
    try {
      const r = await t.call('PUT', url('wrong-place'), {
        token: tenant.contributor,
        body: body({ target: vmId(tenant.subscriptionId, rg, 'vm-east') }),
      });
      expect(r.status).toBe(400);
      expect(r.body.error.code).toBe('TargetNotInNetworkWatcherLocation');
    } finally {
      await east.close();
    }
  });

  it('leaves the agent’s own traffic out unless includeOwnTraffic asks for it, and says so', async () => {
    const plain = await t.call('PUT', url('own1'), { token: tenant.contributor, body: body() });
    expect(plain.status).toBe(201);
    expect(plain.body.properties).toMatchObject({ excludesOwnTraffic: true });
    expect(plain.body.properties).not.toHaveProperty('includeOwnTraffic');
    const optedBody = body({ includeOwnTraffic: true });
    const opted = await t.call('PUT', url('own2'), { token: tenant.contributor, body: optedBody });
    expect(opted.status).toBe(201);
    expect(opted.body.properties).toMatchObject({
      includeOwnTraffic: true,
      excludesOwnTraffic: false,
    });
    // The agent is told in the start message (and only when it must include them).
    const starts = await waitFor(
      () =>
        Promise.resolve(
          agent.received.flatMap((m) =>
            m.type === 'start' && /\/packetCaptures\/own[12]$/.test(m.assignment.resourceId)
              ? [m.assignment]
              : [],
          ),
        ),
      (found) => found.length === 2,
    );
    const byName = (n: string) => starts.find((a) => a.resourceId.endsWith(`/${n}`));
    expect(byName('own1')).not.toHaveProperty('includeOwnTraffic');
    expect(byName('own2')).toMatchObject({ includeOwnTraffic: true });
    expect(await status('own1')).toMatchObject({ excludesOwnTraffic: true });
    expect(await status('own2')).toMatchObject({ excludesOwnTraffic: false });
    // A re-PUT of the same body is the same capture; another value is a conflict.
    const again = await t.call('PUT', url('own2'), { token: tenant.contributor, body: optedBody });
    expect(again.status).toBe(200);
    const changed = await t.call('PUT', url('own1'), {
      token: tenant.contributor,
      body: { ...body({ includeOwnTraffic: true }) },
    });
    expect(changed.status).toBe(409);
  });

  it('refuses a storageId that names no registered storage account', async () => {
    const r = await t.call('PUT', url('blob'), {
      token: tenant.contributor,
      body: body({
        storageLocation: {
          storageId:
            '/subscriptions/x/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/sa',
        },
      }),
    });
    expect(r.status).toBe(400);
    expect(r.body.error).toMatchObject({
      code: 'StorageAccountNotFound',
      target: 'properties.storageLocation.storageId',
    });
  });

  const bad: [string, unknown, string, string][] = [
    [
      'wrong type',
      { properties: { target: 5, storageLocation: {} } },
      'InvalidRequestContent',
      'properties.target',
    ],
    ['missing properties', { target: 'x' }, 'InvalidRequestContent', 'properties'],
    [
      'missing storageLocation',
      { properties: { target: 'x' } },
      'InvalidRequestContent',
      'properties.storageLocation',
    ],
    [
      'includeOwnTraffic not a boolean',
      { properties: { target: 'x', storageLocation: {}, includeOwnTraffic: 'yes' } },
      'InvalidRequestContent',
      'properties.includeOwnTraffic',
    ],
    [
      'unknown enum',
      { properties: { target: 'x', targetType: 'AzureLB', storageLocation: {} } },
      'InvalidRequestContent',
      'properties.targetType',
    ],
    [
      'out of range time limit',
      'timeLimitInSeconds:18001',
      'InvalidCaptureLimit',
      'properties.timeLimitInSeconds',
    ],
    [
      'negative bytes',
      'totalBytesPerSession:-1',
      'InvalidCaptureLimit',
      'properties.totalBytesPerSession',
    ],
    [
      'fractional snaplen',
      'bytesToCapturePerPacket:1.5',
      'InvalidCaptureLimit',
      'properties.bytesToCapturePerPacket',
    ],
    [
      'too big',
      'totalBytesPerSession:4294967296',
      'InvalidCaptureLimit',
      'properties.totalBytesPerSession',
    ],
    [
      'bad protocol',
      'filters:[{"protocol":"ICMP"}]',
      'InvalidFilter',
      'properties.filters[0].protocol',
    ],
    [
      'bad address',
      'filters:[{"localIPAddress":"10.0.0.300"}]',
      'InvalidFilter',
      'properties.filters[0].localIPAddress',
    ],
    [
      'bad port range',
      'filters:[{"localPort":"90-80"}]',
      'InvalidFilter',
      'properties.filters[0].localPort',
    ],
    [
      'path outside the root',
      'storageLocation:{"filePath":"/etc/passwd.cap"}',
      'InvalidCapturePath',
      'properties.storageLocation.filePath',
    ],
    [
      'path with ..',
      'storageLocation:{"filePath":"/var/captures/../etc/x.cap"}',
      'InvalidCapturePath',
      'properties.storageLocation.filePath',
    ],
    [
      'no path',
      'storageLocation:{}',
      'InvalidStorageLocation',
      'properties.storageLocation.filePath',
    ],
    [
      'localPath without continuous',
      'storageLocation:{"localPath":"/var/captures/a.cap"}',
      'InvalidStorageLocation',
      'properties.storageLocation.localPath',
    ],
    [
      'ring file count',
      'continuousCapture:true,"storageLocation":{"localPath":"/var/captures/r.cap"},"captureSettings":{"fileCount":10001}',
      'InvalidCaptureLimit',
      'properties.captureSettings.fileCount',
    ],
    [
      'not a VM id',
      'target:"/subscriptions/x/resourceGroups/rg/providers/Microsoft.Network/loadBalancers/lb"',
      'InvalidTarget',
      'properties.target',
    ],
  ];
  for (const [what, spec, code, target] of bad) {
    it(`answers 400 ${code} naming ${target}: ${what}`, async () => {
      let payload: unknown = spec;
      if (typeof spec === 'string') {
        const base = body();
        const patch = JSON.parse(`{"${spec.replace(':', '":')}}`) as Record<string, unknown>;
        payload = { properties: { ...base.properties, ...patch } };
      }
      const r = await t.call('PUT', url(`bad-${++counter}`), {
        token: tenant.contributor,
        body: payload,
      });
      expect(r.status).toBe(400);
      expect(r.body.error).toMatchObject({ code, target });
      expect(r.body.error.message).toContain(target);
    });
  }

  it('answers bad JSON, empty bodies, wrong media types and huge bodies with 4xx codes', async () => {
    const cases: [Parameters<TestServer['call']>[2], number, string][] = [
      [{ raw: '{"properties": ' }, 400, 'InvalidRequestContent'],
      [{ raw: '' }, 400, 'InvalidRequestContent'],
      [
        { raw: 'target=x', headers: { 'content-type': 'application/x-www-form-urlencoded' } },
        415,
        'UnsupportedMediaType',
      ],
      [
        {
          raw: JSON.stringify({
            properties: { target: 'x'.repeat(2 * 1024 * 1024), storageLocation: {} },
          }),
        },
        413,
        'RequestBodyTooLarge',
      ],
      [{ raw: '[1,2,3]' }, 400, 'InvalidRequestContent'],
      [{ raw: 'null' }, 400, 'InvalidRequestContent'],
    ];
    for (const [options, status, code] of cases) {
      const r = await t.call('PUT', url(`raw-${++counter}`), {
        token: tenant.contributor,
        ...options,
      });
      expect([r.status, r.body?.error?.code]).toEqual([status, code]);
    }
    // Nothing was stored by any of them.
    const list = await t.call(
      'GET',
      `${watcherPath(tenant.subscriptionId, nwRg, nw)}/packetCaptures?api-version=${API}&$top=1000`,
    );
    expect(list.status).toBe(200);
  });

  it('requires a published api-version', async () => {
    const path = `${watcherPath(tenant.subscriptionId, nwRg, nw)}`;
    const missing = await t.call('GET', path);
    expect([missing.status, missing.body.error.code]).toEqual([400, 'MissingApiVersionParameter']);
    for (const v of ['2020-11-01', '2026-02-01', 'latest']) {
      const r = await t.call('GET', `${path}?api-version=${v}`);
      expect([r.status, r.body.error.code]).toEqual([400, 'InvalidApiVersionParameter']);
    }
    for (const v of ['2021-08-01', '2025-05-01', '2026-01-01']) {
      expect((await t.call('GET', `${path}?api-version=${v}`)).status).toBe(200);
    }
  });

  it('names are checked', async () => {
    const r = await t.call('PUT', url('bad name!'), { token: tenant.contributor, body: body() });
    expect(r.status).toBe(400);
    expect(r.body.error).toMatchObject({
      code: 'InvalidResourceName',
      target: 'packetCaptureName',
    });
  });
});
