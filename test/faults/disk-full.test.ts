/**
 * A full disk on the capturing host, mid-capture: host a's agent keeps its captures and its data
 * dir (journal) on a 2 MiB tmpfs. Once the capture itself fills it; once another process takes
 * every free byte at once. Real binaries, real tcpdump, numbered traffic, tshark as the judge;
 * host b's capture (on a disk with room) runs through both and must end normally.
 */
import { mkdir, rm, stat, statfs } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isRoot, run } from '../lab/exec.js';
import { FaultLab, seqPackets, streamInFile, type SeqStream } from './fault-lab.js';

const UDP_5300 = [{ protocol: 'UDP', remotePort: '5300' }];
const UDP_5400 = [{ protocol: 'UDP', remotePort: '5400' }];

describe.skipIf(!isRoot)('a full disk on the agent mid-capture (root)', () => {
  let faults: FaultLab;
  let small: string;
  let otherFile: string;
  let other: SeqStream;

  beforeAll(async () => {
    faults = await FaultLab.create({
      agents: { 'host-a': 'a', 'host-b': 'b' },
      prepare: async ({ root }) => {
        small = path.join(root, 'small');
        await mkdir(small);
        await run('mount', ['-t', 'tmpfs', '-o', 'size=2m,mode=0700', 'tmpfs', small]);
        return async () => {
          await run('umount', ['-l', small], { check: false });
        };
      },
      agentArgs: (root) => ({
        'host-a': [
          '--capture-root',
          path.join(root, 'small', 'captures'),
          '--data-dir',
          path.join(root, 'small', 'agent'),
        ],
      }),
    });
    otherFile = (await faults.create('other-b', 'host-b', { filters: UDP_5400 })).file;
    await faults.until('other-b', (s) => s.packetCaptureStatus === 'Running');
    other = faults.stream('b', { gapMs: 50 });
  });

  afterAll(async () => {
    await faults?.close();
  });

  const fileOn = (name: string) => ({ filePath: path.join(small, 'captures', `${name}.cap`) });

  it('the capture fills the disk: Error LocalFileFailed, a whole file holding every packet tcpdump captured', async () => {
    const file = fileOn('fills-disk').filePath;
    await faults.create('fills-disk', 'host-a', {
      filters: UDP_5300,
      storageLocation: fileOn('fills-disk'),
    });
    await faults.until('fills-disk', (s) => s.packetCaptureStatus === 'Running');
    const traffic = faults.stream('a', { size: 1200, gapMs: 0 });
    const s = await faults.until('fills-disk', (x) => x.packetCaptureStatus !== 'Running', 60_000);
    const sentByStop = traffic.sent();
    await traffic.stop();
    expect(s.packetCaptureStatus).toBe('Error');
    expect(s.stopReason).toBe('Error');
    expect(s.packetCaptureError).toEqual(['LocalFileFailed']);
    expect(s.packetCaptureErrorDetails[0]!.message).toMatch(/no space left on device/);
    const packets = await seqPackets(file);
    const found = streamInFile(packets, traffic);
    console.info(
      `disk filled by the capture: ${sentByStop} datagrams sent by the time the stop was seen, ` +
        `${found.count} in the file (${(await stat(file)).size} bytes)`,
    );
    // A run from the first datagram on, each once, and exactly what the user is told.
    expect(streamInFile(packets, traffic, found.highest + 1).missing).toEqual([]);
    expect(found.duplicates).toEqual([]);
    expect(found.count).toBeGreaterThan(100);
    expect(s.packetsCaptured).toBe(packets.length);
    expect(s.bytesCaptured).toBe((await stat(file)).size);
    // Room for the next test.
    await rm(file);
  });

  it('another process takes every free byte: Error LocalFileFailed, the file whole up to the last packet written', async () => {
    const file = fileOn('disk-taken').filePath;
    await faults.create('disk-taken', 'host-a', {
      filters: UDP_5300,
      storageLocation: fileOn('disk-taken'),
    });
    await faults.until('disk-taken', (s) => s.packetCaptureStatus === 'Running');
    const traffic = faults.stream('a', { size: 200 });
    await traffic.reach(100);
    // The kernel's block and tcpdump's 4 KiB buffer reach the file first.
    await traffic.reach(160);
    const beforeFull = traffic.sent();
    // dd stops at ENOSPC: the disk is full to the last block.
    await run('dd', ['if=/dev/zero', `of=${path.join(small, 'filler')}`, 'bs=64k'], {
      check: false,
    });
    const fs = await statfs(small);
    expect(fs.bavail).toBe(0);
    const s = await faults.until('disk-taken', (x) => x.packetCaptureStatus !== 'Running');
    await traffic.stop();
    expect(s.packetCaptureStatus).toBe('Error');
    expect(s.stopReason).toBe('Error');
    expect(s.packetCaptureError).toEqual(['LocalFileFailed']);
    const packets = await seqPackets(file);
    const found = streamInFile(packets, traffic);
    console.info(
      `disk taken by another process: ${beforeFull} datagrams sent before, ${found.count} in the file`,
    );
    expect(streamInFile(packets, traffic, found.highest + 1).missing).toEqual([]);
    expect(found.duplicates).toEqual([]);
    expect(found.count).toBeGreaterThan(0);
    expect(s.packetsCaptured).toBe(packets.length);

    // Space again: the agent captures on.
    await rm(path.join(small, 'filler'));
    await rm(file);
    await faults.create('after-full', 'host-a', {
      filters: UDP_5300,
      storageLocation: fileOn('after-full'),
    });
    await faults.until('after-full', (x) => x.packetCaptureStatus === 'Running');
    const more = faults.stream('a');
    await more.reach(20);
    const { sent } = await more.stop();
    await faults.stop('after-full');
    const after = await faults.until('after-full', (x) => x.packetCaptureStatus === 'Stopped');
    expect(after.stopReason).toBe('ManualIntervention');
    expect(streamInFile(await seqPackets(fileOn('after-full').filePath), more, sent)).toMatchObject(
      {
        count: sent,
        missing: [],
        duplicates: [],
      },
    );
  });

  it("host b's capture ran through both and ends normally with every datagram once", async () => {
    const { status, sent, found } = await faults.finishBystander('other-b', other, otherFile);
    expect(status.stopReason).toBe('ManualIntervention');
    expect(found).toMatchObject({ count: sent, missing: [], duplicates: [] });
  });
});
