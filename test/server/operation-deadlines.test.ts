/**
 * Every long-running operation ends, even when the agent never answers: a real server on
 * loopback whose clock the test moves (the only mock), and SYNTHETIC agents that ignore starts
 * or stops (test/lab/synthetic-agent.ts). The sweep is called directly after moving the clock.
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
  type Reply,
  type Tenant,
  type TestServer,
} from '../lab/control-plane.js';

const RG = 'rg1';
const NW_RG = 'NetworkWatcherRG';
const NW = 'NetworkWatcher_westeurope';
const TIMEOUT_MS = 60_000;

let t: TestServer;
let tenant: Tenant;
/** How far the server's clock runs ahead of the real one. */
let skewMs = 0;
const agents: SyntheticAgent[] = [];

beforeAll(async () => {
  // The interval sweeper stays out of the way; the tests sweep by hand.
  t = await startTestServer({
    sweepIntervalMs: 3_600_000,
    operationTimeoutMs: TIMEOUT_MS,
    now: () => new Date(Date.now() + skewMs),
  });
  tenant = await createTenant(t);
});

afterAll(async () => {
  for (const a of agents) await a.close();
  await t?.close();
});

async function connectAgent(
  name: string,
  behaviour: { ignoreStarts?: boolean; ignoreStops?: boolean },
): Promise<SyntheticAgent> {
  const agent = syntheticAgentOf(t, tenant, {
    resourceGroup: RG,
    name,
    progressIntervalMs: 200,
    ...behaviour,
  });
  agents.push(agent);
  await agent.connect();
  return agent;
}

const url = (name: string, suffix = '') =>
  `${capturePath(tenant.subscriptionId, NW_RG, NW, name)}${suffix}?api-version=${API}`;

function create(name: string, vm: string): Promise<Reply> {
  return t.call('PUT', url(name), {
    token: tenant.contributor,
    body: {
      properties: {
        target: vmId(tenant.subscriptionId, RG, vm),
        storageLocation: { filePath: `/var/captures/${name}.cap` },
      },
    },
  });
}

async function status(name: string) {
  const r = await t.call('POST', url(name, '/queryStatus'), { token: tenant.reader });
  expect(r.status).toBe(200);
  return r.body;
}

/** The operation behind a polling URL of a reply (Azure-AsyncOperation or Location). */
function poll(reply: Reply, header: 'azure-asyncoperation' | 'location') {
  const target = reply.headers.get(header)!;
  expect(target).toMatch(/^http/);
  return () => t.call('GET', target.slice(t.url.length), { token: tenant.reader });
}

/** Moves the server's clock past the timeout and runs the sweep. */
async function pastTheDeadline(): Promise<number> {
  skewMs += TIMEOUT_MS + 1000;
  return t.server.control.sweepOperations();
}

