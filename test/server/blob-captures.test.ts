/**
 * Captures stored in a storage account, on the control-plane side, against a real Azurite: blob
 * naming, the SAS the agent gets (write-only, one blob), ring grants, upload reports and the
 * server's own check of what was uploaded. The agent here is SYNTHETIC (real channel protocol,
 * invented packets); real uploads by the real agent are tested in test/agent-blob.test.ts.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { BlockBlobClient } from '@azure/storage-blob';
import { startAzurite, type Azurite } from '../../src/blob/azurite.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ServerMessage } from '../../src/model/channel.js';
import { SyntheticAgent } from '../lab/synthetic-agent.js';
import {
  API,
  capturePath,
  createTenant,
  startServerWithAgent,
  syntheticAgentOf,
  vmId,
  waitFor,
  type Tenant,
  type TestServer,
} from '../lab/control-plane.js';

const AZURITE_KEY =
  'Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==';
let azurite: Azurite;
let azuriteDir: string;

let t: TestServer;
let tenant: Tenant;
let agent: SyntheticAgent;
const nw = 'NetworkWatcher_westeurope';
const storageId = (sub: string) =>
  `/subscriptions/${sub}/resourceGroups/storage/providers/Microsoft.Storage/storageAccounts/captures`;
const url = (name: string, suffix = '') =>
  `${capturePath(tenant.subscriptionId, 'NetworkWatcherRG', nw, name)}${suffix}?api-version=${API}`;

beforeAll(async () => {
  azuriteDir = await mkdtemp(path.join(tmpdir(), 'ww-azurite-'));
  azurite = await startAzurite({ dataDir: azuriteDir });
  ({ t, tenant, agent } = await startServerWithAgent({
    agent: { resourceGroup: 'Web-RG', name: 'Web-01' },
  }));
  const registered = await t.call(
    'POST',
    `/api/v1/subscriptions/${tenant.subscriptionId}/storageAccounts`,
    {
      token: tenant.contributor,
      body: {
        name: 'captures',
        resourceGroup: 'storage',
        connectionString: azurite.connectionString,
      },
    },
  );
  expect(registered.status, registered.text).toBe(201);
});

afterAll(async () => {
  await agent?.close();
  await t?.close();
  await azurite?.close();
  if (azuriteDir) await rm(azuriteDir, { recursive: true, force: true });
});

async function create(name: string, properties: Record<string, unknown>) {
  const started = agent.next(
    (m) => m.type === 'start' && m.assignment.resourceId.endsWith(`/${name}`),
  );
  const r = await t.call('PUT', url(name), {
    token: tenant.contributor,
    body: {
      properties: { target: vmId(tenant.subscriptionId, 'Web-RG', 'Web-01'), ...properties },
    },
  });
  expect(r.status, r.text).toBe(201);
  const start = (await started) as Extract<ServerMessage, { type: 'start' }>;
  return { reply: r, assignment: start.assignment };
}

async function status(name: string) {
  const r = await t.call('POST', url(name, '/queryStatus'), { token: tenant.reader });
  expect(r.status).toBe(200);
  return r.body;
}

describe('captures stored in a storage account', () => {
  it('names the blob as Azure does and gives the agent a write-only SAS for it alone', async () => {
    const before = new Date();
    const { reply, assignment } = await create('to-blob', {
      storageLocation: { storageId: storageId(tenant.subscriptionId) },
    });
    const storagePath = reply.body.properties.storageLocation.storagePath as string;
    expect(storagePath).toMatch(
      new RegExp(
        `^${azurite.blobEndpoint.replace(/\./g, '\\.')}/network-watcher-logs/subscriptions/${tenant.subscriptionId}/resourcegroups/web-rg/providers/microsoft\\.compute/virtualmachines/web-01/\\d{4}/\\d{2}/\\d{2}/packetcapture_\\d{2}_\\d{2}_\\d{2}_\\d{3}\\.cap$`,
      ),
    );
    const stamp =
      /\/(\d{4})\/(\d{2})\/(\d{2})\/packetcapture_(\d{2})_(\d{2})_(\d{2})_(\d{3})\.cap$/.exec(
        storagePath,
      )!;
    const named = Date.UTC(
      +stamp[1]!,
      +stamp[2]! - 1,
      +stamp[3]!,
      +stamp[4]!,
      +stamp[5]!,
      +stamp[6]!,
      +stamp[7]!,
    );
    expect(named).toBeGreaterThanOrEqual(before.getTime());
    expect(named).toBeLessThanOrEqual(Date.now());
    const blob = assignment.blob!;
    expect(blob.url).toBe(storagePath);
    expect(blob.spoolOnly).toBe(true);
    const sas = new URLSearchParams(blob.sas);
    expect(sas.get('sp')).toBe('cw');
    expect(sas.get('sr')).toBe('b');
    expect(new Date(sas.get('se')!).getTime()).toBeGreaterThan(Date.now() + 18000 * 1000);
    expect(new Date(blob.expiresAt).getTime()).toBeLessThanOrEqual(
      Date.now() + (18000 + 3600) * 1000 + 5000,
    );
    // No key in anything the agent got.
    expect(JSON.stringify(assignment)).not.toContain(AZURITE_KEY);
    expect(JSON.stringify(agent.received)).not.toContain(AZURITE_KEY);
    // The agent spools under its capture root when no file was asked for.
    expect(assignment.filePath).toMatch(/^\/var\/captures\/\.wirewatch-spool\/[0-9a-f-]{36}\.cap$/);
    // Nor in any API answer.
    const get = await t.call('GET', url('to-blob'), { token: tenant.reader });
    expect(get.text).not.toContain(AZURITE_KEY);
    expect(get.text).not.toContain('AccountKey');
  });

  it('keeps both copies when filePath is given too', async () => {
    const { assignment } = await create('both-copies', {
      storageLocation: {
        storageId: storageId(tenant.subscriptionId),
        filePath: '/var/captures/both.cap',
      },
    });
    expect(assignment.filePath).toBe('/var/captures/both.cap');
    expect(assignment.blob?.spoolOnly).toBe(false);
  });

  it('reports the upload: Pending, then Completed with the blobs, or Failed with StorageFailed', async () => {
    const { assignment } = await create('uploaded', {
      storageLocation: { storageId: storageId(tenant.subscriptionId) },
    });
    await waitFor(
      () => status('uploaded'),
      (s) => s.packetCaptureStatus === 'Running',
    );
    expect((await status('uploaded')).uploadState).toBe('Pending');
    agent.finish(assignment.sessionId, 'TimeExceeded');
    await waitFor(
      () => status('uploaded'),
      (s) => s.packetCaptureStatus === 'Stopped',
    );
    // Upload with the agent's SAS, as the agent does.
    const blob = new BlockBlobClient(`${assignment.blob!.url}?${assignment.blob!.sas}`);
    await blob.upload(Buffer.alloc(4242, 7), 4242);
    const ack = agent.next((m) => m.type === 'ack' && m.sessionId === assignment.sessionId);
    agent.send({
      type: 'uploaded',
      sessionId: assignment.sessionId,
      upload: { state: 'Completed', blobs: [{ url: assignment.blob!.url, size: 4242 }] },
    });
    await ack;
    const done = await status('uploaded');
    expect(done).toMatchObject({
      uploadState: 'Completed',
      blobs: [{ url: assignment.blob!.url, size: 4242 }],
      packetCaptureError: [],
    });

    // The server checks what the agent claims: a wrong length, or a blob that is not this
    // capture's, is a failed upload.
    const lying = await create('lying', {
      storageLocation: { storageId: storageId(tenant.subscriptionId) },
    });
    const lyingBlob = lying.assignment.blob!;
    await new BlockBlobClient(`${lyingBlob.url}?${lyingBlob.sas}`).upload(Buffer.alloc(100), 100);
    agent.finish(lying.assignment.sessionId, 'ManualIntervention');
    agent.send({
      type: 'uploaded',
      sessionId: lying.assignment.sessionId,
      upload: { state: 'Completed', blobs: [{ url: lyingBlob.url, size: 5000 }] },
    });
    const mismatch = await waitFor(
      () => status('lying'),
      (x) => x.uploadState !== 'Pending',
    );
    expect(mismatch.uploadState).toBe('Failed');
    expect(mismatch.packetCaptureErrorDetails).toContainEqual({
      code: 'StorageFailed',
      message: expect.stringContaining('holds 100 bytes'),
    });
    const foreign = await create('foreign-blob', {
      storageLocation: { storageId: storageId(tenant.subscriptionId) },
    });
    agent.finish(foreign.assignment.sessionId, 'ManualIntervention');
    agent.send({
      type: 'uploaded',
      sessionId: foreign.assignment.sessionId,
      upload: { state: 'Completed', blobs: [{ url: assignment.blob!.url, size: 4242 }] },
    });
    const stolen = await waitFor(
      () => status('foreign-blob'),
      (x) => x.uploadState !== 'Pending',
    );
    expect(stolen.uploadState).toBe('Failed');

    const failing = await create('upload-failed', {
      storageLocation: {
        storageId: storageId(tenant.subscriptionId),
        filePath: '/var/captures/kept.cap',
      },
    });
    agent.finish(failing.assignment.sessionId, 'ManualIntervention');
    agent.send({
      type: 'uploaded',
      sessionId: failing.assignment.sessionId,
      upload: {
        state: 'Failed',
        blobs: [],
        error: { code: 'StorageFailed', message: 'the SAS expired' },
      },
    });
    const failed = await waitFor(
      () => status('upload-failed'),
      (s) => s.uploadState === 'Failed',
    );
    expect(failed.packetCaptureError).toContain('StorageFailed');
    expect(failed.packetCaptureErrorDetails).toContainEqual({
      code: 'StorageFailed',
      message: 'the SAS expired',
    });
  });

  it('grants a SAS per ring file on request, and only for that file', async () => {
    const { assignment } = await create('ring', {
      continuousCapture: true,
      storageLocation: {
        storageId: storageId(tenant.subscriptionId),
        localPath: '/var/captures/ring.cap',
      },
      captureSettings: { fileCount: 3, fileSizeInBytes: 100000, sessionTimeLimitInSeconds: 600 },
    });
    expect(assignment.blob?.sas).toBeUndefined();
    const granted = agent.next(
      (m) => m.type === 'blobGrant' && m.sessionId === assignment.sessionId,
    );
    // The first number may be at most fileCount (a restarted agent may have lost a few files).
    agent.send({ type: 'blobGrantRequest', sessionId: assignment.sessionId, fileIndex: 3 });
    const grant = (await granted) as Extract<ServerMessage, { type: 'blobGrant' }>;
    expect(grant.fileIndex).toBe(3);
    expect(grant.url).toBe(assignment.blob!.url.replace(/\.cap$/, '_3.cap'));
    expect(new URLSearchParams(grant.sas).get('sp')).toBe('cw');
    // A grant for a session of another VM is never given.
    const other = new SyntheticAgent({ ...agent.options, name: 'Web-02' });
    await other.connect();
    try {
      other.send({ type: 'blobGrantRequest', sessionId: assignment.sessionId, fileIndex: 1 });
      await new Promise((r) => setTimeout(r, 300));
      expect(other.received.some((m) => m.type === 'blobGrant')).toBe(false);
    } finally {
      await other.close();
    }
  });

  it('refuses a storage account of another subscription as if it did not exist', async () => {
    const other = await createTenant(t, 'other');
    const r = await t.call('PUT', url('foreign-storage'), {
      token: tenant.contributor,
      body: {
        properties: {
          target: vmId(tenant.subscriptionId, 'Web-RG', 'Web-01'),
          storageLocation: { storageId: storageId(other.subscriptionId) },
        },
      },
    });
    expect(r.status).toBe(400);
    expect(r.body.error).toMatchObject({
      code: 'StorageAccountNotFound',
      target: 'properties.storageLocation.storageId',
    });
  });

  it('a re-PUT of the same body is idempotent although the server set storagePath', async () => {
    const body = {
      properties: {
        target: vmId(tenant.subscriptionId, 'Web-RG', 'Web-01'),
        storageLocation: { storageId: storageId(tenant.subscriptionId) },
      },
    };
    expect((await t.call('PUT', url('again'), { token: tenant.contributor, body })).status).toBe(
      201,
    );
    const again = await t.call('PUT', url('again'), { token: tenant.contributor, body });
    expect(again.status).toBe(200);
  });
});

describe('scale-set captures stored in a storage account', () => {
  it("gives each instance its own blob under the scale set, with a SAS of its own, in the capture's instances", async () => {
    const instances: SyntheticAgent[] = [];
    try {
      for (const instanceId of ['0', '1']) {
        const a = syntheticAgentOf(t, tenant, {
          resourceGroup: 'Web-RG',
          name: `ss-${instanceId}`,
          scaleSet: 'Fleet',
          instanceId,
        });
        instances.push(a);
        await a.connect();
      }
      const starts = instances.map((a) =>
        a.next((m) => m.type === 'start' && m.assignment.resourceId.includes('/ss-blob/')),
      );
      const r = await t.call('PUT', url('ss-blob'), {
        token: tenant.contributor,
        body: {
          properties: {
            target: `/subscriptions/${tenant.subscriptionId}/resourceGroups/Web-RG/providers/Microsoft.Compute/virtualMachineScaleSets/Fleet`,
            targetType: 'AzureVMSS',
            storageLocation: { storageId: storageId(tenant.subscriptionId) },
          },
        },
      });
      expect(r.status, r.text).toBe(201);
      // The capture has no blob of its own: each instance has one.
      expect(r.body.properties.storageLocation).not.toHaveProperty('storagePath');
      const assignments = (await Promise.all(starts)).map(
        (m) => (m as Extract<ServerMessage, { type: 'start' }>).assignment,
      );
      for (const [i, a] of assignments.entries()) {
        expect(a.blob!.url).toMatch(
          new RegExp(
            `/network-watcher-logs/subscriptions/${tenant.subscriptionId}/resourcegroups/web-rg/providers/microsoft\\.compute/virtualmachinescalesets/fleet/virtualmachines/${i}/\\d{4}/\\d{2}/\\d{2}/packetcapture_\\d{2}_\\d{2}_\\d{2}_\\d{3}\\.cap$`,
          ),
        );
        expect(new URLSearchParams(a.blob!.sas).get('sr')).toBe('b');
        // Each instance's SAS writes its own blob, and not the other's.
        const own = `${a.blob!.url}?${a.blob!.sas}`;
        await new BlockBlobClient(own).upload(Buffer.alloc(10 + i), 10 + i);
        const other = assignments[1 - i]!.blob!.url;
        await expect(
          new BlockBlobClient(`${other}?${a.blob!.sas}`).upload(Buffer.alloc(1), 1),
        ).rejects.toMatchObject({ statusCode: 403 });
        instances[i]!.finish(a.sessionId, 'TimeExceeded');
        instances[i]!.send({
          type: 'uploaded',
          sessionId: a.sessionId,
          upload: { state: 'Completed', blobs: [{ url: a.blob!.url, size: 10 + i }] },
        });
      }
      const s = await waitFor(
        () => status('ss-blob'),
        (x) =>
          x.instances.every((i: { blobs: unknown[] }) => i.blobs.length === 1) &&
          x.packetCaptureStatus === 'Stopped',
      );
      expect(s.instances.map((i: { blobs: { url: string; size: number }[] }) => i.blobs)).toEqual(
        assignments.map((a, i) => [{ url: a.blob!.url, size: 10 + i }]),
      );
    } finally {
      for (const a of instances) await a.close();
    }
  });
});
