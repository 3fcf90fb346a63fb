/**
 * The official Azure SDK for JavaScript, @azure/arm-network 36.0.0 (api-version 2025-05-01),
 * against the built `wirewatch server` binary over HTTPS with its self-signed CA.
 *
 * The target VMs' agents are SYNTHETIC (test/lab/synthetic-agent.ts): they enroll and speak the
 * real channel protocol, but their captures are invented — no packet is captured here. What is
 * under test is the control plane's Azure API as the SDK uses it.
 *
 * The SDK runs in child processes (test/sdk/sdk-driver.mjs), because NODE_EXTRA_CA_CERTS is
 * read only when a process starts.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  API,
  apiClient,
  capturePath,
  createTenant,
  vmId,
  waitFor,
  watcherPath,
  type ApiClient,
  type Tenant,
} from './lab/control-plane.js';
import { SyntheticAgent } from './lab/synthetic-agent.js';

const cli = fileURLToPath(new URL('../dist/src/cli/main.js', import.meta.url));
const driver = fileURLToPath(new URL('./sdk/sdk-driver.mjs', import.meta.url));

const nwRg = 'NetworkWatcherRG';
const nw = 'NetworkWatcher_westeurope';
const rg = 'rg1';
const adminToken = `wwadmin_sdk_${Math.random().toString(36).slice(2)}`;

let dataDir: string;
let server: ChildProcess | undefined;
let serverExited: Promise<void> | undefined;
let serverOutput = '';
let url: string;
let caPath: string;
let native: ApiClient;
let tenant: Tenant;
const agents: SyntheticAgent[] = [];

/** What the driver prints: the SDK's result or its RestError, the raw body, the HTTP trace. */
interface DriverOutput {
  // The SDK's models, as JSON; tests inspect them.
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  readonly result?: any;
  readonly error?: { name: string; code?: string; statusCode?: number; message: string };
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  readonly raw?: any;
  readonly trace: {
    method: string;
    url: string;
    status: number;
    headers: Record<string, string>;
    body?: string;
  }[];
}

/** Runs one SDK scenario in a child process with the wirewatch CA trusted. */
function sdk(
  scenario: string,
  args: Record<string, unknown> = {},
  token = tenant.contributor,
): Promise<DriverOutput> {
  return new Promise((resolve, reject) => {
    execFile(
      process.execPath,
      [driver, scenario, JSON.stringify({ rg: nwRg, nw, ...args })],
      {
        env: {
          ...process.env,
          NODE_EXTRA_CA_CERTS: caPath,
          WW_URL: url,
          WW_TOKEN: token,
          WW_SUBSCRIPTION: tenant.subscriptionId,
        },
        timeout: 45_000,
        maxBuffer: 16 * 1024 * 1024,
      },
      (err, stdout, stderr) => {
        const line = stdout.trim().split('\n').pop() ?? '';
        try {
          resolve(JSON.parse(line) as DriverOutput);
        } catch {
          reject(new Error(`sdk-driver ${scenario} failed (${err?.message}): ${stderr}${stdout}`));
        }
      },
    );
  });
}

let counter = 0;
function parameters(overrides: Record<string, unknown> = {}, vm = 'vm1') {
  return {
    target: vmId(tenant.subscriptionId, rg, vm),
    storageLocation: { filePath: `/var/captures/sdk${++counter}.cap` },
    ...overrides,
  };
}

