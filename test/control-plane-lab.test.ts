/**
 * End to end on the lab, through public entry points only: the `wirewatch server` binary on
 * loopback, a `wirewatch agent` binary per lab host (its interface in a lab namespace, --netns),
 * the HTTP API, real traffic between the namespaces, and tshark as the judge of the files.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  API,
  apiClient,
  capturePath,
  createTenant,
  vmId,
  waitFor,
  type ApiClient,
  type Tenant,
} from './lab/control-plane.js';
import {
  agentArgs,
  freePort,
  launch,
  stopProcess as stop,
  type CliProcess as Proc,
} from './lab/cli-process.js';
import { isRoot } from './lab/exec.js';
import { createLab, type Lab, type LabHost } from './lab/lab.js';
import { send, serve, type Flow, type Server } from './lab/traffic.js';
import { tsharkRead } from './lab/tshark.js';

/** The queryStatus fields these tests read. */
interface CaptureStatus {
  packetCaptureStatus: string;
  stopReason?: string;
  packetCaptureError: string[];
  packetsCaptured: number;
  bytesCaptured: number;
  files: string[];
}

describe.skipIf(!isRoot)('control plane end to end on the lab (root)', () => {
  let lab: Lab;
  let root: string;
  let port: number;
  let server: Proc | undefined;
  const agents = new Map<string, Proc>();
  let api: ApiClient;
  let tenant: Tenant;
  let echo: Server[] = [];
  const adminToken = `wwadmin_lab_${Math.random().toString(36).slice(2)}`;
  const nw = 'NetworkWatcher_westeurope';
  let n = 0;

  const dataDir = () => path.join(root, 'server');

  async function startServerProcess(): Promise<void> {
    server = launch(['server', '--data-dir', dataDir(), '--listen', `127.0.0.1:${port}`], {
      WIREWATCH_ADMIN_TOKEN: adminToken,
    });
    await waitFor(
      () => Promise.resolve(server!.output()),
      (o) => o.includes('listening on') || server!.child.exitCode !== null,
    );
    expect(server.output()).toContain(`listening on http://127.0.0.1:${port}`);
  }

  function startAgent(name: string, host: LabHost): Proc {
    const proc = launch(
      agentArgs({
        server: `http://127.0.0.1:${port}`,
        enrollToken: tenant.enrollToken,
        subscription: tenant.subscriptionId,
        resourceGroup: 'lab',
        host: { name },
        location: 'westeurope',
        on: host,
        dataDir: path.join(root, `agent-${name}`),
        captureRoot: path.join(root, 'captures'),
      }),
    );
    agents.set(name, proc);
    return proc;
  }

  async function connected(name: string, state = 'Connected') {
    await waitFor(
      () =>
        api.call('GET', `/api/v1/subscriptions/${tenant.subscriptionId}/agents`, {
          token: tenant.reader,
        }),
      (r) =>
        (r.body?.value ?? []).some(
          (a: { name: string; connectionState: string }) =>
            a.name === name && a.connectionState === state,
        ),
      20_000,
    );
  }

  const url = (name: string, suffix = '') =>
    `${capturePath(tenant.subscriptionId, 'NetworkWatcherRG', nw, name)}${suffix}?api-version=${API}`;

  async function create(name: string, vm: string, properties: Record<string, unknown> = {}) {
    const file = path.join(root, 'captures', `${name}.cap`);
    const r = await api.call('PUT', url(name), {
      token: tenant.contributor,
      body: {
        properties: {
          target: vmId(tenant.subscriptionId, 'lab', vm),
          storageLocation: { filePath: file },
          ...properties,
        },
      },
    });
    expect(r.status, r.text).toBe(201);
    return file;
  }

  async function status(name: string): Promise<CaptureStatus> {
    const r = await api.call('POST', url(name, '/queryStatus'), { token: tenant.reader });
    expect(r.status, r.text).toBe(200);
    return r.body;
  }

  const until = (name: string, predicate: (s: CaptureStatus) => boolean, ms = 20_000) =>
    waitFor(() => status(name), predicate, ms, 200);

  const udp = (from: LabHost, to: LabHost, sport: number, count: number, dport = 5300): Flow => ({
    proto: 'udp',
    src: from.ipv4,
    sport,
    dst: to.ipv4,
    dport,
    count,
    size: 200,
  });

  beforeAll(async () => {
    lab = await createLab();
    root = await mkdtemp(path.join(tmpdir(), 'ww-e2e-'));
    port = await freePort();
    echo = [
      await serve(lab, lab.b, [
        { proto: 'udp', host: lab.b.ipv4, port: 5300 },
        { proto: 'tcp', host: lab.b.ipv4, port: 80 },
      ]),
      await serve(lab, lab.a, [{ proto: 'udp', host: lab.a.ipv4, port: 5400 }]),
    ];
    await startServerProcess();
    api = apiClient(`http://127.0.0.1:${port}`, adminToken);
    tenant = await createTenant(api, 'lab');
    startAgent('host-a', lab.a);
    startAgent('host-b', lab.b);
    await connected('host-a');
    await connected('host-b');
  });

  afterAll(async () => {
    try {
      for (const proc of agents.values()) await stop(proc);
      await stop(server);
      for (const e of echo) await e.close();
    } finally {
      await lab?.close();
      if (root) await rm(root, { recursive: true, force: true });
    }
  });

  it("runs captures on two hosts at once; each file holds its host's filtered packets", async () => {
    const fa = await create('both-a', 'host-a', {
      filters: [{ protocol: 'UDP', remotePort: '5300' }],
    });
    const fb = await create('both-b', 'host-b', {
      filters: [{ protocol: 'UDP', remotePort: '5400' }],
    });
    await until('both-a', (s) => s.packetCaptureStatus === 'Running');
    await until('both-b', (s) => s.packetCaptureStatus === 'Running');
    ++n;
    await send(lab, lab.a, [udp(lab.a, lab.b, 41000 + n, 20)]);
    await send(lab, lab.b, [udp(lab.b, lab.a, 42000 + n, 7, 5400)]);
    await send(lab, lab.a, [
      { proto: 'tcp', src: lab.a.ipv4, sport: 43000 + n, dst: lab.b.ipv4, dport: 80, bytes: 5000 },
    ]);
    for (const name of ['both-a', 'both-b']) {
      const r = await api.call('POST', url(name, '/stop'), { token: tenant.contributor });
      expect(r.status).toBe(202);
    }
    const sa = await until('both-a', (s) => s.packetCaptureStatus === 'Stopped');
    const sb = await until('both-b', (s) => s.packetCaptureStatus === 'Stopped');
    expect(sa.stopReason).toBe('ManualIntervention');
    expect(sb.stopReason).toBe('ManualIntervention');
    const pa = await tsharkRead(fa);
    const pb = await tsharkRead(fb);
    // 20 datagrams and their 20 echoes on host a's side; the TCP flow is filtered out.
    expect(pa.length).toBe(40);
    expect(pa.every((p) => p.proto === 'udp' && (p.dport === 5300 || p.sport === 5300))).toBe(true);
    expect(pb.length).toBe(14);
    expect(pb.every((p) => p.proto === 'udp' && (p.dport === 5400 || p.sport === 5400))).toBe(true);
    expect(sa.packetsCaptured).toBe(40);
    expect(sb.packetsCaptured).toBe(14);
  });

  it('stops at the time limit with TimeExceeded', async () => {
    const file = await create('timed', 'host-a', { timeLimitInSeconds: 3 });
    await until('timed', (s) => s.packetCaptureStatus === 'Running');
    await send(lab, lab.a, [udp(lab.a, lab.b, 44000, 5)]);
    const s = await until('timed', (x) => x.packetCaptureStatus === 'Stopped', 30_000);
    expect(s.stopReason).toBe('TimeExceeded');
    expect(
      (await tsharkRead(file)).filter((p) => p.sport === 44000 || p.dport === 44000),
    ).toHaveLength(10);
  });

  it('a continuous capture with timeLimitInSeconds stops at that limit, long before its session limit', async () => {
    const stem = path.join(root, 'captures', 'ring-timed.cap');
    const r = await api.call('PUT', url('ring-timed'), {
      token: tenant.contributor,
      body: {
        properties: {
          target: vmId(tenant.subscriptionId, 'lab', 'host-a'),
          storageLocation: { localPath: stem },
          continuousCapture: true,
          captureSettings: { fileCount: 3, fileSizeInBytes: 20000 },
          timeLimitInSeconds: 3,
        },
      },
    });
    expect(r.status, r.text).toBe(201);
    expect(r.body.properties).toMatchObject({
      timeLimitInSeconds: 3,
      captureSettings: { sessionTimeLimitInSeconds: 86400 },
    });
    await until('ring-timed', (s) => s.packetCaptureStatus === 'Running');
    await send(lab, lab.a, [udp(lab.a, lab.b, 44100, 5)]);
    const s = await until('ring-timed', (x) => x.packetCaptureStatus === 'Stopped', 30_000);
    expect(s.stopReason).toBe('TimeExceeded');
    expect(s.files).toHaveLength(1);
    expect(
      (await tsharkRead(s.files[0]!)).filter((p) => p.sport === 44100 || p.dport === 44100),
    ).toHaveLength(10);
  });

  it('stops at the byte limit with SessionBytesExceeded; the file ends at a whole packet', async () => {
    const file = await create('bytes', 'host-a', {
      totalBytesPerSession: 4000,
      filters: [{ protocol: 'UDP' }],
    });
    await until('bytes', (s) => s.packetCaptureStatus === 'Running');
    await send(lab, lab.a, [udp(lab.a, lab.b, 45000, 50)]);
    const s = await until('bytes', (x) => x.packetCaptureStatus === 'Stopped');
    expect(s.stopReason).toBe('SessionBytesExceeded');
    const packets = await tsharkRead(file);
    expect(packets.length).toBeGreaterThan(5);
    expect(s.bytesCaptured).toBeLessThanOrEqual(4000);
  });

  it("a capture that cannot start reads Error with the agent's reason", async () => {
    // The file already exists: the agent refuses to overwrite it.
    const r = await api.call('PUT', url('clash'), {
      token: tenant.contributor,
      body: {
        properties: {
          target: vmId(tenant.subscriptionId, 'lab', 'host-a'),
          storageLocation: { filePath: path.join(root, 'captures', 'timed.cap') },
        },
      },
    });
    expect(r.status).toBe(201);
    const s = await until('clash', (x) => x.packetCaptureStatus === 'Error');
    expect(s.packetCaptureError).toEqual(['LocalFileFailed']);
  });

  it('loses nothing when the server is killed and restarted mid-capture', async () => {
    const file = await create('through-restart', 'host-a', {
      filters: [{ protocol: 'UDP', remotePort: '5300' }],
    });
    await until('through-restart', (s) => s.packetCaptureStatus === 'Running');
    await send(lab, lab.a, [udp(lab.a, lab.b, 46000, 10)]);
    await stop(server, 'SIGKILL');
    // The agent keeps capturing while the server is down.
    await send(lab, lab.a, [udp(lab.a, lab.b, 46001, 10)]);
    await startServerProcess();
    await connected('host-a');
    await send(lab, lab.a, [udp(lab.a, lab.b, 46002, 10)]);
    expect(
      (await api.call('POST', url('through-restart', '/stop'), { token: tenant.contributor }))
        .status,
    ).toBe(202);
    const s = await until('through-restart', (x) => x.packetCaptureStatus === 'Stopped');
    expect(s.stopReason).toBe('ManualIntervention');
    const packets = await tsharkRead(file);
    for (const sport of [46000, 46001, 46002]) {
      expect(
        packets.filter((p) => p.sport === sport || p.dport === sport),
        `flow ${sport}`,
      ).toHaveLength(20);
    }
  });

  it('after kill -9 of the agent, the file is repaired and the capture reads Stopped AgentRestarted', async () => {
    const file = await create('killed', 'host-b', {
      filters: [{ protocol: 'UDP', remotePort: '5400' }],
    });
    await until('killed', (s) => s.packetCaptureStatus === 'Running');
    await send(lab, lab.b, [udp(lab.b, lab.a, 47000, 15, 5400)]);
    // Let the kernel hand the packets over (tcpdump gets them a block at a time).
    await new Promise((r) => setTimeout(r, 2500));
    await stop(agents.get('host-b'), 'SIGKILL');
    const away = await until('killed', (x) => x.packetCaptureStatus === 'Unknown');
    expect(away.packetCaptureError).toContain('AgentStopped');
    startAgent('host-b', lab.b);
    const s = await until('killed', (x) => x.packetCaptureStatus === 'Stopped');
    expect(s.stopReason).toBe('AgentRestarted');
    const packets = await tsharkRead(file);
    expect(packets.filter((p) => p.sport === 47000 || p.dport === 47000)).toHaveLength(30);
  });

  it('SIGTERM to the agent finalizes its captures with ManualIntervention', async () => {
    const file = await create('termed', 'host-a', {
      filters: [{ protocol: 'UDP', remotePort: '5300' }],
    });
    await until('termed', (s) => s.packetCaptureStatus === 'Running');
    await send(lab, lab.a, [udp(lab.a, lab.b, 48000, 12)]);
    await stop(agents.get('host-a'), 'SIGTERM');
    startAgent('host-a', lab.a);
    const s = await until('termed', (x) => x.packetCaptureStatus === 'Stopped');
    expect(s.stopReason).toBe('ManualIntervention');
    expect(
      (await tsharkRead(file)).filter((p) => p.sport === 48000 || p.dport === 48000),
    ).toHaveLength(24);
  });

  it('deleting the VM stops its captures with TargetDeleted and the agent gives up its enrollment', async () => {
    await connected('host-a');
    const file = await create('target-gone', 'host-a', {
      filters: [{ protocol: 'UDP', remotePort: '5300' }],
    });
    await until('target-gone', (s) => s.packetCaptureStatus === 'Running');
    await send(lab, lab.a, [udp(lab.a, lab.b, 49000, 6)]);
    const r = await api.call(
      'DELETE',
      `${vmId(tenant.subscriptionId, 'lab', 'host-a')}?api-version=2024-07-01`,
      {
        token: tenant.contributor,
      },
    );
    expect(r.status).toBe(200);
    const s = await until('target-gone', (x) => x.packetCaptureStatus === 'Stopped');
    expect(s.stopReason).toBe('TargetDeleted');
    await waitFor(
      () => tsharkRead(file),
      (p) => p.filter((x) => x.sport === 49000 || x.dport === 49000).length === 12,
      20_000,
      500,
    );
  });
});
