/**
 * Faults of the processes on the capturing host, mid-capture: kill -9 of the agent, kill -9 of
 * its tcpdump. Real binaries (server, two agents), real tcpdump in the lab's namespaces, numbered
 * traffic running through the fault, tshark as the judge. Host b's capture runs through every
 * fault on host a and must end normally with every datagram once.
 */
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stopProcess } from '../lab/cli-process.js';
import { waitFor } from '../lab/control-plane.js';
import { isRoot } from '../lab/exec.js';
import { FaultLab, seqPackets, streamInFile, type SeqPacket, type SeqStream } from './fault-lab.js';

const UDP_5300 = [{ protocol: 'UDP', remotePort: '5300' }];
const UDP_5400 = [{ protocol: 'UDP', remotePort: '5400' }];

describe.skipIf(!isRoot)('faults of the agent and tcpdump mid-capture (root)', () => {
  let faults: FaultLab;
  /** Host b's capture and its traffic, running through every test of this file. */
  let otherFile: string;
  let other: SeqStream;

  beforeAll(async () => {
    faults = await FaultLab.create({ agents: { 'host-a': 'a', 'host-b': 'b' } });
    otherFile = (await faults.create('other-b', 'host-b', { filters: UDP_5400 })).file;
    await faults.until('other-b', (s) => s.packetCaptureStatus === 'Running');
    other = faults.stream('b', { gapMs: 50 });
  });

  afterAll(async () => {
    await faults?.close();
  });

  it('kill -9 of the agent: Unknown while it is gone, then Stopped AgentRestarted with every datagram sent before the kill', async () => {
    const { file } = await faults.create('agent-killed', 'host-a', { filters: UDP_5300 });
    // A second capture of the same traffic on the same host: each tcpdump has its own guard.
    const second = await faults.create('agent-killed-too', 'host-a', { filters: UDP_5300 });
    await faults.until('agent-killed', (s) => s.packetCaptureStatus === 'Running');
    await faults.until('agent-killed-too', (s) => s.packetCaptureStatus === 'Running');
    const traffic = faults.stream('a');
    await traffic.reach(100);
    // No pause before the kill: the datagrams of the last moment are in the kernel's capture
    // block, not yet handed to tcpdump.
    const tcpdumps = await faults.tcpdumps(faults.lab.a);
    expect(tcpdumps).toHaveLength(2);
    for (const pid of tcpdumps) expect(await faults.guardsOf(pid)).toHaveLength(1);
    const beforeKill = traffic.sent();
    await stopProcess(faults.agents.get('host-a'), 'SIGKILL');
    const away = await faults.until('agent-killed', (s) => s.packetCaptureStatus === 'Unknown');
    expect(away.packetCaptureError).toEqual(['AgentStopped']);
    expect(away.agentConnectionState).toBe('Disconnected');
    // Restarted at once, as a service manager does, while traffic goes on: the agent's tcpdump
    // must still get the kernel's last block before anything stops it.
    faults.startAgent('host-a');
    const s = await faults.until('agent-killed', (x) => x.packetCaptureStatus === 'Stopped');
    const s2 = await faults.until('agent-killed-too', (x) => x.packetCaptureStatus === 'Stopped');
    const { sent } = await traffic.stop();
    expect(s.stopReason).toBe('AgentRestarted');
    expect(s.packetCaptureError).toEqual([]);
    expect(await faults.tcpdumps(faults.lab.a)).toEqual([]);
    // The guards that stopped them are gone too.
    for (const pid of tcpdumps) {
      await waitFor(
        () => faults.guardsOf(pid),
        (g) => g.length === 0,
        10_000,
      );
    }

    const packets = await seqPackets(file);
    const found = streamInFile(packets, traffic, beforeKill);
    console.info(
      `agent kill -9: ${beforeKill} datagrams sent before the kill, ${found.count} in the file ` +
        `(highest ${found.highest}, ${sent} sent in all), missing ${JSON.stringify(found.missing)}`,
    );
    expect(found.duplicates).toEqual([]);
    expect(found.missing).toEqual([]);
    // The file's count is what the user is told (requests and their echoes).
    expect(s.packetsCaptured).toBe(packets.length);

    expect(s2).toMatchObject({ stopReason: 'AgentRestarted', packetCaptureError: [] });
    const packets2 = await seqPackets(second.file);
    const found2 = streamInFile(packets2, traffic, beforeKill);
    expect(found2.duplicates).toEqual([]);
    expect(found2.missing).toEqual([]);
    expect(s2.packetsCaptured).toBe(packets2.length);
  });

  it('kill -9 of tcpdump: Error CaptureFailed, the file whole up to what tcpdump had written; the agent runs on', async () => {
    const { file } = await faults.create('tcpdump-killed', 'host-a', { filters: UDP_5300 });
    await faults.until('tcpdump-killed', (s) => s.packetCaptureStatus === 'Running');
    const traffic = faults.stream('a', { size: 300 });
    await traffic.reach(150);
    const pids = await faults.tcpdumps(faults.lab.a);
    expect(pids).toHaveLength(1);
    const beforeKill = traffic.sent();
    process.kill(pids[0]!, 'SIGKILL');
    const s = await faults.until('tcpdump-killed', (x) => x.packetCaptureStatus !== 'Running');
    await traffic.stop();
    expect(s.packetCaptureStatus).toBe('Error');
    expect(s.stopReason).toBe('Error');
    expect(s.packetCaptureError[0]).toBe('CaptureFailed');
    expect(s.packetCaptureErrorDetails[0]!.message).toMatch(
      /tcpdump stopped unexpectedly \(signal SIGKILL\)/,
    );
    // tshark reads the file; what is in it is a run from the first datagram on, each once.
    // tcpdump's unwritten output buffer (up to 4 KiB) and the kernel's unhanded block die with it.
    const packets = await seqPackets(file);
    const found = streamInFile(packets, traffic);
    const gaps = streamInFile(packets, traffic, found.highest + 1).missing;
    console.info(
      `tcpdump kill -9: ${beforeKill} datagrams sent before the kill, ${found.count} in the file`,
    );
    expect(found.duplicates).toEqual([]);
    expect(gaps).toEqual([]);
    expect(found.count).toBeGreaterThan(0);
    expect(found.count).toBeLessThanOrEqual(beforeKill);
    expect(s.packetsCaptured).toBe(packets.length);
    // Its guard was released, not left behind.
    await waitFor(
      () => faults.guardsOf(pids[0]!),
      (g) => g.length === 0,
      10_000,
    );

    // The agent is still there and captures again on the same interface.
    const again = await faults.create('after-tcpdump', 'host-a', { filters: UDP_5300 });
    await faults.until('after-tcpdump', (x) => x.packetCaptureStatus === 'Running');
    const more = faults.stream('a');
    await more.reach(20);
    const { sent } = await more.stop();
    await faults.stop('after-tcpdump');
    const after = await faults.until('after-tcpdump', (x) => x.packetCaptureStatus === 'Stopped');
    expect(after.stopReason).toBe('ManualIntervention');
    const afterFound = streamInFile(await seqPackets(again.file), more, sent);
    expect(afterFound).toMatchObject({ count: sent, missing: [], duplicates: [] });
  });

  it('kill -9 of the agent during a continuous capture: every ring file whole, each datagram at most once, none skipped', async () => {
    const file = path.join(faults.captures(), 'ring-killed.cap');
    await faults.create('ring-killed', 'host-a', {
      filters: UDP_5300,
      storageLocation: { localPath: file },
      continuousCapture: true,
      captureSettings: { fileCount: 10, fileSizeInBytes: 20_000, sessionTimeLimitInSeconds: 600 },
    });
    await faults.until('ring-killed', (s) => s.packetCaptureStatus === 'Running');
    const traffic = faults.stream('a');
    await traffic.reach(150);
    const beforeKill = traffic.sent();
    await stopProcess(faults.agents.get('host-a'), 'SIGKILL');
    faults.startAgent('host-a');
    const s = await faults.until('ring-killed', (x) => x.packetCaptureStatus === 'Stopped');
    await traffic.stop();
    expect(s.stopReason).toBe('AgentRestarted');
    expect(s.packetCaptureError).toEqual([]);
    expect(s.files.length).toBeGreaterThan(1);
    // The ring's files in order, read as one: tshark reads each; the datagrams run on from the
    // first without a hole or a repeat. A ring's packets pass through the agent, so those on
    // their way through it when it was killed are not in any file.
    const packets: SeqPacket[] = [];
    for (const ringFile of s.files) packets.push(...(await seqPackets(ringFile)));
    const found = streamInFile(packets, traffic, 0);
    console.info(
      `ring, agent kill -9: ${beforeKill} datagrams sent before the kill, ${found.count} in ${s.files.length} files`,
    );
    expect(found.duplicates).toEqual([]);
    expect(streamInFile(packets, traffic, found.highest + 1).missing).toEqual([]);
    expect(packets.map((p) => p.seq).filter((_, i) => packets[i]!.sport === traffic.sport)).toEqual(
      [...Array(found.count).keys()],
    );
    expect(s.packetsCaptured).toBe(packets.length);
    await faults.connected('host-a');
  });

  it("host b's capture ran through every fault and ends normally with every datagram once", async () => {
    const { status, sent, found } = await faults.finishBystander('other-b', other, otherFile);
    expect(status.stopReason).toBe('ManualIntervention');
    expect(status.packetCaptureError).toEqual([]);
    expect(found).toMatchObject({ count: sent, missing: [], duplicates: [] });
  });
});