beforeAll(async () => {
  dataDir = await mkdtemp(path.join(tmpdir(), 'ww-azure-sdk-'));
  const child = spawn(
    process.execPath,
    [
      cli,
      'server',
      '--data-dir',
      dataDir,
      '--listen',
      '127.0.0.1:0',
      '--tls',
      'self-signed',
      '--log-level',
      'warn',
    ],
    {
      stdio: ['ignore', 'pipe', 'pipe'],
      // Its own process group, killed as a whole in afterAll.
      detached: true,
      env: { ...process.env, WIREWATCH_ADMIN_TOKEN: adminToken },
    },
  );
  server = child;
  serverExited = new Promise((resolve) => child.once('exit', () => resolve()));
  // Logs go to stdout; keep the tail for failure messages, and keep the pipe drained.
  child.stdout.on(
    'data',
    (d: Buffer) => (serverOutput = (serverOutput + d.toString()).slice(-8000)),
  );
  url = await new Promise<string>((resolve, reject) => {
    let stderr = '';
    const timer = setTimeout(() => reject(new Error(`server did not start: ${stderr}`)), 30_000);
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
      serverOutput = (serverOutput + d.toString()).slice(-8000);
      const m = /listening on (https:\/\/\S+)/.exec(stderr);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]!);
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`server exited with ${code}: ${stderr}`));
    });
  });
  caPath = path.join(dataDir, 'tls', 'ca.crt');
  const ca = await readFile(caPath);
  native = apiClient(url, adminToken, { ca });
  tenant = await createTenant(native, 'azure-sdk');
  for (const [name, more] of [
    ['vm1', { progressIntervalMs: 200 }],
    // Carries the many captures of the list test; slow progress keeps the server quiet.
    ['vm2', { progressIntervalMs: 60_000 }],
    [
      'vm-broken',
      { failStarts: { code: 'CaptureFailed', message: 'interface eth9 does not exist' } },
    ],
    // Scale set sdkss: instances 0 and 1.
    ['sdkss-0', { progressIntervalMs: 200, scaleSet: 'sdkss', instanceId: '0' }],
    ['sdkss-1', { progressIntervalMs: 200, scaleSet: 'sdkss', instanceId: '1' }],
  ] as const) {
    const agent = new SyntheticAgent({
      serverUrl: url,
      ca,
      enrollToken: tenant.enrollToken,
      subscriptionId: tenant.subscriptionId,
      resourceGroup: rg,
      name,
      location: 'westeurope',
      ...more,
    });
    agents.push(agent);
    await agent.connect();
  }
});

afterAll(async () => {
  try {
    await Promise.allSettled(agents.map((a) => a.close()));
  } finally {
    if (server?.pid !== undefined && server.exitCode === null && server.signalCode === null) {
      process.kill(-server.pid, 'SIGTERM');
      const killer = setTimeout(() => {
        try {
          process.kill(-server!.pid!, 'SIGKILL');
        } catch {
          // Gone already.
        }
      }, 5000);
      await serverExited;
      clearTimeout(killer);
    }
    if (dataDir) await rm(dataDir, { recursive: true, force: true });
  }
});

const nativeStatus = async (name: string) =>
  (
    await native.call(
      'POST',
      `${capturePath(tenant.subscriptionId, nwRg, nw, name)}/queryStatus?api-version=${API}`,
      { token: tenant.reader },
    )
  ).body;

