/**
 * The agent does not capture itself (issue 16): `wirewatch up --interface lo`, the built binary,
 * runs inside a lab namespace, whose `lo` carries nothing but what `up` and this test send
 * there. An unfiltered capture that uploads to the embedded Azurite holds none of the agent's
 * own connections (its channel to the server, its uploads) and stays the size of the traffic the
 * test sent, while another process's connection to the same server is still captured; with
 * `--include-own-traffic` the channel is captured again. The agent's connections are read from
 * the kernel (`ss -tnp`, by process), not from wirewatch, and the files with tshark.
 */
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  launch,
  runCli,
  stopProcess,
  upPrinted,
  type CliProcess,
  type CliRun,
} from './lab/cli-process.js';
import { waitFor } from './lab/control-plane.js';
import { isRoot, run } from './lab/exec.js';
import { createLab, type Lab } from './lab/lab.js';
import { tsharkRead, type TsharkPacket } from './lab/tshark.js';
import { send, serve } from './lab/traffic.js';

/** The server's port inside the namespace (nothing else listens there). */
const SERVER_PORT = 7080;
const ECHO_PORT = 9000;
/** The other process's connection to the server: its source port, in the ephemeral range. */
const PROBE_PORT = 45123;
/** Bytes the test's own TCP flow writes (and reads back) while the quiet capture runs. */
const SENT = 3 * 1024 * 1024;

