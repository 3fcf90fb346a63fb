/**
 * A network cut between an agent and the server, mid-capture, longer than the heartbeat. Host a's
 * agent runs inside its namespace and reaches the server only over a second veth pair, to a
 * third namespace (s) where a forwarder passes its connections on to the server (in this process,
 * real code, pinging every second). The cut is that veth taken down inside namespace a; the
 * capture's own interface stays up. Host b's agent reaches the server directly and must not
 * notice. Real agent binaries, real tcpdump, numbered traffic, tshark as the judge.
 */
import { spawn } from 'node:child_process';
import { randomInt } from 'node:crypto';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isRoot, run } from '../lab/exec.js';
import { FaultLab, seqPackets, streamInFile, type SeqStream } from './fault-lab.js';

const UDP_5300 = [{ protocol: 'UDP', remotePort: '5300' }];
const UDP_5400 = [{ protocol: 'UDP', remotePort: '5400' }];
const forwardScript = fileURLToPath(new URL('./forward.mjs', import.meta.url));
const SERVER_PORT = 7080;

describe.skipIf(!isRoot)('a network cut between agent and server mid-capture (root)', () => {
  let faults: FaultLab;
  let cutNs: string;
  let otherFile: string;
  let other: SeqStream;

  beforeAll(async () => {
    faults = await FaultLab.create({
      agents: { 'host-a': 'a', 'host-b': 'b' },
      inProcessServer: { pingIntervalMs: 1000 },
      prepare: async (f) => {
        const a = f.lab.a;
        const s = a.netns.replace(/-a$/, '-s');
        cutNs = a.netns;
        const labSubnet = Number(a.ipv4.split('.')[2]);
        let subnet = randomInt(1, 255);
        if (subnet === labSubnet) subnet = (subnet % 254) + 1;
        const serverAddress = `10.77.${subnet}.2`;
        const sock = path.join(f.root, 'server.sock');
        const cleanups: (() => Promise<unknown>)[] = [];
        const cleanup = async () => {
          for (const step of cleanups.splice(0).reverse()) await step().catch(() => undefined);
        };
        try {
          await run('ip', ['netns', 'add', s]);
          cleanups.push(async () => {
            const { stdout } = await run('ip', ['netns', 'pids', s], { check: false });
            for (const pid of stdout.split(/\s+/).filter(Boolean)) {
              try {
                process.kill(Number(pid), 'SIGKILL');
              } catch {
                // gone
              }
            }
            await run('ip', ['netns', 'delete', s], { check: false });
          });
          await run('ip', [
            'link',
            'add',
            'wwas0',
            'netns',
            a.netns,
            'type',
            'veth',
            'peer',
            'name',
            'wwsa0',
            'netns',
            s,
          ]);
          await run('ip', ['-n', a.netns, 'addr', 'add', `10.77.${subnet}.1/24`, 'dev', 'wwas0']);
          await run('ip', ['-n', s, 'addr', 'add', `${serverAddress}/24`, 'dev', 'wwsa0']);
          await run('ip', ['-n', a.netns, 'link', 'set', 'wwas0', 'up']);
          await run('ip', ['-n', s, 'link', 'set', 'wwsa0', 'up']);
          await run('ip', ['-n', s, 'link', 'set', 'lo', 'up']);
          // This process answers the forwarder on a Unix socket and passes on to the server.
          const relay = net.createServer((inbound) => {
            const outbound = net.connect({ host: '127.0.0.1', port: f.port });
            inbound.on('error', () => outbound.destroy());
            outbound.on('error', () => inbound.destroy());
            inbound.on('close', () => outbound.destroy());
            outbound.on('close', () => inbound.destroy());
            inbound.pipe(outbound);
            outbound.pipe(inbound);
          });
          await new Promise<void>((resolve) => relay.listen(sock, resolve));
          cleanups.push(() => new Promise((resolve) => relay.close(resolve)));
          const forwarder = spawn(
            'ip',
            [
              'netns',
              'exec',
              s,
              process.execPath,
              forwardScript,
              serverAddress,
              String(SERVER_PORT),
              sock,
            ],
            { stdio: ['pipe', 'pipe', 'inherit'] },
          );
          cleanups.push(() => {
            forwarder.stdin.end();
            if (forwarder.exitCode === null) forwarder.kill('SIGKILL');
            return Promise.resolve();
          });
          await new Promise<void>((resolve, reject) => {
            forwarder.stdout.on('data', (d: Buffer) => {
              if (d.toString().includes('ready')) resolve();
            });
            forwarder.once('exit', (code) => reject(new Error(`forwarder exited ${code}`)));
          });
          f.agentServerUrls.set('host-a', `http://${serverAddress}:${SERVER_PORT}`);
        } catch (err) {
          await cleanup();
          throw err;
        }
        return cleanup;
      },
    });
    otherFile = (await faults.create('other-b', 'host-b', { filters: UDP_5400 })).file;
    await faults.until('other-b', (s) => s.packetCaptureStatus === 'Running');
    other = faults.stream('b', { gapMs: 50 });
  });

  afterAll(async () => {
    await faults?.close();
  });

  it('Unknown AgentStopped during the cut, a stop asked meanwhile is carried out after it; every datagram once', async () => {
    const { file } = await faults.create('cut-off', 'host-a', { filters: UDP_5300 });
    await faults.until('cut-off', (s) => s.packetCaptureStatus === 'Running');
    const traffic = faults.stream('a');
    await traffic.reach(100);
    const beforeCut = traffic.sent();
    await run('ip', ['-n', cutNs, 'link', 'set', 'wwas0', 'down']);
    // The server misses two pings and drops the connection: the user is told it does not know.
    const away = await faults.until('cut-off', (s) => s.packetCaptureStatus === 'Unknown');
    expect(away.packetCaptureError).toEqual(['AgentStopped']);
    expect(away.agentConnectionState).toBe('Disconnected');
    // Host b's agent is not affected.
    expect(await faults.status('other-b')).toMatchObject({
      packetCaptureStatus: 'Running',
      agentConnectionState: 'Connected',
    });
    // A stop asked while the agent cannot be reached is recorded and waits for it.
    await faults.stop('cut-off');
    const asked = await faults.status('cut-off');
    expect(asked).toMatchObject({
      packetCaptureStatus: 'Unknown',
      stopRequested: 'ManualIntervention',
    });
    await traffic.reach(beforeCut + 150);
    const beforeRestore = traffic.sent();
    await run('ip', ['-n', cutNs, 'link', 'set', 'wwas0', 'up']);
    const s = await faults.until('cut-off', (x) => x.packetCaptureStatus === 'Stopped', 90_000);
    await traffic.stop();
    expect(s.stopReason).toBe('ManualIntervention');
    expect(s.packetCaptureError).toEqual([]);
    const packets = await seqPackets(file);
    const found = streamInFile(packets, traffic, beforeRestore);
    console.info(
      `network cut: ${beforeCut} datagrams sent before the cut, ${beforeRestore} before the link ` +
        `came back, ${found.count} in the file`,
    );
    expect(found.missing).toEqual([]);
    expect(found.duplicates).toEqual([]);
    expect(streamInFile(packets, traffic, found.highest + 1).missing).toEqual([]);
    expect(s.packetsCaptured).toBe(packets.length);
  }, 150_000);

  it("host b's capture ran through the cut and ends normally with every datagram once", async () => {
    const { status, sent, found } = await faults.finishBystander('other-b', other, otherFile);
    expect(status.stopReason).toBe('ManualIntervention');
    expect(found).toMatchObject({ count: sent, missing: [], duplicates: [] });
  });
});
