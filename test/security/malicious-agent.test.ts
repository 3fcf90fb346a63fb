/**
 * An agent that lies, against a real server (real SQLite) and a real Azurite: it claims blobs
 * that are another tenant's, another container's or no blob at all (`..`, `%2e%2e`, encoded
 * slashes), lengths that are not the blob's, files that are not its capture's, sessions of other
 * VMs and tenants, times that are no time and counts that are no count; it sends oversized
 * messages and floods the channel. Nothing it says may reach another tenant's capture or another
 * file, nor take the server down: other agents' captures go on, /healthz answers, queryStatus
 * and /content never answer 5xx.
 *
 * The lying agent is the synthetic one (test/lab/synthetic-agent.ts) driven message by message;
 * the honest side uploads with the SAS the server gave it, as the real agent does.
 */
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import {
  BlobServiceClient,
  BlockBlobClient,
  StorageSharedKeyCredential,
} from '@azure/storage-blob';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startAzurite, type Azurite } from '../../src/blob/azurite.js';
import { ringFileBlobUrl } from '../../src/blob/blob-names.js';
import { blobNameOfUrl } from '../../src/blob/storage-account.js';
import { parseConnectionString } from '../../src/blob/connection-string.js';
import {
  BINARY_FRAME_ID_LENGTH,
  CHANNEL_MAX_PAYLOAD_BYTES,
  CHANNEL_PROTOCOL_VERSION,
  MAX_BINARY_FRAME_DATA,
  type CaptureAssignment,
  type ObservedSession,
  type UploadReport,
  type ServerMessage,
} from '../../src/model/channel.js';
import {
  API,
  capturePath,
  createTenant,
  startTestServer,
  vmId,
  waitFor,
  type Tenant,
  type TestServer,
} from '../lab/control-plane.js';
import { SyntheticAgent } from '../lab/synthetic-agent.js';
import { startCountingProxy, type CountingProxy } from '../support/counting-proxy.js';
import { LYING_COUNTS, LYING_TIMES, lyingBlobUrls } from '../support/malicious-agent.js';

const NW = 'NetworkWatcher_westeurope';
const NW_RG = 'NetworkWatcherRG';
const SECRET = Buffer.from('VICTIM-CAPTURE-BYTES '.repeat(200));

let azurite: Azurite;
let azuriteDir: string;

beforeAll(async () => {
  azuriteDir = await mkdtemp(path.join(tmpdir(), 'ww-malicious-'));
  azurite = await startAzurite({ dataDir: azuriteDir });
});

afterAll(async () => {
  await azurite?.close();
  if (azuriteDir) await rm(azuriteDir, { recursive: true, force: true });
});

/** A subscription with the storage account registered and one synthetic agent per VM name. */
interface Side {
  readonly tenant: Tenant;
  readonly agents: Map<string, SyntheticAgent>;
}

async function side(
  t: TestServer,
  vms: Record<string, Partial<SyntheticAgent['options']>>,
  connectionString = azurite.connectionString,
) {
  const tenant = await createTenant(t, randomUUID());
  const registered = await t.call(
    'POST',
    `/api/v1/subscriptions/${tenant.subscriptionId}/storageAccounts`,
    {
      token: tenant.contributor,
      body: {
        name: 'captures',
        resourceGroup: 'storage',
        connectionString,
      },
    },
  );
  expect(registered.status, registered.text).toBe(201);
  const agents = new Map<string, SyntheticAgent>();
  for (const [name, options] of Object.entries(vms)) {
    const agent = new SyntheticAgent({
      serverUrl: t.url,
      enrollToken: tenant.enrollToken,
      subscriptionId: tenant.subscriptionId,
      resourceGroup: 'Web-RG',
      name,
      location: 'westeurope',
      progressIntervalMs: 200,
      ...options,
    });
    await agent.connect();
    agents.set(name, agent);
  }
  return { tenant, agents } satisfies Side;
}

function captureUrl(s: Side, name: string, suffix = ''): string {
  return `${capturePath(s.tenant.subscriptionId, NW_RG, NW, name)}${suffix}?api-version=${API}`;
}

/** Creates a capture on `vm` and resolves with the assignment its agent got. */
async function create(
  t: TestServer,
  s: Side,
  vm: string,
  name: string,
  properties: Record<string, unknown> = {},
): Promise<CaptureAssignment> {
  const agent = s.agents.get(vm)!;
  const started = agent.next(
    (m) => m.type === 'start' && m.assignment.resourceId.endsWith(`/${name}`),
  );
  const r = await t.call('PUT', captureUrl(s, name), {
    token: s.tenant.contributor,
    body: {
      properties: {
        target: vmId(s.tenant.subscriptionId, 'Web-RG', vm),
        storageLocation: {
          storageId: `/subscriptions/${s.tenant.subscriptionId}/resourceGroups/storage/providers/Microsoft.Storage/storageAccounts/captures`,
        },
        ...properties,
      },
    },
  });
  expect(r.status, r.text).toBe(201);
  return ((await started) as Extract<ServerMessage, { type: 'start' }>).assignment;
}