describe('operations an agent never acknowledges', () => {
  it('a start the connected agent never acknowledges fails with AgentStopped at the deadline', async () => {
    const deaf = await connectAgent('vm-no-start', { ignoreStarts: true });
    const r = await create('never-started', 'vm-no-start');
    expect(r.status).toBe(201);
    const operation = poll(r, 'azure-asyncoperation');
    // Before the deadline a sweep changes nothing.
    expect(await t.server.control.sweepOperations()).toBe(0);
    expect((await operation()).body.status).toBe('InProgress');
    expect((await status('never-started')).packetCaptureStatus).toBe('NotStarted');

    const undo = deaf.next((m) => m.type === 'stop');
    expect(await pastTheDeadline()).toBe(1);
    const done = await operation();
    expect(done.body).toMatchObject({ status: 'Failed', error: { code: 'AgentStopped' } });
    expect(done.body.error.message).toMatch(/did not acknowledge the start within 60 s/);
    const s = await status('never-started');
    expect(s).toMatchObject({
      packetCaptureStatus: 'Error',
      stopReason: 'Error',
      packetCaptureError: ['AgentStopped'],
    });
    expect(s.packetCaptureErrorDetails[0].message).toMatch(/did not acknowledge the start/);
    const get = await t.call('GET', url('never-started'), { token: tenant.reader });
    expect(get.body.properties.provisioningState).toBe('Failed');
    // A start that still arrives is undone.
    expect(await undo).toMatchObject({ type: 'stop' });
  });

  it('a stop the agent never acknowledges is forced: Stopped, the operation Succeeded, the agent told again when it is back', async () => {
    const deaf = await connectAgent('vm-no-stop', { ignoreStops: true });
    expect((await create('never-stopped', 'vm-no-stop')).status).toBe(201);
    await waitFor(
      () => status('never-stopped'),
      (x) => x.packetCaptureStatus === 'Running',
    );
    const r = await t.call('POST', url('never-stopped', '/stop'), { token: tenant.contributor });
    expect(r.status).toBe(202);
    const result = poll(r, 'location');
    expect(await t.server.control.sweepOperations()).toBe(0);
    expect((await result()).status).toBe(202);

    expect(await pastTheDeadline()).toBe(1);
    expect((await result()).status).toBe(200);
    const s = await status('never-stopped');
    expect(s).toMatchObject({
      packetCaptureStatus: 'Stopped',
      stopReason: 'ManualIntervention',
      packetCaptureError: ['AgentStopped'],
    });
    expect(s.packetCaptureErrorDetails[0].message).toMatch(
      /^Stop forced: the agent did not acknowledge the stop within 60 s/,
    );
    // The agent still runs it; reconnecting, it is told to stop.
    await deaf.disconnect();
    const told = deaf.next((m) => m.type === 'stop');
    await deaf.connect();
    expect(await told).toMatchObject({ type: 'stop', reason: 'ManualIntervention' });
  });

  it('a delete the agent never acknowledges is forced too: the capture is gone', async () => {
    await connectAgent('vm-no-delete', { ignoreStops: true });
    expect((await create('never-deleted', 'vm-no-delete')).status).toBe(201);
    await waitFor(
      () => status('never-deleted'),
      (x) => x.packetCaptureStatus === 'Running',
    );
    const r = await t.call('DELETE', url('never-deleted'), { token: tenant.contributor });
    expect(r.status).toBe(202);
    const result = poll(r, 'location');
    expect((await result()).status).toBe(202);
    expect(await pastTheDeadline()).toBe(1);
    expect((await result()).status).toBe(204);
    expect((await t.call('GET', url('never-deleted'))).status).toBe(404);
  });

  it('a stop asked while the agent is away is forced at the deadline', async () => {
    const away = await connectAgent('vm-away', {});
    expect((await create('away-stop', 'vm-away')).status).toBe(201);
    await waitFor(
      () => status('away-stop'),
      (x) => x.packetCaptureStatus === 'Running',
    );
    await away.disconnect();
    const r = await t.call('POST', url('away-stop', '/stop'), { token: tenant.contributor });
    expect(r.status).toBe(202);
    expect(await pastTheDeadline()).toBe(1);
    expect((await poll(r, 'location')()).status).toBe(200);
    const s = await status('away-stop');
    expect(s).toMatchObject({ packetCaptureStatus: 'Stopped', stopReason: 'ManualIntervention' });
    expect(s.packetCaptureErrorDetails[0].message).toMatch(/the agent was not connected/);
    // Back, the agent is told to stop it, and does; the forced verdict stays.
    await away.connect();
    await waitFor(
      () => Promise.resolve([...away.sessions.values()].filter((x) => x.state === 'Running')),
      (running) => running.length === 0,
    );
    expect(away.received.filter((m) => m.type === 'stop')).toHaveLength(1);
    expect(await status('away-stop')).toMatchObject({
      packetCaptureStatus: 'Stopped',
      stopReason: 'ManualIntervention',
    });
  });

  it('operations a previous server process opened are held to their deadline too', async () => {
    await connectAgent('vm-restart', { ignoreStarts: true });
    const r = await create('before-restart', 'vm-restart');
    expect(r.status).toBe(201);
    // A new control plane on the same store knows nothing in memory about that operation.
    const { ControlPlane } = await import('../../src/control/control-plane.js');
    const fresh = new ControlPlane({
      store: t.server.store,
      agents: { isConnected: () => false, send: () => false },
      operationTimeoutMs: TIMEOUT_MS,
      now: () => new Date(Date.now() + skewMs),
    });
    skewMs += TIMEOUT_MS + 1000;
    expect(await fresh.sweepOperations()).toBeGreaterThanOrEqual(1);
    const done = await poll(r, 'azure-asyncoperation')();
    expect(done.body).toMatchObject({ status: 'Failed', error: { code: 'AgentStopped' } });
    expect(done.body.error.message).toMatch(/was not connected within 60 s/);
  });
});