describe.skipIf(!isRoot)(
  'the agent does not capture itself (wirewatch up in a lab namespace)',
  () => {
    let lab: Lab;
    let root: string;
    let up: CliProcess | undefined;
    let env: Record<string, string | undefined>;
    let vm: string;
    let azuritePort: number;

    const ww = (args: readonly string[]): Promise<CliRun> =>
      runCli(args, env, 120_000, { netns: lab.a.netns });
    const json = async (args: readonly string[]) => {
      const r = await ww([...args, '-o', 'json']);
      expect(r.code, r.stderr).toBe(0);
      return JSON.parse(r.stdout) as Record<string, unknown>;
    };

    beforeAll(async () => {
      lab = await createLab();
      root = await mkdtemp(path.join(tmpdir(), 'ww-own-traffic-'));
      const dataDir = path.join(root, 'data');
      up = launch(
        ['up', '--data-dir', dataDir, '--listen', `127.0.0.1:${SERVER_PORT}`, '--interface', 'lo'],
        { WIREWATCH_ADMIN_TOKEN: undefined },
        { netns: lab.a.netns },
      );
      const banner = await upPrinted(up);
      env = {
        WIREWATCH_SERVER: banner.url,
        WIREWATCH_TOKEN: banner.token,
        WIREWATCH_SUBSCRIPTION: banner.subscriptionId,
        WIREWATCH_PROFILE: undefined,
        WIREWATCH_CA: undefined,
        XDG_CONFIG_HOME: path.join(root, 'config'),
      };
      azuritePort = (
        JSON.parse(await readFile(path.join(dataDir, 'up.json'), 'utf8')) as {
          azuritePort: number;
        }
      ).azuritePort;
      const vms = await waitFor(
        () => ww(['vm', 'list', '-o', 'json']),
        (r) => r.code === 0 && (JSON.parse(r.stdout) as unknown[]).length === 1,
        30_000,
        250,
      );
      vm = (JSON.parse(vms.stdout) as { id: string }[])[0]!.id;
    }, 120_000);

    afterAll(async () => {
      try {
        await stopProcess(up, 'SIGINT');
      } finally {
        await lab?.close();
        if (root) await rm(root, { recursive: true, force: true });
      }
    });

    /**
     * The agent's connections while `during` runs, sampled from the kernel every 100 ms: the
     * TCP connections of the `up` process to the server's port and to Azurite's (the server
     * itself only accepts on its port), as `local port → remote port`.
     */
    async function agentConnections(during: () => Promise<void>): Promise<Set<string>> {
      const seen = new Set<string>();
      let sampling = true;
      const sampler = (async () => {
        while (sampling) {
          const { stdout } = await run('ip', ['netns', 'exec', lab.a.netns, 'ss', '-tnpH'], {
            check: false,
          });
          for (const line of stdout.split('\n')) {
            if (!line.includes(`pid=${up!.child.pid},`)) continue;
            const [, , , local, remote] = line.trim().split(/\s+/);
            const lport = Number(local?.slice(local.lastIndexOf(':') + 1));
            const rport = Number(remote?.slice(remote.lastIndexOf(':') + 1));
            if (rport === SERVER_PORT || rport === azuritePort) seen.add(`${lport}>${rport}`);
          }
          await new Promise((r) => setTimeout(r, 100));
        }
      })();
      try {
        await during();
      } finally {
        sampling = false;
        await sampler;
      }
      return seen;
    }

    /** Packets of the capture on one of these `local port → remote port` connections. */
    function on(packets: readonly TsharkPacket[], connections: Set<string>): TsharkPacket[] {
      return packets.filter(
        (p) =>
          p.proto === 'tcp' &&
          (connections.has(`${p.sport}>${p.dport}`) || connections.has(`${p.dport}>${p.sport}`)),
      );
    }

    /** Creates an unfiltered capture into the `local` storage account and waits until it runs. */
    async function create(name: string, seconds: number, extra: readonly string[] = []) {
      return json([
        'capture',
        'create',
        '-n',
        name,
        '--vm',
        vm,
        '--storage-account',
        'local',
        '--time-limit',
        String(seconds),
        ...extra,
        '--wait',
      ]);
    }

    /** Waits for the capture to end and its upload to complete; downloads it; reads it. */
    async function finished(name: string) {
      const ended = await ww(['capture', 'wait', '-l', 'local', '-n', name]);
      expect(ended.code, ended.stderr).toBe(0);
      const status = await waitFor(
        () => json(['capture', 'show-status', '-l', 'local', '-n', name]),
        (s) => s['uploadState'] !== 'Pending',
        30_000,
        250,
      );
      expect(status).toMatchObject({ packetCaptureStatus: 'Stopped', uploadState: 'Completed' });
      const file = path.join(root, `${name}.cap`);
      const got = await ww(['capture', 'download', '-l', 'local', '-n', name, '--file', file]);
      expect(got.code, got.stderr).toBe(0);
      return { status, file, size: (await stat(file)).size, packets: await tsharkRead(file) };
    }

    it('an unfiltered capture with blob upload holds none of the agent’s connections, and stays the size of the traffic sent', async () => {
      const created = await create('quiet', 5);
      expect(created['properties']).toMatchObject({ excludesOwnTraffic: true });
      const echo = await serve(lab, lab.a, [{ proto: 'tcp', host: '127.0.0.1', port: ECHO_PORT }]);
      let agent: Set<string>;
      try {
        agent = await agentConnections(async () => {
          const [flow] = await send(lab, lab.a, [
            {
              proto: 'tcp',
              src: '127.0.0.1',
              sport: 0,
              dst: '127.0.0.1',
              dport: ECHO_PORT,
              bytes: SENT,
            },
          ]);
          expect(flow!.echoed).toBe(SENT);
          // Another process's connection to the same server: a request it refuses.
          await send(lab, lab.a, [
            {
              proto: 'tcp',
              src: '127.0.0.1',
              sport: PROBE_PORT,
              dst: '127.0.0.1',
              dport: SERVER_PORT,
              bytes: 300,
            },
          ]);
          await ww(['capture', 'wait', '-l', 'local', '-n', 'quiet']);
        });
      } finally {
        await echo.close();
      }
      const { status, size, packets } = await finished('quiet');
      expect(status['excludesOwnTraffic']).toBe(true);

      // The agent's channel (the `up` process's connections to its own server port) is not in
      // the capture, though the agent reported progress on it all along.
      const channel = new Set([...agent].filter((c) => c.endsWith(`>${SERVER_PORT}`)));
      expect(channel.size).toBeGreaterThan(0);
      expect(on(packets, channel)).toEqual([]);
      // Nor are its uploads: the blob was written while the capture ran, yet no byte to or from
      // Azurite is in it. (The `up` process's server also keeps an idle connection to Azurite,
      // which is not the agent's: its keep-alive probes carry no payload.)
      expect(status['blobs']).toEqual([expect.objectContaining({ size })]);
      const storage = packets.filter((p) => p.sport === azuritePort || p.dport === azuritePort);
      expect(storage.filter((p) => (p.tcpLength ?? 0) > 0)).toEqual([]);

      // Another process's connection to the same server is captured.
      const probe = packets.filter(
        (p) =>
          p.proto === 'tcp' &&
          ((p.sport === PROBE_PORT && p.dport === SERVER_PORT) ||
            (p.sport === SERVER_PORT && p.dport === PROBE_PORT)),
      );
      expect(probe.filter((p) => p.syn).length).toBeGreaterThanOrEqual(2);
      expect(probe.reduce((n, p) => n + (p.tcpLength ?? 0), 0)).toBeGreaterThanOrEqual(300);

      // The test's flow is there; everything else (the CLI's requests, the probe) is small.
      // Before the fix the file held every uploaded block again, and again (issue 16: 6 MB sent
      // became an 89 MB capture).
      const echoed = packets.filter((p) => p.sport === ECHO_PORT || p.dport === ECHO_PORT);
      // (Not necessarily every byte: a capture holds what is stamped within its time window.)
      expect(echoed.reduce((n, p) => n + (p.tcpLength ?? 0), 0)).toBeGreaterThan(SENT / 2);
      const echoedFrames = echoed.reduce((n, p) => n + p.frameLength, 0);
      const others = packets.reduce((n, p) => n + p.frameLength, 0) - echoedFrames;
      expect(others).toBeLessThan(256 * 1024);
      expect(size).toBeLessThan(echoedFrames + 512 * 1024);
    }, 120_000);

    it('--include-own-traffic captures the agent’s channel and uploads again', async () => {
      const created = await create('loud', 4, ['--include-own-traffic']);
      expect(created['properties']).toMatchObject({
        includeOwnTraffic: true,
        excludesOwnTraffic: false,
      });
      const agent = await agentConnections(async () => {
        await ww(['capture', 'wait', '-l', 'local', '-n', 'loud']);
      });
      const { status, packets } = await finished('loud');
      expect(status['excludesOwnTraffic']).toBe(false);
      const channel = new Set([...agent].filter((c) => c.endsWith(`>${SERVER_PORT}`)));
      expect(channel.size).toBeGreaterThan(0);
      // The agent reports progress over its channel at least every 2 s: those frames are here.
      expect(on(packets, channel).filter((p) => (p.tcpLength ?? 0) > 0).length).toBeGreaterThan(0);
    }, 120_000);
  },
);