async function status(t: TestServer, s: Side, name: string) {
  const r = await t.call('POST', captureUrl(s, name, '/queryStatus'), { token: s.tenant.reader });
  expect(r.status, `queryStatus ${name}: ${r.text}`).toBe(200);
  return r.body;
}

async function content(t: TestServer, s: Side, name: string) {
  const res = await fetch(`${t.url}${captureUrl(s, name, '/content')}`, {
    headers: { authorization: `Bearer ${s.tenant.reader}` },
  });
  const body = Buffer.from(await res.arrayBuffer());
  expect(res.status, `content ${name}: ${body.toString('utf8', 0, 300)}`).toBeLessThan(500);
  return { status: res.status, body };
}

async function healthy(t: TestServer): Promise<number> {
  const started = performance.now();
  const r = await t.call('GET', '/healthz', { token: '' });
  expect(r.status).toBe(200);
  return performance.now() - started;
}

/** A Stopped session as an agent reports it in hello. */
function stoppedObserved(sessionId: string, extra: Partial<ObservedSession> = {}): ObservedSession {
  const now = new Date().toISOString();
  return {
    sessionId,
    state: 'Stopped',
    startTime: now,
    stopTime: now,
    stopReason: 'ManualIntervention',
    progress: { packets: 1, bytes: 100, kernelDrops: 0, at: now },
    ...extra,
  };
}

