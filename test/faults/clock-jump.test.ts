/**
 * A jump of the agent's wall clock mid-capture, while the capture uploads to a storage account.
 * The system clock cannot be changed safely on a shared machine, so host a's agent runs in this
 * process with an injected wall clock (AgentOptions.now) that jumps 7 hours ahead — past the SAS
 * expiry the server set (the capture's deadline plus an hour) — and later 3 hours back. The rest
 * is real: the server binary, Azurite, tcpdump in the lab, numbered traffic, tshark. Host b's
 * agent (the binary) captures throughout and must end normally.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { BlockBlobClient, StorageSharedKeyCredential } from '@azure/storage-blob';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createAgent, type Agent } from '../../src/agent/agent.js';
import { createJsonLineLog } from '../../src/agent/agent-log.js';
import {
  AZURITE_ACCOUNT_KEY,
  AZURITE_ACCOUNT_NAME,
  startAzurite,
  type Azurite,
} from '../../src/blob/azurite.js';
import { isRoot } from '../lab/exec.js';
import { FaultLab, seqPackets, streamInFile, type SeqStream } from './fault-lab.js';

const UDP_5300 = [{ protocol: 'UDP', remotePort: '5300' }];
const UDP_5400 = [{ protocol: 'UDP', remotePort: '5400' }];
const HOUR = 3600_000;

describe.skipIf(!isRoot)("a jump of the agent's clock mid-capture (root)", () => {
  let faults: FaultLab;
  let azurite: Azurite;
  let azuriteDir: string;
  let agent: Agent | undefined;
  let offset = 0;
  const logLines: string[] = [];
  let otherFile: string;
  let other: SeqStream;

  beforeAll(async () => {
    azuriteDir = await mkdtemp(path.join(tmpdir(), 'ww-faults-azurite-'));
    azurite = await startAzurite({ dataDir: azuriteDir });
    faults = await FaultLab.create({ agents: { 'host-b': 'b' } });
    await faults.registerStorageAccount('captures', azurite.connectionString);
    agent = await createAgent({
      serverUrl: faults.api.url,
      enrollToken: faults.tenant.enrollToken,
      subscriptionId: faults.tenant.subscriptionId,
      resourceGroup: 'lab',
      name: 'host-a',
      location: 'westeurope',
      interface: faults.lab.a.iface,
      netns: faults.lab.a.netns,
      dataDir: path.join(faults.root, 'agent-host-a'),
      captureRoot: faults.captures(),
      uploadBackoffMinMs: 100,
      uploadBackoffMaxMs: 1000,
      log: createJsonLineLog((line) => logLines.push(line), { minLevel: 'info' }),
      now: () => Date.now() + offset,
    });
    await faults.connected('host-a');
    otherFile = (await faults.create('other-b', 'host-b', { filters: UDP_5400 })).file;
    await faults.until('other-b', (s) => s.packetCaptureStatus === 'Running');
    other = faults.stream('b', { gapMs: 50 });
  });

  afterAll(async () => {
    try {
      await agent?.close();
      await faults?.close();
    } finally {
      await azurite?.close();
      if (azuriteDir) await rm(azuriteDir, { recursive: true, force: true });
    }
  });

  it('7 h ahead, then 3 h back: the capture runs on, the upload completes, the blob holds every datagram once', async () => {
    await faults.create('clock-jump', 'host-a', {
      filters: UDP_5300,
      storageLocation: {
        storageId: `/subscriptions/${faults.tenant.subscriptionId}/resourceGroups/storage/providers/Microsoft.Storage/storageAccounts/captures`,
      },
    });
    await faults.until('clock-jump', (s) => s.packetCaptureStatus === 'Running');
    const traffic = faults.stream('a');
    await traffic.reach(100);
    const beforeJump = traffic.sent();
    // Past the SAS expiry (the capture's 5 h time limit plus an hour) on the agent's clock.
    offset = 7 * HOUR;
    await traffic.reach(beforeJump + 100);
    // The capture's own time limit does not count wall-clock time.
    expect(await faults.status('clock-jump')).toMatchObject({
      packetCaptureStatus: 'Running',
      uploadState: 'Pending',
      packetCaptureError: [],
    });
    offset = -3 * HOUR;
    await traffic.reach(beforeJump + 200);
    const { sent } = await traffic.stop();
    await faults.stop('clock-jump');
    const s = await faults.until(
      'clock-jump',
      (x) => x.packetCaptureStatus !== 'Running' && x.uploadState !== 'Pending',
      60_000,
    );
    expect(s).toMatchObject({
      packetCaptureStatus: 'Stopped',
      stopReason: 'ManualIntervention',
      uploadState: 'Completed',
      packetCaptureError: [],
    });
    const blob = new BlockBlobClient(
      s.blobs![0]!.url,
      new StorageSharedKeyCredential(AZURITE_ACCOUNT_NAME, AZURITE_ACCOUNT_KEY),
    );
    const file = path.join(faults.root, 'clock-jump-blob.cap');
    await blob.downloadToFile(file);
    const packets = await seqPackets(file);
    const found = streamInFile(packets, traffic, sent);
    console.info(
      `clock jump: ${beforeJump} datagrams sent before the jump, ${sent} in all, ${found.count} in the blob`,
    );
    expect(found).toMatchObject({ count: sent, missing: [], duplicates: [] });
    expect(s.packetsCaptured).toBe(packets.length);
    expect(logLines.join('\n')).not.toContain('SAS expired');
  }, 120_000);

  it("host b's capture ran through it and ends normally with every datagram once", async () => {
    const { status, sent, found } = await faults.finishBystander('other-b', other, otherFile);
    expect(status.stopReason).toBe('ManualIntervention');
    expect(found).toMatchObject({ count: sent, missing: [], duplicates: [] });
  });
});
