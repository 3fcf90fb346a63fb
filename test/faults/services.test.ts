/**
 * Faults of the services a capture depends on, mid-capture: kill -9 of the blob store (Azurite)
 * and kill -9 of the server, each while a capture uploads to a storage account. Real binaries,
 * real Azurite, real tcpdump, numbered traffic through the fault; the blob, downloaded with the
 * account key, read by tshark. Host b's capture (a local file) runs through both.
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { BlockBlobClient, StorageSharedKeyCredential } from '@azure/storage-blob';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  AZURITE_ACCOUNT_KEY,
  AZURITE_ACCOUNT_NAME,
  startAzurite,
  type Azurite,
} from '../../src/blob/azurite.js';
import { stopProcess } from '../lab/cli-process.js';
import { waitFor } from '../lab/control-plane.js';
import { isRoot, run } from '../lab/exec.js';
import {
  FaultLab,
  seqPackets,
  streamInFile,
  type CaptureStatus,
  type SeqStream,
} from './fault-lab.js';

const UDP_5300 = [{ protocol: 'UDP', remotePort: '5300' }];
const UDP_5400 = [{ protocol: 'UDP', remotePort: '5400' }];

describe.skipIf(!isRoot)('faults of the blob store and the server mid-capture (root)', () => {
  let faults: FaultLab;
  let azurite: Azurite;
  let azuriteDir: string;
  let otherFile: string;
  let other: SeqStream;
  const storageId = () =>
    `/subscriptions/${faults.tenant.subscriptionId}/resourceGroups/storage/providers/Microsoft.Storage/storageAccounts/captures`;

  beforeAll(async () => {
    azuriteDir = await mkdtemp(path.join(tmpdir(), 'ww-faults-azurite-'));
    azurite = await startAzurite({ dataDir: azuriteDir });
    faults = await FaultLab.create({ agents: { 'host-a': 'a', 'host-b': 'b' } });
    await faults.registerStorageAccount('captures', azurite.connectionString);
    // Azurite keeps its metadata in memory and saves it every 5 s: a kill -9 before then would
    // take the container the registration created with it (storage that forgets is another
    // fault; here the store dies but keeps what it had saved).
    await waitFor(
      () => readFile(path.join(azuriteDir, '__azurite_db_blob__.json'), 'utf8').catch(() => ''),
      (db) => db.includes('network-watcher-logs'),
      20_000,
      250,
    );
    otherFile = (await faults.create('other-b', 'host-b', { filters: UDP_5400 })).file;
    await faults.until('other-b', (s) => s.packetCaptureStatus === 'Running');
    other = faults.stream('b', { gapMs: 50 });
  });

  afterAll(async () => {
    try {
      await faults?.close();
    } finally {
      await azurite?.close();
      if (azuriteDir) await rm(azuriteDir, { recursive: true, force: true });
    }
  });

  /** The committed blob, downloaded with the account key, as a local file. */
  async function download(status: CaptureStatus): Promise<string> {
    expect(status.blobs).toHaveLength(1);
    const blob = new BlockBlobClient(
      status.blobs![0]!.url,
      new StorageSharedKeyCredential(AZURITE_ACCOUNT_NAME, AZURITE_ACCOUNT_KEY),
    );
    const file = path.join(faults.root, `blob-${Math.random().toString(36).slice(2)}.cap`);
    await blob.downloadToFile(file);
    return file;
  }

  /** Azurite's process, found by the port it listens on, killed outright. */
  async function killAzurite(): Promise<void> {
    const { stdout } = await run('ss', ['-Hltnp', `sport = :${azurite.port}`]);
    const pids = [...stdout.matchAll(/pid=(\d+)/g)].map((m) => Number(m[1]));
    expect(pids.length).toBeGreaterThan(0);
    for (const pid of new Set(pids)) process.kill(pid, 'SIGKILL');
    await faults.until('other-b', () => !azurite.running, 10_000);
  }

  it('kill -9 of the blob store: the upload stays Pending, then completes; the blob holds every datagram once', async () => {
    await faults.create('blob-store-killed', 'host-a', {
      filters: UDP_5300,
      storageLocation: { storageId: storageId() },
    });
    await faults.until('blob-store-killed', (s) => s.packetCaptureStatus === 'Running');
    const traffic = faults.stream('a');
    await traffic.reach(100);
    const beforeKill = traffic.sent();
    await killAzurite();
    // The capture goes on with the store gone for longer than a few upload retries.
    await traffic.reach(beforeKill + 200);
    const during = await faults.status('blob-store-killed');
    expect(during).toMatchObject({
      packetCaptureStatus: 'Running',
      uploadState: 'Pending',
      packetCaptureError: [],
    });
    await azurite.start();
    await traffic.reach(beforeKill + 300);
    const { sent } = await traffic.stop();
    await faults.stop('blob-store-killed');
    const s = await faults.until(
      'blob-store-killed',
      (x) => x.packetCaptureStatus !== 'Running' && x.uploadState !== 'Pending',
      90_000,
    );
    expect(s, JSON.stringify(s.packetCaptureErrorDetails)).toMatchObject({
      packetCaptureStatus: 'Stopped',
      stopReason: 'ManualIntervention',
      uploadState: 'Completed',
      packetCaptureError: [],
    });
    const blob = await download(s);
    const packets = await seqPackets(blob);
    const found = streamInFile(packets, traffic, sent);
    console.info(
      `blob store kill -9: ${beforeKill} datagrams sent before the kill, ${sent} in all, ${found.count} in the blob`,
    );
    expect(found).toMatchObject({ count: sent, missing: [], duplicates: [] });
    expect(s.packetsCaptured).toBe(packets.length);
    expect(s.blobs![0]!.size).toBe(s.bytesCaptured);
  }, 180_000);

  it('kill -9 of the server: the capture and its upload go on; after the restart it reads Running, then Stopped with every datagram once', async () => {
    await faults.create('server-killed', 'host-a', {
      filters: UDP_5300,
      storageLocation: { storageId: storageId() },
    });
    await faults.until('server-killed', (s) => s.packetCaptureStatus === 'Running');
    const traffic = faults.stream('a');
    await traffic.reach(100);
    const beforeKill = traffic.sent();
    await stopProcess(faults.server, 'SIGKILL');
    // While the server is gone the API is too; the agent captures on.
    await expect(faults.status('server-killed')).rejects.toThrow();
    await traffic.reach(beforeKill + 100);
    await faults.startServer();
    await faults.connected('host-a');
    const back = await faults.until(
      'server-killed',
      (x) => x.packetCaptureStatus === 'Running' && x.packetsCaptured > 2 * beforeKill,
    );
    expect(back).toMatchObject({ uploadState: 'Pending', packetCaptureError: [] });
    await traffic.reach(beforeKill + 150);
    const { sent } = await traffic.stop();
    await faults.stop('server-killed');
    const s = await faults.until(
      'server-killed',
      (x) => x.packetCaptureStatus !== 'Running' && x.uploadState !== 'Pending',
      60_000,
    );
    expect(s, JSON.stringify(s.packetCaptureErrorDetails)).toMatchObject({
      packetCaptureStatus: 'Stopped',
      stopReason: 'ManualIntervention',
      uploadState: 'Completed',
      packetCaptureError: [],
    });
    const packets = await seqPackets(await download(s));
    const found = streamInFile(packets, traffic, sent);
    console.info(
      `server kill -9: ${beforeKill} datagrams sent before the kill, ${sent} in all, ${found.count} in the blob`,
    );
    expect(found).toMatchObject({ count: sent, missing: [], duplicates: [] });
    expect(s.packetsCaptured).toBe(packets.length);
  }, 120_000);

  it("host b's capture ran through both and ends normally with every datagram once", async () => {
    const { status, sent, found } = await faults.finishBystander('other-b', other, otherFile);
    expect(status.stopReason).toBe('ManualIntervention');
    expect(found).toMatchObject({ count: sent, missing: [], duplicates: [] });
  });
});