describe('an agent that lies', () => {
  let t: TestServer;
  let victim: Side;
  let attacker: Side;
  let victimBlob: { url: string; name: string };
  let otherContainer: { container: string; blob: string };

  beforeAll(async () => {
    t = await startTestServer({ sweepIntervalMs: 200 });
    victim = await side(t, { 'Victim-01': {} });
    attacker = await side(t, {
      'Liar-01': {},
      'Liar-02': {},
      'Refuser-01': {
        failStarts: {
          code: 'LocalFileFailed',
          message: 'filePath: cannot create a new capture file',
        },
      },
    });
    // The victim's finished, uploaded capture: the prize.
    const a = await create(t, victim, 'Victim-01', 'victim-stored');
    await new BlockBlobClient(`${a.blob!.url}?${a.blob!.sas}`).upload(SECRET, SECRET.length);
    victim.agents.get('Victim-01')!.finish(a.sessionId, 'ManualIntervention');
    victim.agents.get('Victim-01')!.send({
      type: 'uploaded',
      sessionId: a.sessionId,
      upload: { state: 'Completed', blobs: [{ url: a.blob!.url, size: SECRET.length }] },
    });
    await waitFor(
      () => status(t, victim, 'victim-stored'),
      (s) => s.uploadState === 'Completed',
    );
    victimBlob = { url: a.blob!.url, name: blobNameOfUrl(azurite.blobEndpoint, a.blob!.url)! };
    // A blob in another container of the same account.
    const account = parseConnectionString(azurite.connectionString);
    const service = new BlobServiceClient(
      account.blobEndpoint,
      new StorageSharedKeyCredential(account.accountName, account.accountKey),
    );
    otherContainer = { container: `secrets${Date.now()}`, blob: 'key.txt' };
    const container = service.getContainerClient(otherContainer.container);
    await container.create();
    await container.getBlockBlobClient(otherContainer.blob).upload(SECRET, SECRET.length);
  });

  afterAll(async () => {
    for (const s of [victim, attacker]) {
      for (const agent of s?.agents.values() ?? []) await agent.close();
    }
    await t?.close();
  });

  const liar = () => attacker.agents.get('Liar-01')!;

  /** The lying URLs for a capture of the attacker's whose blob is `own`. */
  const lies = (own: string) =>
    lyingBlobUrls({
      own,
      endpoint: azurite.blobEndpoint,
      victimName: victimBlob.name,
      otherContainer: otherContainer.container,
      otherBlob: otherContainer.blob,
    });

  it("claims another tenant's or another container's blob in `uploaded`: the upload fails, nothing of it is served", async () => {
    const probe = await create(t, attacker, 'Liar-01', 'probe');
    const variants = lies(probe.blob!.url);
    for (const [i, lie] of variants.entries()) {
      const name = `lie-uploaded-${i}`;
      const a = await create(t, attacker, 'Liar-01', name);
      liar().finish(a.sessionId, 'ManualIntervention');
      liar().send({
        type: 'uploaded',
        sessionId: a.sessionId,
        upload: { state: 'Completed', blobs: [{ url: lie.url, size: SECRET.length }] },
      });
      const s = await waitFor(
        () => status(t, attacker, name),
        (x) => x.uploadState !== 'Pending',
      );
      expect(s.uploadState, lie.label).toBe('Failed');
      expect(s.blobs, lie.label).toEqual([]);
      const got = await content(t, attacker, name);
      expect(got.body.includes(SECRET.subarray(0, 40)), lie.label).toBe(false);
    }
  });

  it('claims them in `hello` (the path without a check before): Failed too, for single files and rings', async () => {
    for (const continuous of [false, true]) {
      const probe = await create(t, attacker, 'Liar-01', `probe-hello-${continuous}`, {
        ...(continuous
          ? {
              continuousCapture: true,
              captureSettings: {
                fileCount: 2,
                fileSizeInBytes: 100000,
                sessionTimeLimitInSeconds: 60,
              },
            }
          : {}),
      });
      liar().finish(probe.sessionId, 'ManualIntervention');
      const variants = lies(probe.blob!.url);
      const sessions: ObservedSession[] = [];
      const names: string[] = [];
      for (const [i, lie] of variants.entries()) {
        const name = `lie-hello-${continuous}-${i}`;
        const a = await create(t, attacker, 'Liar-01', name, {
          ...(continuous
            ? {
                continuousCapture: true,
                captureSettings: {
                  fileCount: 2,
                  fileSizeInBytes: 100000,
                  sessionTimeLimitInSeconds: 60,
                },
              }
            : {}),
        });
        // Each lie made for this capture's own URL.
        const own = lies(a.blob!.url)[i]!;
        expect(own.label).toBe(lie.label);
        names.push(name);
        sessions.push(
          stoppedObserved(a.sessionId, {
            upload: { state: 'Completed', blobs: [{ url: own.url, size: SECRET.length }] },
          }),
        );
      }
      await liar().disconnect();
      await liar().connect({ sessions });
      for (const [i, name] of names.entries()) {
        const s = await waitFor(
          () => status(t, attacker, name),
          (x) => x.uploadState !== 'Pending',
        );
        expect(
          [s.uploadState, s.blobs],
          `${continuous ? 'ring' : 'single'}: ${variants[i]!.label}`,
        ).toEqual(['Failed', []]);
        const got = await content(t, attacker, name);
        expect(got.body.includes(SECRET.subarray(0, 40))).toBe(false);
      }
    }
    // The victim's capture is as it was.
    const v = await status(t, victim, 'victim-stored');
    expect(v).toMatchObject({
      uploadState: 'Completed',
      blobs: [{ url: victimBlob.url, size: SECRET.length }],
    });
  });

  it('lies about lengths: short or huge is Failed; the truth is Completed with the length storage holds', async () => {
    const cases = [
      { name: 'short', size: 500, state: 'Failed' },
      { name: 'huge', size: 2 ** 40, state: 'Failed' },
      { name: 'true-length', size: 1000, state: 'Completed' },
    ];
    const sessions: ObservedSession[] = [];
    for (const c of cases) {
      const a = await create(t, attacker, 'Liar-01', `len-${c.name}`);
      await new BlockBlobClient(`${a.blob!.url}?${a.blob!.sas}`).upload(
        Buffer.alloc(1000, 1),
        1000,
      );
      sessions.push(
        stoppedObserved(a.sessionId, {
          upload: { state: 'Completed', blobs: [{ url: a.blob!.url, size: c.size }] },
        }),
      );
    }
    await liar().disconnect();
    await liar().connect({ sessions });
    for (const c of cases) {
      const s = await waitFor(
        () => status(t, attacker, `len-${c.name}`),
        (x) => x.uploadState !== 'Pending',
      );
      expect(s.uploadState, c.name).toBe(c.state);
      if (c.state === 'Completed') {
        expect(s.blobs).toEqual([{ url: expect.stringMatching(/\.cap$/), size: 1000 }]);
        const got = await content(t, attacker, `len-${c.name}`);
        expect([got.status, got.body.length]).toEqual([200, 1000]);
      } else {
        expect(s.packetCaptureErrorDetails).toContainEqual({
          code: 'StorageFailed',
          message: expect.stringContaining('holds 1000 bytes'),
        });
      }
    }
  });

  it('speaks of sessions of another VM and another tenant: nothing of theirs changes', async () => {
    const honest = victim.agents.get('Victim-01')!;
    const v = await create(t, victim, 'Victim-01', 'victim-running');
    await waitFor(
      () => status(t, victim, 'victim-running'),
      (s) => s.packetCaptureStatus === 'Running',
    );
    const own = await create(t, attacker, 'Liar-02', 'neighbour-running');
    const at = new Date().toISOString();
    const progress = { packets: 999_999, bytes: 999_999, kernelDrops: 0, at };
    for (const sessionId of [v.sessionId, own.sessionId]) {
      liar().send({ type: 'started', sessionId, startTime: at });
      liar().send({ type: 'progress', sessionId, progress });
      liar().send({ type: 'blobGrantRequest', sessionId, fileIndex: 1 });
      liar().send({
        type: 'uploaded',
        sessionId,
        upload: { state: 'Completed', blobs: [{ url: victimBlob.url, size: SECRET.length }] },
      });
      liar().send({
        type: 'stopped',
        sessionId,
        stopReason: 'Error',
        stopTime: at,
        progress,
        files: ['/etc/shadow'],
        error: { code: 'CaptureFailed', message: 'lies' },
      });
    }
    // And in a hello, as finished and uploaded.
    await liar().disconnect();
    await liar().connect({
      sessions: [v.sessionId, own.sessionId].map((id) =>
        stoppedObserved(id, {
          files: ['/etc/shadow'],
          upload: { state: 'Completed', blobs: [{ url: victimBlob.url, size: SECRET.length }] },
        }),
      ),
    });
    await t.server.hub.drain();
    await new Promise((r) => setTimeout(r, 500));
    for (const [s, name] of [
      [victim, 'victim-running'],
      [attacker, 'neighbour-running'],
    ] as const) {
      const x = await status(t, s, name);
      expect(x.packetCaptureStatus, name).toBe('Running');
      expect(x.packetsCaptured, name).toBeLessThan(999_999);
      expect(x.uploadState, name).toBe('Pending');
      expect(x.blobs, name).toEqual([]);
    }
    expect(liar().received.some((m) => m.type === 'blobGrant')).toBe(false);
    // The honest agents' captures go on.
    honest.finish(v.sessionId, 'ManualIntervention');
    await waitFor(
      () => status(t, victim, 'victim-running'),
      (s) => s.packetCaptureStatus === 'Stopped',
    );
  });

  it("a create naming another capture's file records no file; /content never asks the agent for it", async () => {
    const refuser = attacker.agents.get('Refuser-01')!;
    const target = '/var/captures/victims-capture.cap';
    await create(t, attacker, 'Refuser-01', 'names-a-file', {
      storageLocation: { filePath: target },
    });
    const s = await waitFor(
      () => status(t, attacker, 'names-a-file'),
      (x) => x.packetCaptureStatus === 'Error',
    );
    expect(s.files).toEqual([]);
    expect(s.packetCaptureError).toEqual(['LocalFileFailed']);
    const got = await content(t, attacker, 'names-a-file');
    expect(got.status).toBe(410);
    expect(refuser.received.some((m) => m.type === 'readFile')).toBe(false);

    // A lying agent's files: only those named as the capture's plan names them are kept.
    const mine = '/var/captures/lies/mine.cap';
    const a = await create(t, attacker, 'Liar-01', 'lying-files', {
      storageLocation: { filePath: mine },
    });
    liar().send({
      type: 'stopped',
      sessionId: a.sessionId,
      stopReason: 'ManualIntervention',
      stopTime: new Date().toISOString(),
      progress: { packets: 1, bytes: 1, kernelDrops: 0, at: new Date().toISOString() },
      files: [
        '/etc/shadow',
        '/var/captures/lies/../other.cap',
        '/var/captures/other/mine.cap',
        target,
        '/var/captures/lies/mine_1.cap',
        mine,
      ],
    });
    const stopped = await waitFor(
      () => status(t, attacker, 'lying-files'),
      (x) => x.packetCaptureStatus === 'Stopped',
    );
    expect(stopped.files).toEqual([mine]);
  });

  it('reports times that are no time and counts that are no count: refused; queryStatus keeps answering', async () => {
    const a = await create(t, attacker, 'Liar-02', 'bad-times');
    const liar2 = attacker.agents.get('Liar-02')!;
    await waitFor(
      () => status(t, attacker, 'bad-times'),
      (s) => s.packetCaptureStatus === 'Running',
    );
    const invalidBefore = t.server.hub.counters.invalidMessages;
    const good = new Date().toISOString();
    const frames: unknown[] = [];
    for (const time of LYING_TIMES) {
      frames.push({ type: 'started', sessionId: a.sessionId, startTime: time });
      frames.push({
        type: 'progress',
        sessionId: a.sessionId,
        progress: { packets: 1, bytes: 1, kernelDrops: 0, at: time },
      });
      frames.push({
        type: 'stopped',
        sessionId: a.sessionId,
        stopReason: 'ManualIntervention',
        stopTime: time,
        progress: { packets: 1, bytes: 1, kernelDrops: 0, at: good },
        files: [],
      });
      frames.push({
        type: 'hello',
        protocolVersion: CHANNEL_PROTOCOL_VERSION,
        agentVersion: 'liar',
        hostname: 'liar',
        captureRoot: '/var/captures',
        sessions: [stoppedObserved(a.sessionId, { stopTime: time })],
      });
    }
    for (const count of LYING_COUNTS) {
      frames.push({
        type: 'progress',
        sessionId: a.sessionId,
        progress: { packets: count, bytes: 1, kernelDrops: 0, at: good },
      });
      frames.push({ type: 'blobGrantRequest', sessionId: a.sessionId, fileIndex: count });
    }
    for (const frame of frames) await liar2.sendRaw(JSON.stringify(frame));
    await liar2.sendRaw('{"type":"progress",'); // not JSON
    await liar2.sendRaw(Buffer.from('binary frame for no read at all, longer than an id'));
    // A binary frame larger than any the agent sends (a file read's or a stream's).
    await liar2.sendRaw(Buffer.alloc(BINARY_FRAME_ID_LENGTH + MAX_BINARY_FRAME_DATA + 1, 0x41));
    await waitFor(
      () => Promise.resolve(t.server.hub.counters.invalidMessages - invalidBefore),
      (n) => n >= frames.length + 2,
    );
    const s = await status(t, attacker, 'bad-times');
    expect(s.packetCaptureStatus).toBe('Running');
    expect(Number.isNaN(Date.parse(s.captureStartTime))).toBe(false);
    const list = await t.call(
      'GET',
      `${capturePath(attacker.tenant.subscriptionId, NW_RG, NW, '').replace(/\/$/, '')}?api-version=${API}`,
      { token: attacker.tenant.reader },
    );
    expect(list.status).toBe(200);
    // Still connected and heard: a real stop ends it.
    liar2.finish(a.sessionId, 'ManualIntervention');
    await waitFor(
      () => status(t, attacker, 'bad-times'),
      (x) => x.packetCaptureStatus === 'Stopped',
    );
  });

  it('a Completed upload that storage cannot confirm now stays Pending, unacknowledged, until storage answers', async () => {
    const honest = victim.agents.get('Victim-01')!;
    const a = await create(t, victim, 'Victim-01', 'storage-down');
    await new BlockBlobClient(`${a.blob!.url}?${a.blob!.sas}`).upload(Buffer.alloc(1000, 2), 1000);
    const acks = () =>
      honest.received.filter((m) => m.type === 'ack' && m.sessionId === a.sessionId).length;
    honest.finish(a.sessionId, 'ManualIntervention');
    await waitFor(
      () => Promise.resolve(acks()),
      (n) => n === 1,
    );
    await azurite.stop();
    try {
      honest.send({
        type: 'uploaded',
        sessionId: a.sessionId,
        upload: { state: 'Completed', blobs: [{ url: a.blob!.url, size: 1000 }] },
      });
      // Several sweeps find storage still down.
      await new Promise((r) => setTimeout(r, 3000));
      expect((await status(t, victim, 'storage-down')).uploadState).toBe('Pending');
      expect(acks()).toBe(1);
    } finally {
      await azurite.start();
    }
    const s = await waitFor(
      () => status(t, victim, 'storage-down'),
      (x) => x.uploadState !== 'Pending',
      30_000,
    );
    expect(s).toMatchObject({
      uploadState: 'Completed',
      blobs: [{ url: a.blob!.url, size: 1000 }],
    });
    await waitFor(
      () => Promise.resolve(acks()),
      (n) => n === 2,
    );
  });

  it('sends a message larger than the channel allows: disconnected; the server and other agents go on', async () => {
    const big = new SyntheticAgent({ ...liar().options, name: 'Big-01' });
    await big.connect();
    try {
      const closed = big.closed;
      await big.sendRaw(Buffer.alloc(CHANNEL_MAX_PAYLOAD_BYTES + 1, 0x20).toString('latin1'));
      expect((await closed).code).toBe(1009);
      expect(await healthy(t)).toBeLessThan(2000);
      // Another agent still works: a capture starts on it.
      await create(t, victim, 'Victim-01', 'after-big');
      // And the big one may come back (its credential is not revoked for this).
      await big.connect();
    } finally {
      await big.close();
    }
  });
});

