/**
 * Captures on scale sets (issue 11): one ARM capture (`targetType: "AzureVMSS"`) runs on every
 * instance its scope selects, each instance with its own state; the capture's status is their
 * aggregate. A real server on loopback with SYNTHETIC agents enrolled as instances
 * (test/lab/synthetic-agent.ts); the server's clock is moved (the only mock) only where a test
 * needs time to pass.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CaptureAssignment, ServerMessage } from '../../src/model/channel.js';
import type { StartServerOptions } from '../../src/server/start-server.js';
import type { SyntheticAgent, SyntheticAgentOptions } from '../lab/synthetic-agent.js';
import {
  API,
  capturePath,
  instanceAgentOf,
  scaleSetId,
  startServerWithScaleSet,
  vmId,
  waitFor,
  watcherPath,
  type Reply,
  type Tenant,
  type TestServer,
} from '../lab/control-plane.js';

const RG = 'rg1';
const NW_RG = 'NetworkWatcherRG';
const NW = 'NetworkWatcher_westeurope';
const SS = 'web';
const AGENT = { resourceGroup: RG, progressIntervalMs: 100 };

interface Scope {
  readonly include?: readonly string[];
  readonly exclude?: readonly string[];
}

/** A test's view of one server: its tenant, its scale set's agents, and calls on its captures. */
class Fleet {
  /** Agents connected later (join), closed with the fleet. */
  readonly #joined: SyntheticAgent[] = [];

  constructor(
    readonly t: TestServer,
    readonly tenant: Tenant,
    readonly agents: SyntheticAgent[],
  ) {}

  /** A server with scale set `web` of three connected instances. */
  static async start(server?: Partial<StartServerOptions>): Promise<Fleet> {
    const { t, tenant, agents } = await startServerWithScaleSet({
      scaleSet: SS,
      instances: 3,
      agent: AGENT,
      ...(server ? { server } : {}),
    });
    return new Fleet(t, tenant, agents);
  }

  /** Connects one more agent, instance `id` of scale set `ss`. */
  async join(ss: string, id: string, options: Partial<SyntheticAgentOptions> = {}) {
    const agent = instanceAgentOf(this.t, this.tenant, ss, id, { ...AGENT, ...options });
    this.#joined.push(agent);
    await agent.connect();
    return agent;
  }