describe('Azure SDK (@azure/arm-network 36.0.0) against wirewatch server over HTTPS', () => {
  it('networkWatchers.get reads the watcher the first agent of westeurope brought', async () => {
    const out = await sdk('watcherGet', {}, tenant.reader);
    expect(out.error, serverOutput).toBeUndefined();
    expect(out.result).toMatchObject({
      id: watcherPath(tenant.subscriptionId, nwRg, nw),
      name: nw,
      type: 'Microsoft.Network/networkWatchers',
      location: 'westeurope',
      provisioningState: 'Succeeded',
    });
    expect(out.trace).toEqual([
      expect.objectContaining({
        method: 'GET',
        url: `${url}${watcherPath(tenant.subscriptionId, nwRg, nw)}?api-version=${API}`,
        status: 200,
      }),
    ]);
  });

  it('networkWatchers.listAll lists it', async () => {
    const out = await sdk('watchersListAll', {}, tenant.reader);
    expect(out.error).toBeUndefined();
    expect(out.result).toEqual([expect.objectContaining({ name: nw, location: 'westeurope' })]);
  });

  it('packetCaptures.beginCreateAndWait creates a capture and resolves when it runs', async () => {
    const out = await sdk('create', {
      name: 'sdk-life',
      parameters: parameters({
        bytesToCapturePerPacket: 128,
        totalBytesPerSession: 10_485_760,
        timeLimitInSeconds: 600,
        filters: [{ protocol: 'TCP', localPort: '443' }],
      }),
    });
    expect(out.error, JSON.stringify(out.trace)).toBeUndefined();
    expect(out.result).toMatchObject({
      name: 'sdk-life',
      id: capturePath(tenant.subscriptionId, nwRg, nw, 'sdk-life'),
      provisioningState: 'Succeeded',
      target: vmId(tenant.subscriptionId, rg, 'vm1'),
      bytesToCapturePerPacket: 128,
      totalBytesPerSession: 10_485_760,
      timeLimitInSeconds: 600,
      storageLocation: { filePath: '/var/captures/sdk1.cap' },
      filters: [{ protocol: 'TCP', localPort: '443' }],
    });
    // The LRO as Azure does it: 201 with Azure-AsyncOperation, polled until Succeeded, then a
    // final GET of the resource.
    const [put, ...rest] = out.trace;
    expect(put).toMatchObject({ method: 'PUT', status: 201 });
    expect(put!.headers['azure-asyncoperation']).toMatch(
      new RegExp(
        `^${url}/subscriptions/${tenant.subscriptionId}/providers/Microsoft.Network/locations/westeurope/operations/`,
      ),
    );
    const polls = rest.slice(0, -1);
    expect(polls.length).toBeGreaterThan(0);
    for (const p of polls) {
      expect(p).toMatchObject({ method: 'GET', status: 200 });
      expect(p.url).toContain('/operations/');
    }
    expect(JSON.parse(polls.at(-1)!.body!)).toMatchObject({ status: 'Succeeded' });
    expect(rest.at(-1)).toMatchObject({
      method: 'GET',
      url: `${url}${capturePath(tenant.subscriptionId, nwRg, nw, 'sdk-life')}?api-version=${API}`,
      status: 200,
    });
  });

  it('packetCaptures.get reads it', async () => {
    const out = await sdk('get', { name: 'sdk-life' }, tenant.reader);
    expect(out.error).toBeUndefined();
    expect(out.result).toMatchObject({
      name: 'sdk-life',
      provisioningState: 'Succeeded',
      target: vmId(tenant.subscriptionId, rg, 'vm1'),
      timeLimitInSeconds: 600,
    });
    expect(out.result.etag).toMatch(/^W\/"/);
  });

  it("packetCaptures.beginGetStatusAndWait reads Running; wirewatch's extra fields reach the raw response", async () => {
    // The synthetic agent reports invented progress every 200 ms.
    await waitFor(
      () => nativeStatus('sdk-life'),
      (s) => s.packetsCaptured > 0,
    );
    const out = await sdk('status', { name: 'sdk-life' }, tenant.reader);
    expect(out.error).toBeUndefined();
    expect(out.result).toMatchObject({
      name: 'sdk-life',
      id: capturePath(tenant.subscriptionId, nwRg, nw, 'sdk-life'),
      packetCaptureStatus: 'Running',
      packetCaptureError: [],
    });
    expect(typeof out.result.captureStartTime).toBe('string');
    // wirewatch's additions are not in the SDK's model; they are on the wire (the raw body, via
    // onResponse), and the SDK's deserializer passes them through to the result as well.
    expect(out.raw).toMatchObject({
      agentConnectionState: 'Connected',
      files: ['/var/captures/sdk1.cap'],
      packetsDropped: 0,
      packetCaptureErrorDetails: [],
    });
    expect(out.raw.packetsCaptured).toBeGreaterThan(0);
    expect(out.raw.bytesCaptured).toBeGreaterThan(0);
    expect(typeof out.raw.lastProgressTime).toBe('string');
    expect(out.result).toMatchObject({
      agentConnectionState: 'Connected',
      packetsCaptured: out.raw.packetsCaptured,
    });
  });

  it('packetCaptures.beginStopAndWait stops it; its status then reads Stopped, ManualIntervention', async () => {
    const out = await sdk('stop', { name: 'sdk-life' });
    expect(out.error, JSON.stringify(out.trace)).toBeUndefined();
    expect(out.trace[0]).toMatchObject({ method: 'POST', status: 202 });
    expect(out.trace[0]!.headers['location']).toContain('/operationResults/');
    expect(out.trace.at(-1)).toMatchObject({ method: 'GET', status: 200 });
    const status = await sdk('status', { name: 'sdk-life' }, tenant.reader);
    expect(status.result).toMatchObject({
      packetCaptureStatus: 'Stopped',
      stopReason: 'ManualIntervention',
    });
  });

  it('packetCaptures.beginDeleteAndWait deletes it; get then fails with 404 ResourceNotFound', async () => {
    const out = await sdk('delete', { name: 'sdk-life' });
    expect(out.error, JSON.stringify(out.trace)).toBeUndefined();
    const get = await sdk('get', { name: 'sdk-life' }, tenant.reader);
    expect(get.error).toMatchObject({
      name: 'RestError',
      code: 'ResourceNotFound',
      statusCode: 404,
    });
  });

  it('packetCaptures.beginDeleteAndWait of a running capture stops it first, then it is gone', async () => {
    const created = await sdk('create', { name: 'sdk-running', parameters: parameters() });
    expect(created.error).toBeUndefined();
    const out = await sdk('delete', { name: 'sdk-running' });
    expect(out.error, JSON.stringify(out.trace)).toBeUndefined();
    expect(out.trace[0]).toMatchObject({ method: 'DELETE', status: 202 });
    expect((await sdk('get', { name: 'sdk-running' })).error).toMatchObject({ statusCode: 404 });
  });

  it('a second beginCreateAndWait with the same parameters is a 200; with others a 409', async () => {
    const same = parameters({ timeLimitInSeconds: 60 });
    expect((await sdk('create', { name: 'sdk-again', parameters: same })).error).toBeUndefined();
    const again = await sdk('create', { name: 'sdk-again', parameters: same });
    expect(again.error).toBeUndefined();
    expect(again.trace.map((t) => [t.method, t.status])).toEqual([['PUT', 200]]);
    expect(again.result).toMatchObject({ name: 'sdk-again', provisioningState: 'Succeeded' });
    const other = await sdk('create', {
      name: 'sdk-again',
      parameters: { ...same, timeLimitInSeconds: 30 },
    });
    expect(other.error).toMatchObject({
      name: 'RestError',
      code: 'PacketCaptureAlreadyExists',
      statusCode: 409,
    });
  });

  it('beginCreateAndWait of a capture that fails on the host rejects with the code', async () => {
    // This synthetic agent fails every start, as an agent whose interface is missing would.
    const out = await sdk('create', { name: 'sdk-fails', parameters: parameters({}, 'vm-broken') });
    expect(out.error?.message).toMatch(/long-running operation has failed.*CaptureFailed/);
    expect(JSON.parse(out.trace.at(-1)!.body!)).toMatchObject({
      status: 'Failed',
      error: { code: 'CaptureFailed' },
    });
    const status = await sdk('status', { name: 'sdk-fails' }, tenant.reader);
    expect(status.result).toMatchObject({
      packetCaptureStatus: 'Error',
      packetCaptureError: ['CaptureFailed'],
    });
  });

  it('creates an AzureVMSS capture with a PacketCaptureMachineScope and reads its status', async () => {
    const target = `/subscriptions/${tenant.subscriptionId}/resourceGroups/${rg}/providers/Microsoft.Compute/virtualMachineScaleSets/sdkss`;
    const out = await sdk('create', {
      name: 'sdk-vmss',
      parameters: parameters({ target, targetType: 'AzureVMSS', scope: { include: ['0'] } }),
    });
    expect(out.error, JSON.stringify(out.trace)).toBeUndefined();
    expect(out.result).toMatchObject({
      name: 'sdk-vmss',
      provisioningState: 'Succeeded',
      target,
      targetType: 'AzureVMSS',
      scope: { include: ['0'] },
    });
    const status = await sdk('status', { name: 'sdk-vmss' }, tenant.reader);
    expect(status.error).toBeUndefined();
    expect(status.result).toMatchObject({ name: 'sdk-vmss', packetCaptureStatus: 'Running' });
    // The instances extension is on the wire (the SDK's model does not know it).
    expect(status.raw.instances).toEqual([
      expect.objectContaining({ instanceId: '0', name: 'sdkss_0', status: 'Running' }),
    ]);
  });

  describe('packetCaptures.list with many captures', () => {
    // Azure's PacketCaptures_List is not pageable (the SDK reads one response and ignores
    // nextLink), so the server answers a list without $top with every capture. 101 captures,
    // made through the native client in parallel to keep the test quick.
    const names = Array.from({ length: 101 }, (_, i) => `bulk-${String(i).padStart(3, '0')}`);

    it('the SDK sees every capture, each once, from one response', async () => {
      const created = await Promise.all(
        names.map((name) =>
          native.call(
            'PUT',
            `${capturePath(tenant.subscriptionId, nwRg, nw, name)}?api-version=${API}`,
            { token: tenant.contributor, body: { properties: parameters({}, 'vm2') } },
          ),
        ),
      );
      expect(created.map((r) => r.status)).toEqual(names.map(() => 201));
      const listed = await sdk('list', {}, tenant.reader);
      expect(listed.error).toBeUndefined();
      const seen = listed.result as string[];
      expect(new Set(seen).size).toBe(seen.length);
      expect(seen).toEqual(expect.arrayContaining(names));
      expect(listed.trace).toHaveLength(1);
      const body = JSON.parse(listed.trace[0]!.body!);
      expect(body.value.length).toBe(seen.length);
      expect(body.nextLink).toBeUndefined();
    });
  });

  describe('errors carry the server code', () => {
    it('a bad filter: 400 InvalidFilter', async () => {
      const out = await sdk('create', {
        name: 'bad-filter',
        parameters: parameters({ filters: [{ protocol: 'TCP', localPort: '80-' }] }),
      });
      expect(out.error).toMatchObject({
        name: 'RestError',
        code: 'InvalidFilter',
        statusCode: 400,
      });
      expect(out.error!.message).toMatch(/localPort/);
    });

    it.each([
      // The SDK's model says 0..18000 but the SDK does not check it; the server does.
      ['beyond 18000', 18001],
      ['not whole seconds', 2.5],
    ])('a time limit %s: 400 InvalidCaptureLimit', async (_what, timeLimitInSeconds) => {
      const out = await sdk('create', {
        name: 'bad-limit',
        parameters: parameters({ timeLimitInSeconds }),
      });
      expect(out.error).toMatchObject({
        name: 'RestError',
        code: 'InvalidCaptureLimit',
        statusCode: 400,
      });
      expect(out.error!.message).toMatch(/timeLimitInSeconds/);
    });

    it('a network watcher that does not exist: 404 ParentResourceNotFound', async () => {
      const out = await sdk('create', {
        nw: 'NetworkWatcher_nowhere',
        name: 'orphan',
        parameters: parameters(),
      });
      expect(out.error).toMatchObject({
        name: 'RestError',
        code: 'ParentResourceNotFound',
        statusCode: 404,
      });
    });

    it('a Reader token may not create: 403 AuthorizationFailed', async () => {
      const out = await sdk(
        'create',
        { name: 'by-reader', parameters: parameters() },
        tenant.reader,
      );
      expect(out.error).toMatchObject({
        name: 'RestError',
        code: 'AuthorizationFailed',
        statusCode: 403,
      });
    });
  });
});