describe('an agent that floods', () => {
  let t: TestServer;
  let victim: Side;
  let flooder: Side;

  beforeAll(async () => {
    t = await startTestServer({
      agentChannelLimits: {
        messagesPerSecond: 1000,
        messageBurst: 1000,
        maxInvalidMessages: 50,
      },
    });
    victim = await side(t, { 'Victim-01': {} });
    flooder = await side(t, { 'Flood-01': {}, 'Flood-02': {} });
  });

  afterAll(async () => {
    for (const s of [victim, flooder]) {
      for (const agent of s?.agents.values() ?? []) await agent.close();
    }
    await t?.close();
  });

  it('is throttled past its budget, while another tenant creates and starts captures as usual', async () => {
    const agent = flooder.agents.get('Flood-01')!;
    const a = await create(t, flooder, 'Flood-01', 'flooding');
    const progress = (n: number) =>
      JSON.stringify({
        type: 'progress',
        sessionId: a.sessionId,
        progress: { packets: n, bytes: n, kernelDrops: 0, at: new Date().toISOString() },
      });
    const throttledBefore = t.server.hub.counters.throttled;
    const floodStart = performance.now();
    const sent = (async () => {
      for (let i = 0; i < 30_000; i++) {
        void agent.sendRaw(progress(i));
        if (i % 1000 === 0) await new Promise((r) => setImmediate(r));
      }
    })();
    const started = performance.now();
    await create(t, victim, 'Victim-01', 'during-flood');
    const createMs = performance.now() - started;
    const healthMs = await healthy(t);
    await sent;
    await waitFor(
      () => Promise.resolve(t.server.hub.counters.throttled - throttledBefore),
      (n) => n >= 1,
    );
    // 30,000 messages at 1,000/s: what the server has handled so far is within the budget (a
    // burst of 1,000, then 1,000/s, plus what one read of the socket held when it was paused).
    const handled = (await status(t, flooder, 'flooding')).packetsCaptured as number;
    const elapsedS = (performance.now() - floodStart) / 1000;
    expect(handled).toBeLessThan(1000 + 1000 * elapsedS + 2000);
    expect(handled).toBeLessThan(29_999);
    console.log(
      `flood: victim's create→start ${createMs.toFixed(0)} ms, /healthz ${healthMs.toFixed(0)} ms, throttled ${t.server.hub.counters.throttled - throttledBefore}×`,
    );
    expect(createMs).toBeLessThan(3000);
    expect(healthMs).toBeLessThan(1000);
  });

  it('sending invalid messages over and over is disconnected with a reason', async () => {
    const agent = flooder.agents.get('Flood-02')!;
    const closed = agent.closed;
    for (let i = 0; i < 60; i++) await agent.sendRaw(`{"type":"nothing-${i}"}`);
    expect(await closed).toEqual({ code: 1008, reason: 'too many invalid messages' });
    expect(t.server.hub.counters.closedForPolicy).toBeGreaterThanOrEqual(1);
    expect(await healthy(t)).toBeLessThan(1000);
    const metrics = await t.call('GET', '/metrics');
    expect(metrics.text).toMatch(
      /^wirewatch_agent_channel_limits_total\{reason="closedForPolicy"\} [1-9]/m,
    );
    expect(metrics.text).toMatch(
      /^wirewatch_agent_channel_limits_total\{reason="throttled"\} [1-9]/m,
    );
  });

  it('a big but legal hello (10,000 sessions) does not hold up the event loop', async () => {
    const agent = new SyntheticAgent({
      ...flooder.agents.get('Flood-01')!.options,
      name: 'Big-Hello',
    });
    await agent.enroll();
    const at = new Date().toISOString();
    const sessions: ObservedSession[] = Array.from({ length: 10_000 }, () => ({
      sessionId: randomUUID(),
      state: 'Running',
      startTime: at,
      progress: { packets: 123456, bytes: 12345678, kernelDrops: 0, at },
      files: [`/var/captures/some/folder/packetcapture_${randomUUID()}.cap`],
    }));
    const size = Buffer.byteLength(JSON.stringify(sessions));
    const delay = monitorEventLoopDelay({ resolution: 5 });
    const health: number[] = [];
    let polling = true;
    const poll = (async () => {
      while (polling) {
        health.push(await healthy(t));
        await new Promise((r) => setTimeout(r, 20));
      }
    })();
    delay.enable();
    const started = performance.now();
    await agent.connect({ sessions });
    const helloMs = performance.now() - started;
    delay.disable();
    polling = false;
    await poll;
    await agent.close();
    const maxDelayMs = delay.max / 1e6;
    console.log(
      `big hello: ${sessions.length} sessions, ${(size / 1024 / 1024).toFixed(1)} MiB, welcomed after ${helloMs.toFixed(0)} ms; event-loop delay max ${maxDelayMs.toFixed(0)} ms, p99 ${(delay.percentile(99) / 1e6).toFixed(0)} ms; /healthz max ${Math.max(...health).toFixed(0)} ms over ${health.length} requests`,
    );
    expect(size).toBeLessThan(CHANNEL_MAX_PAYLOAD_BYTES);
    // One JSON.parse and schema check of the whole message is the longest step left.
    expect(maxDelayMs).toBeLessThan(750);
  });
});