  async close(): Promise<void> {
    for (const a of [...this.agents, ...this.#joined]) await a.close();
    await this.t.close();
  }

  get sub(): string {
    return this.tenant.subscriptionId;
  }

  url(name: string, suffix = ''): string {
    return `${capturePath(this.sub, NW_RG, NW, name)}${suffix}?api-version=${API}`;
  }

  instanceId(id: string, ss = SS): string {
    return `${scaleSetId(this.sub, RG, ss)}/virtualMachines/${id}`;
  }

  body(name: string, scope?: Scope, extra: Record<string, unknown> = {}, ss = SS) {
    return {
      properties: {
        target: scaleSetId(this.sub, RG, ss),
        targetType: 'AzureVMSS',
        ...(scope ? { scope } : {}),
        storageLocation: { filePath: `/var/captures/${name}.cap` },
        timeLimitInSeconds: 600,
        ...extra,
      },
    };
  }

  create(name: string, scope?: Scope, extra?: Record<string, unknown>, ss?: string) {
    return this.t.call('PUT', this.url(name), {
      token: this.tenant.contributor,
      body: this.body(name, scope, extra, ss),
    });
  }

  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- a JSON body, as the tests read it
  async status(name: string): Promise<any> {
    const r = await this.t.call('POST', this.url(name, '/queryStatus'), {
      token: this.tenant.reader,
    });
    expect(r.status, r.text).toBe(200);
    return r.body;
  }

  /** Polls an Azure-AsyncOperation until it is no longer InProgress; its body. */
  async operation(reply: Reply) {
    const done = await waitFor(
      this.#poll(reply, 'azure-asyncoperation'),
      (r) => r.body?.status !== 'InProgress',
    );
    return done.body as { status: string; error?: { code: string } };
  }

  /** Polls a Location until it is no longer 202; its final status (200, 204, or 500 failed). */
  async result(reply: Reply): Promise<number> {
    return (await waitFor(this.#poll(reply, 'location'), (r) => r.status !== 202)).status;
  }

  #poll(reply: Reply, header: 'azure-asyncoperation' | 'location') {
    const target = reply.headers.get(header);
    expect(target).toMatch(/^http/);
    return () =>
      this.t.call('GET', target!.slice(this.t.url.length), { token: this.tenant.reader });
  }

  waitStatus(name: string, status: string) {
    return waitFor(
      () => this.status(name),
      (s) => s.packetCaptureStatus === status,
    );
  }
}

/** The starts an agent received for a capture (its children are named `{capture}/{id}`). */
function startsFor(agent: SyntheticAgent, capture: string): CaptureAssignment[] {
  return agent.received.flatMap((m: ServerMessage) =>
    m.type === 'start' && m.assignment.resourceId.includes(`/packetCaptures/${capture}/`)
      ? [m.assignment]
      : [],
  );
}

function stopsFor(agent: SyntheticAgent, capture: string): ServerMessage[] {
  const ids = new Set(startsFor(agent, capture).map((a) => a.sessionId));
  return agent.received.filter((m) => m.type === 'stop' && ids.has(m.sessionId));
}

describe('scale-set captures', () => {
  let f: Fleet;

  beforeAll(async () => {
    f = await Fleet.start();
  });

  afterAll(async () => {
    await f?.close();
  });

  it('with an empty scope runs on every instance; the list shows the one capture', async () => {
    const r = await f.create('all');
    expect(r.status, r.text).toBe(201);
    expect(r.body.properties).toMatchObject({
      target: scaleSetId(f.sub, RG, SS),
      targetType: 'AzureVMSS',
      provisioningState: 'Updating',
    });
    expect(await f.operation(r)).toMatchObject({ status: 'Succeeded' });
    for (const agent of f.agents) expect(startsFor(agent, 'all')).toHaveLength(1);

    const s = await waitFor(
      () => f.status('all'),
      (x) =>
        x.instances.every(
          (i: { status: string; packets: number }) => i.status === 'Running' && i.packets > 0,
        ),
    );
    expect(s.packetCaptureStatus).toBe('Running');
    expect(s.instances.map((i: { instanceId: string }) => i.instanceId)).toEqual(['0', '1', '2']);
    expect(s.instances.map((i: { name: string }) => i.name)).toEqual(['web_0', 'web_1', 'web_2']);
    const sum = (k: string) =>
      s.instances.reduce((n: number, i: Record<string, number>) => n + i[k]!, 0);
    expect(s.packetsCaptured).toBe(sum('packets'));
    expect(s.bytesCaptured).toBe(sum('bytes'));
    expect(s.packetsDropped).toBe(sum('drops'));

    const list = await f.t.call(
      'GET',
      `${watcherPath(f.sub, NW_RG, NW)}/packetCaptures?api-version=${API}&$expand=status`,
      { token: f.tenant.reader },
    );
    expect(list.status).toBe(200);
    const all = list.body.value.find((c: { name: string }) => c.name === 'all');
    expect(all.properties.status.instances).toHaveLength(3);
    expect(list.body.value.every((c: { name: string }) => !c.name.includes('/'))).toBe(true);
    const got = await f.t.call('GET', f.url('all'), { token: f.tenant.reader });
    expect(got.body.properties).not.toHaveProperty('status');
  });

  it('with include runs only on the included instances (ids or resource ids, any case)', async () => {
    // The target spelled in other case: instances keep the names they enrolled with.
    const r = await f.create(
      'some',
      { include: ['1', f.instanceId('2').toUpperCase()] },
      {},
      'WEB',
    );
    expect(r.status, r.text).toBe(201);
    expect(r.body.properties.scope).toEqual({ include: ['1', f.instanceId('2').toUpperCase()] });
    const s = await f.waitStatus('some', 'Running');
    expect(s.instances.map((i: { instanceId: string }) => i.instanceId)).toEqual(['1', '2']);
    expect(s.instances.map((i: { name: string }) => i.name)).toEqual(['web_1', 'web_2']);
    expect(startsFor(f.agents[0]!, 'some')).toEqual([]);
  });

  it('with exclude runs on every instance but the excluded', async () => {
    const r = await f.create('most', { exclude: ['0'] });
    expect(r.status, r.text).toBe(201);
    const s = await f.waitStatus('most', 'Running');
    expect(s.instances.map((i: { instanceId: string }) => i.instanceId)).toEqual(['1', '2']);
    expect(startsFor(f.agents[0]!, 'most')).toEqual([]);
  });

  it('refuses a bad scope or target with 400 naming the field, storing nothing', async () => {
    const cases: [string, Record<string, unknown>, string, string][] = [
      ['v1', f.body('v1', { include: ['0', '7'] }), 'InvalidScope', 'properties.scope.include[1]'],
      [
        'v2',
        f.body('v2', { exclude: [f.instanceId('0', 'other')] }),
        'InvalidScope',
        'properties.scope.exclude[0]',
      ],
      [
        'v3',
        f.body('v3', { include: ['0', '1'], exclude: ['1'] }),
        'InvalidScope',
        'properties.scope.exclude[0]',
      ],
      ['v4', f.body('v4', { exclude: ['0', '1', '2'] }), 'InvalidScope', 'properties.scope'],
      ['v5', f.body('v5', undefined, {}, 'nosuchset'), 'InvalidTarget', 'properties.target'],
      [
        'v6',
        f.body('v6', undefined, { target: vmId(f.sub, RG, 'web_0') }),
        'InvalidTarget',
        'properties.target',
      ],
      [
        'v7',
        f.body('v7', { include: ['0'] }, { targetType: 'AzureVM', target: vmId(f.sub, RG, 'vm1') }),
        'InvalidRequestContent',
        'properties.scope',
      ],
    ];
    for (const [name, body, code, target] of cases) {
      const r = await f.t.call('PUT', f.url(name), { token: f.tenant.contributor, body });
      expect(r.status, `${name}: ${r.text}`).toBe(400);
      expect(r.body.error, name).toMatchObject({ code, target });
      expect((await f.t.call('GET', f.url(name), { token: f.tenant.reader })).status).toBe(404);
    }
  });

  it('a re-PUT of the same body is 200, of another scope 409', async () => {
    expect((await f.create('again', { include: ['0'] })).status).toBe(201);
    const same = await f.create('again', { include: ['0'] });
    expect(same.status, same.text).toBe(200);
    const other = await f.create('again', { include: ['1'] });
    expect(other.status).toBe(409);
    expect(other.body.error.code).toBe('PacketCaptureAlreadyExists');
    expect(startsFor(f.agents[0]!, 'again')).toHaveLength(1);
  });

  it('is Stopped when every instance ended, with their common reason and the last stop', async () => {
    expect((await f.create('short', undefined, { timeLimitInSeconds: 1 })).status).toBe(201);
    const s = await f.waitStatus('short', 'Stopped');
    expect(s.stopReason).toBe('TimeExceeded');
    expect(s.instances.every((i: { status: string }) => i.status === 'Stopped')).toBe(true);
    const last = Math.max(
      ...s.instances.map((i: { captureStopTime: string }) => Date.parse(i.captureStopTime)),
    );
    expect(Date.parse(s.captureStopTime)).toBe(last);
  });

  it('stop acts on every instance; the operation completes when all ended', async () => {
    expect((await f.create('stopme')).status).toBe(201);
    await f.waitStatus('stopme', 'Running');
    const r = await f.t.call('POST', f.url('stopme', '/stop'), { token: f.tenant.contributor });
    expect(r.status).toBe(202);
    expect(await f.result(r)).toBe(200);
    for (const agent of f.agents) expect(stopsFor(agent, 'stopme')).toHaveLength(1);
    const s = await f.status('stopme');
    expect(s).toMatchObject({ packetCaptureStatus: 'Stopped', stopReason: 'ManualIntervention' });
    expect(s).not.toHaveProperty('stopRequested');
    expect(s.instances.map((i: { stopReason: string }) => i.stopReason)).toEqual([
      'ManualIntervention',
      'ManualIntervention',
      'ManualIntervention',
    ]);
  });

  it('delete acts on every instance and forgets the capture once all ended', async () => {
    expect((await f.create('deleteme')).status).toBe(201);
    await f.waitStatus('deleteme', 'Running');
    const r = await f.t.call('DELETE', f.url('deleteme'), { token: f.tenant.contributor });
    expect(r.status).toBe(202);
    expect(await f.result(r)).toBe(204);
    for (const agent of f.agents) expect(stopsFor(agent, 'deleteme')).toHaveLength(1);
    expect((await f.t.call('GET', f.url('deleteme'), { token: f.tenant.reader })).status).toBe(404);
    // A name like a child's is never a capture of the API.
    const child = await f.t.call('GET', f.url('deleteme%2F0'), { token: f.tenant.reader });
    expect(child.status).toBe(400);
  });

  it('audits the create with the scale set as target and the instances selected', async () => {
    expect((await f.create('audited', { exclude: ['2'] })).status).toBe(201);
    const r = await f.t.call('GET', `/api/v1/subscriptions/${f.sub}/audit`, {
      token: f.tenant.owner,
    });
    expect(r.status).toBe(200);
    const entry = r.body.value.find(
      (e: { action: string; resourceId: string }) =>
        e.action === 'packetCapture.create' && e.resourceId.endsWith('/packetCaptures/audited'),
    );
    expect(entry.detail).toMatchObject({
      target: scaleSetId(f.sub, RG, SS),
      instances: ['0', '1'],
    });
  });

  it('fails its create only when every instance failed; one failure leaves the rest running', async () => {
    const failing = { failStarts: { code: 'CaptureFailed', message: 'no tcpdump' } };
    await f.join('bad', '0', failing);
    await f.join('bad', '1', failing);
    await f.join('half', '0', failing);
    await f.join('half', '1');

    const r = await f.create('allfail', undefined, {}, 'bad');
    expect(r.status, r.text).toBe(201);
    expect(await f.operation(r)).toMatchObject({
      status: 'Failed',
      error: { code: 'CaptureFailed' },
    });
    const failed = await f.status('allfail');
    expect(failed).toMatchObject({ packetCaptureStatus: 'Error', stopReason: 'Error' });
    expect(failed.packetCaptureErrorDetails).toHaveLength(2);

    const h = await f.create('halffail', undefined, {}, 'half');
    expect(await f.operation(h)).toMatchObject({ status: 'Succeeded' });
    const s = await f.waitStatus('halffail', 'Running');
    expect(s.instances).toMatchObject([
      { instanceId: '0', status: 'Error', errors: [{ code: 'CaptureFailed' }] },
      { instanceId: '1', status: 'Running' },
    ]);
  });
});

describe('scale-set captures over time: offline instances, late joiners, deleted instances', () => {
  const TIMEOUT_MS = 60_000;
  let f: Fleet;
  let skewMs = 0;

  beforeAll(async () => {
    // The interval sweeper stays out of the way; the tests sweep by hand.
    f = await Fleet.start({
      sweepIntervalMs: 3_600_000,
      operationTimeoutMs: TIMEOUT_MS,
      now: () => new Date(Date.now() + skewMs),
    });
  });

  afterAll(async () => {
    await f?.close();
  });

  it('an instance offline at the start gets its own AgentStopped; the others run on', async () => {
    await f.agents[2]!.disconnect();
    const r = await f.create('offline');
    expect(r.status, r.text).toBe(201);
    expect(await f.operation(r)).toMatchObject({ status: 'Succeeded' });
    let s = await f.waitStatus('offline', 'Running');
    expect(s.instances[2]).toMatchObject({
      instanceId: '2',
      status: 'Unknown',
      agentConnectionState: 'Disconnected',
    });

    skewMs += TIMEOUT_MS + 1000;
    expect(await f.t.server.control.sweepOperations()).toBe(1);
    s = await f.status('offline');
    expect(s.packetCaptureStatus).toBe('Running');
    expect(s.instances.map((i: { status: string }) => i.status)).toEqual([
      'Running',
      'Running',
      'Error',
    ]);
    expect(s.instances[2].errors).toEqual([expect.objectContaining({ code: 'AgentStopped' })]);
    expect(s.packetCaptureError).toEqual(['AgentStopped']);
  });

  it('a late instance joins empty and exclude-only scopes for the time left, never an include', async () => {
    for (const [name, scope] of [
      ['late-all', undefined],
      ['late-exc', { exclude: ['1'] }],
      ['late-inc', { include: ['0', '1'] }],
    ] as const) {
      expect((await f.create(name, scope)).status).toBe(201);
      await f.waitStatus(name, 'Running');
    }
    // 100 s later a new instance enrolls and connects.
    skewMs += 100_000;
    const late = await f.join(SS, '3');
    const joined = await waitFor(
      () => Promise.resolve([...startsFor(late, 'late-all'), ...startsFor(late, 'late-exc')]),
      (starts) => starts.length === 2,
    );
    for (const a of joined) {
      expect(a.timeLimitInSeconds).toBeLessThanOrEqual(500);
      expect(a.timeLimitInSeconds).toBeGreaterThan(400);
    }
    expect(startsFor(late, 'late-inc')).toEqual([]);
    const s = await waitFor(
      () => f.status('late-all'),
      (x) =>
        x.instances.find((i: { instanceId: string }) => i.instanceId === '3')?.status === 'Running',
    );
    expect(s.instances.map((i: { instanceId: string }) => i.instanceId)).toEqual([
      '0',
      '1',
      '2',
      '3',
    ]);
    expect((await f.status('late-inc')).instances).toHaveLength(2);

    // Reconnecting joins nothing twice.
    await late.disconnect();
    await late.connect();
    expect(startsFor(late, 'late-all')).toHaveLength(1);
  });

  it('deleting an instance stops its part with TargetDeleted; the capture carries on', async () => {
    const del = await f.t.call('DELETE', `${f.instanceId('3')}?api-version=2024-07-01`, {
      token: f.tenant.contributor,
    });
    expect(del.status, del.text).toBe(200);
    const s = await waitFor(
      () => f.status('late-all'),
      (x) => x.instances[3]?.status === 'Stopped',
    );
    expect(s.instances[3]).toMatchObject({ instanceId: '3', stopReason: 'TargetDeleted' });
    expect(s.packetCaptureStatus).toBe('Running');
  });
});

describe('scale-set captures and the quota, and their watcher', () => {
  let f: Fleet;

  beforeAll(async () => {
    f = await Fleet.start({ quota: 2 });
  });

  afterAll(async () => {
    await f?.close();
  });

  it('a capture counts once, whatever its number of instances', async () => {
    expect((await f.create('q1')).status).toBe(201);
    expect((await f.create('q2')).status).toBe(201);
    const third = await f.create('q3');
    expect(third.status).toBe(429);
    expect(third.body.error.code).toBe('PacketCaptureQuotaExceeded');
    expect(third.body.error.message).toMatch(/already has 2 packet captures/);
    const stop = await f.t.call('POST', f.url('q1', '/stop'), { token: f.tenant.contributor });
    expect(await f.result(stop)).toBe(200);
    expect((await f.create('q3')).status).toBe(201);
  });

  it("deleting the watcher ends every instance's part", async () => {
    await f.waitStatus('q3', 'Running');
    const del = await f.t.call('DELETE', `${watcherPath(f.sub, NW_RG, NW)}?api-version=${API}`, {
      token: f.tenant.contributor,
    });
    expect(del.status, del.text).toBeLessThan(300);
    for (const agent of f.agents) {
      expect(stopsFor(agent, 'q3')).toHaveLength(1);
      expect(stopsFor(agent, 'q2')).toHaveLength(1);
    }
  });
});