describe('an agent that makes the server ask storage', () => {
  let t: TestServer;
  let proxy: CountingProxy;
  let s: Side;
  /** The control plane's clock, moved by hand: the backoff of storage checks is read on it. */
  let clockMs = Date.now();

  const RING = {
    continuousCapture: true,
    captureSettings: { fileCount: 3, fileSizeInBytes: 100000, sessionTimeLimitInSeconds: 600 },
  };

  beforeAll(async () => {
    proxy = await startCountingProxy(azurite);
    t = await startTestServer({
      sweepIntervalMs: 100,
      now: () => new Date(clockMs),
    });
    s = await side(t, { 'Ring-01': {} }, proxy.connectionString);
  });

  afterAll(async () => {
    for (const agent of s?.agents.values() ?? []) await agent.close();
    await t?.close();
    await proxy?.close();
  });

  const agent = () => s.agents.get('Ring-01')!;
  const acks = (sessionId: string) =>
    agent().received.filter((m) => m.type === 'ack' && m.sessionId === sessionId).length;
  const grants = (sessionId: string) =>
    agent()
      .received.filter(
        (m): m is Extract<ServerMessage, { type: 'blobGrant' }> =>
          m.type === 'blobGrant' && m.sessionId === sessionId,
      )
      .map((m) => m.fileIndex);
  /** Asks for a grant and resolves with it, or undefined when none comes within a second. */
  const ask = async (sessionId: string, fileIndex: number) => {
    const answer = agent()
      .next(
        (m) => m.type === 'blobGrant' && m.sessionId === sessionId && m.fileIndex === fileIndex,
        1000,
      )
      .catch(() => undefined);
    agent().send({ type: 'blobGrantRequest', sessionId, fileIndex });
    return (await answer) as Extract<ServerMessage, { type: 'blobGrant' }> | undefined;
  };
  const ringReport = (
    a: CaptureAssignment,
    numbers: readonly number[],
    size = 1000,
  ): UploadReport => ({
    state: 'Completed',
    blobs: numbers.map((n) => ({ url: ringFileBlobUrl(a.blob!.url, n), size })),
  });

  it('a ring report of never-granted file numbers (100,000 of them) asks storage nothing and is Failed; resent, it is only acknowledged', async () => {
    const headsBefore = proxy.count('HEAD');
    // Over the channel: as many numbers as one message may carry (8 MiB; about 38,000 URLs).
    const a = await create(t, s, 'Ring-01', 'never-granted', RING);
    agent().finish(a.sessionId, 'ManualIntervention');
    await waitFor(
      () => Promise.resolve(acks(a.sessionId)),
      (n) => n === 1,
    );
    let numbers = Array.from({ length: 100_000 }, (_, i) => i + 1);
    while (
      Buffer.byteLength(JSON.stringify(ringReport(a, numbers))) >
      CHANNEL_MAX_PAYLOAD_BYTES - 1024
    ) {
      numbers = numbers.slice(0, Math.floor(numbers.length * 0.9));
    }
    expect(numbers.length).toBeGreaterThan(20_000);
    agent().send({ type: 'uploaded', sessionId: a.sessionId, upload: ringReport(a, numbers) });
    const failed = await waitFor(
      () => status(t, s, 'never-granted'),
      (x) => x.uploadState !== 'Pending',
    );
    expect(failed.uploadState).toBe('Failed');
    expect(failed.packetCaptureErrorDetails).toContainEqual({
      code: 'StorageFailed',
      message: expect.stringContaining('never granted'),
    });
    await waitFor(
      () => Promise.resolve(acks(a.sessionId)),
      (n) => n === 2,
    );
    // Resent, over and over: acknowledged each time, checked never.
    for (let i = 0; i < 5; i++) {
      agent().send({ type: 'uploaded', sessionId: a.sessionId, upload: ringReport(a, numbers) });
    }
    await waitFor(
      () => Promise.resolve(acks(a.sessionId)),
      (n) => n === 7,
    );

    // The whole 100,000 the schema allows, handed to the control plane as the hub would.
    const b = await create(t, s, 'Ring-01', 'never-granted-100k', RING);
    agent().finish(b.sessionId, 'ManualIntervention');
    await waitFor(
      () => Promise.resolve(acks(b.sessionId)),
      (n) => n === 1,
    );
    expect(await ask(b.sessionId, 1)).toBeDefined(); // one real grant: number 1 alone is good
    const vm = (await t.server.store.getVmById(agent().agentId!))!;
    const all = Array.from({ length: 100_000 }, (_, i) => i + 1);
    await t.server.control.agentMessage(vm, {
      type: 'uploaded',
      sessionId: b.sessionId,
      upload: ringReport(b, all),
    });
    expect((await status(t, s, 'never-granted-100k')).uploadState).toBe('Failed');
    expect(proxy.count('HEAD')).toBe(headsBefore);
  });

  it('grants a SAS only for a ring, only within fileCount of the highest granted, and never a far-future number', async () => {
    const a = await create(t, s, 'Ring-01', 'grants', RING);
    expect((await ask(a.sessionId, 1))?.url).toBe(ringFileBlobUrl(a.blob!.url, 1));
    // fileCount 3: up to 1 + 3 now.
    expect(await ask(a.sessionId, 5)).toBeUndefined();
    expect(await ask(a.sessionId, 2 ** 40)).toBeUndefined();
    expect(await ask(a.sessionId, Number.MAX_SAFE_INTEGER)).toBeUndefined();
    expect(await ask(a.sessionId, 4)).toBeDefined();
    expect(await ask(a.sessionId, 7)).toBeDefined();
    // Asked again (the agent heard nothing): granted again, with a fresh SAS.
    expect(await ask(a.sessionId, 1)).toBeDefined();
    expect(grants(a.sessionId)).toEqual([1, 4, 7, 1]);
    // A single-file capture has no ring files.
    const single = await create(t, s, 'Ring-01', 'single-no-grants');
    expect(await ask(single.sessionId, 1)).toBeUndefined();
    expect(grants(single.sessionId)).toEqual([]);
  });

  it('a legitimate ring completes: each granted file uploaded, checked once each; resent, not checked again', async () => {
    const a = await create(t, s, 'Ring-01', 'honest-ring', RING);
    const sizes = [1000, 1500, 700, 1200, 900];
    for (const [i, size] of sizes.entries()) {
      const grant = (await ask(a.sessionId, i + 1))!;
      expect(grant).toBeDefined();
      await new BlockBlobClient(`${grant.url}?${grant.sas}`).upload(Buffer.alloc(size, i), size);
    }
    agent().finish(a.sessionId, 'ManualIntervention');
    await waitFor(
      () => Promise.resolve(acks(a.sessionId)),
      (n) => n === 1,
    );
    const report: UploadReport = {
      state: 'Completed',
      blobs: sizes.map((size, i) => ({ url: ringFileBlobUrl(a.blob!.url, i + 1), size })),
    };
    const headsBefore = proxy.count('HEAD');
    agent().send({ type: 'uploaded', sessionId: a.sessionId, upload: report });
    const done = await waitFor(
      () => status(t, s, 'honest-ring'),
      (x) => x.uploadState !== 'Pending',
    );
    expect(done).toMatchObject({ uploadState: 'Completed', blobs: report.blobs });
    expect(proxy.count('HEAD') - headsBefore).toBe(sizes.length);
    await waitFor(
      () => Promise.resolve(acks(a.sessionId)),
      (n) => n === 2,
    );
    agent().send({ type: 'uploaded', sessionId: a.sessionId, upload: report });
    await waitFor(
      () => Promise.resolve(acks(a.sessionId)),
      (n) => n === 3,
    );
    await agent().disconnect();
    await agent().connect({ sessions: [stoppedObserved(a.sessionId, { upload: report })] });
    await waitFor(
      () => Promise.resolve(acks(a.sessionId)),
      (n) => n === 4,
    );
    expect(proxy.count('HEAD') - headsBefore).toBe(sizes.length);
    expect((await status(t, s, 'honest-ring')).uploadState).toBe('Completed');
  });

  it('when storage errors, the check is retried with exponential backoff, and resent reports do not hurry it', async () => {
    const a = await create(t, s, 'Ring-01', 'storage-errors');
    await new BlockBlobClient(`${a.blob!.url}?${a.blob!.sas}`).upload(Buffer.alloc(800, 3), 800);
    agent().finish(a.sessionId, 'ManualIntervention');
    await waitFor(
      () => Promise.resolve(acks(a.sessionId)),
      (n) => n === 1,
    );
    const report: UploadReport = { state: 'Completed', blobs: [{ url: a.blob!.url, size: 800 }] };
    proxy.failHeads = true;
    try {
      const before = proxy.count('HEAD');
      const heads = () => proxy.count('HEAD') - before;
      /** Waits until the HEAD count has not moved for `quietMs`, and returns it. */
      const settled = async (quietMs = 1500) => {
        let last = -1;
        for (;;) {
          const now = heads();
          if (now === last) return now;
          last = now;
          await new Promise((r) => setTimeout(r, quietMs));
        }
      };
      agent().send({ type: 'uploaded', sessionId: a.sessionId, upload: report });
      // One check: the storage client's own tries (3) at most.
      const first = await settled();
      expect(first).toBeGreaterThanOrEqual(1);
      expect(first).toBeLessThanOrEqual(3);
      // Resent, and a hello: nothing is checked before the backoff (10 s) is up.
      agent().send({ type: 'uploaded', sessionId: a.sessionId, upload: report });
      await t.server.hub.drain();
      await agent().disconnect();
      await agent().connect({ sessions: [stoppedObserved(a.sessionId, { upload: report })] });
      clockMs += 9_000;
      expect(await settled()).toBe(first);
      clockMs += 1_000;
      const second = await settled();
      expect(second).toBe(2 * first);
      // Then 20 s.
      clockMs += 19_000;
      expect(await settled()).toBe(second);
      clockMs += 1_000;
      const third = await settled();
      expect(third).toBe(3 * first);
      // 40 s, 80 s, … capped at 10 min: after an hour of failures the checks are far apart.
      for (const step of [40, 80, 160, 320, 600, 600]) {
        clockMs += step * 1000;
        await settled();
      }
      const capped = heads();
      expect(capped).toBe(9 * first);
      clockMs += 599_000;
      expect(await settled()).toBe(capped);
      expect((await status(t, s, 'storage-errors')).uploadState).toBe('Pending');
      expect(acks(a.sessionId)).toBe(1);
    } finally {
      proxy.failHeads = false;
    }
    clockMs += 1_000;
    const done = await waitFor(
      () => status(t, s, 'storage-errors'),
      (x) => x.uploadState !== 'Pending',
    );
    expect(done).toMatchObject({ uploadState: 'Completed', blobs: report.blobs });
    await waitFor(
      () => Promise.resolve(acks(a.sessionId)),
      (n) => n === 2,
    );
  });
});
