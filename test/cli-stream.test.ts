/**
 * `wirewatch capture stream` end to end on the lab: a real server on loopback, the real agent
 * (in-process, its interface in a lab namespace), the built binary piped into tcpdump as a
 * user would (`wirewatch capture stream … | tcpdump -r -`), and tshark as the judge: a fast
 * reader gets every packet the stored capture holds; a slow one gets fewer, stderr says how
 * many it missed, and the stored capture still holds every packet sent.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { createAgent, type Agent } from '../src/agent/agent.js';
import { createJsonLineLog } from '../src/agent/agent-log.js';
import { ringFileName } from '../src/capture/ring-buffer.js';
import { cli } from './lab/cli-process.js';
import {
  API,
  capturePath,
  createTenant,
  startTestServer,
  vmId,
  waitFor,
  type Tenant,
  type TestServer,
} from './lab/control-plane.js';
import { isRoot, run } from './lab/exec.js';
import { createLab, type Lab } from './lab/lab.js';
import { send, serve, type Flow, type Server } from './lab/traffic.js';
import { tsharkRead, type TsharkPacket } from './lab/tshark.js';

if (!isRoot) {
  console.warn('cli-stream: SKIPPED — lab tests need root (network namespaces, tcpdump)');
}

const NW = 'NetworkWatcher_westeurope';
const UDP_5300 = [{ protocol: 'UDP', remotePort: '5300' }];

interface Finished {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs a program to its end (SIGKILL after `timeoutMs`). */
function runProgram(
  file: string,
  args: readonly string[],
  env: Record<string, string>,
  timeoutMs = 60_000,
): Promise<Finished> {
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, ...env },
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.once('error', reject);
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

describe.skipIf(!isRoot)('wirewatch capture stream on the lab (root)', () => {
  let lab: Lab;
  let echo: Server;
  let root: string;
  let server: TestServer;
  let tenant: Tenant;
  let agent: Agent;
  const agentLog: string[] = [];
  /** The CLI's environment: an isolated config dir with a profile logged in as Reader. */
  let env: Record<string, string>;
  let nextPort = 41000;
  const running: Promise<Finished>[] = [];

  beforeAll(async () => {
    root = await mkdtemp(path.join(tmpdir(), 'wirewatch-cli-stream-'));
    lab = await createLab();
    echo = await serve(lab, lab.b, [{ proto: 'udp', host: lab.b.ipv4, port: 5300 }]);
    server = await startTestServer();
    tenant = await createTenant(server, 'stream');
    agent = await createAgent({
      serverUrl: server.url,
      enrollToken: tenant.enrollToken,
      subscriptionId: tenant.subscriptionId,
      resourceGroup: 'lab',
      name: 'lab-a',
      location: 'westeurope',
      interface: lab.a.iface,
      netns: lab.a.netns,
      dataDir: path.join(root, 'agent'),
      captureRoot: path.join(root, 'captures'),
      backoffMinMs: 50,
      backoffMaxMs: 500,
      progressIntervalMs: 500,
      log: createJsonLineLog((line) => agentLog.push(line), { minLevel: 'debug' }),
    });
    await waitFor(
      () => Promise.resolve(agent.connected),
      (c) => c,
    );
    env = { XDG_CONFIG_HOME: path.join(root, 'config') };
    const login = await runProgram(
      process.execPath,
      [cli, 'login', '--server', server.url, '--token', tenant.reader],
      env,
    );
    expect(login.code, login.stderr).toBe(0);
  });

  afterAll(async () => {
    try {
      await Promise.allSettled(running);
      await agent?.close();
    } finally {
      try {
        await server?.close();
        await echo?.close();
      } finally {
        await lab?.close();
        await rm(root, { recursive: true, force: true });
      }
    }
  });

  const url = (name: string, suffix = '') =>
    `${capturePath(tenant.subscriptionId, 'NetworkWatcherRG', NW, name)}${suffix}?api-version=${API}`;

  async function status(name: string): Promise<{ packetCaptureStatus: string }> {
    const r = await server.call('POST', url(name, '/queryStatus'), { token: tenant.reader });
    expect(r.status, r.text).toBe(200);
    return r.body;
  }

  /** Creates a capture on lab-a and waits until it runs; returns its file (or ring stem). */
  async function startCapture(name: string, properties: Record<string, unknown> = {}) {
    const file = path.join(root, 'captures', `${name}.cap`);
    const continuous = properties['continuousCapture'] === true;
    const r = await server.call('PUT', url(name), {
      token: tenant.contributor,
      body: {
        properties: {
          target: vmId(tenant.subscriptionId, 'lab', 'lab-a'),
          storageLocation: continuous ? { localPath: file } : { filePath: file },
          filters: UDP_5300,
          ...properties,
        },
      },
    });
    expect(r.status, r.text).toBe(201);
    await waitFor(
      () => status(name),
      (s) => s.packetCaptureStatus === 'Running',
    );
    return file;
  }

  async function stopCapture(name: string): Promise<void> {
    const r = await server.call('POST', url(name, '/stop'), { token: tenant.contributor });
    expect([200, 202]).toContain(r.status);
    await waitFor(
      () => status(name),
      (s) => s.packetCaptureStatus === 'Stopped',
      30_000,
    );
  }

  /**
   * `sh -c '(wirewatch capture stream …; echo $? >CODE) | READER'`: the stream piped into a
   * reader, as a user types it; the CLI's stderr and exit code are kept apart.
   */
  function streamInto(name: string, reader: string) {
    const dir = path.join(root, name);
    const files = {
      err: `${dir}-stream.err`,
      code: `${dir}-stream.code`,
      out: `${dir}-streamed.pcap`,
    };
    const script = `("$WW" "$CLI" capture stream -l westeurope -n "$NAME" 2>"$ERR"; echo $? >"$CODE") | ${reader}`;
    const done = runProgram(
      'sh',
      ['-c', script],
      {
        ...env,
        WW: process.execPath,
        CLI: cli,
        NAME: name,
        ERR: files.err,
        CODE: files.code,
        OUT: files.out,
      },
      120_000,
    );
    running.push(done);
    return {
      ...files,
      done,
      stderr: () => readFile(files.err, 'utf8').catch(() => ''),
      exitCode: async () => Number((await readFile(files.code, 'utf8')).trim()),
    };
  }

  /** Waits until the agent streams the session (its log says so). */
  async function streaming(count: number): Promise<void> {
    await waitFor(
      () => Promise.resolve(agentLog.filter((l) => l.includes('"live stream started"')).length),
      (n) => n >= count,
    );
  }
  let streamsStarted = 0;

  async function udp(count: number, size: number): Promise<void> {
    const flow: Flow = {
      proto: 'udp',
      src: lab.a.ipv4,
      sport: nextPort++,
      dst: lab.b.ipv4,
      dport: 5300,
      count,
      size,
    };
    const [result] = await send(lab, lab.a, [flow]);
    expect(result!.echoed).toBe(count);
  }

  const key = (p: TsharkPacket) => `${p.src}>${p.dst} ${p.sport}>${p.dport} ${p.frameLength}`;

  function summary(stderr: string): { packets: number; dropped: number } {
    const m = /stream ended: (\d+) packets, (\d+) dropped for this viewer/.exec(stderr);
    if (!m) throw new Error(`no summary on stderr: ${stderr}`);
    return { packets: Number(m[1]), dropped: Number(m[2]) };
  }

  it('a fast reader (tcpdump -r -) gets every packet of the stored capture; the stream ends with the capture', async () => {
    const file = await startCapture('fast');
    const s = streamInto('fast', 'tcpdump -n -r - -w "$OUT"');
    await streaming(++streamsStarted);
    await udp(300, 200);
    await stopCapture('fast');
    const done = await s.done;
    expect(done.code, done.stderr).toBe(0);
    expect(await s.exitCode()).toBe(0);
    const stderr = await s.stderr();
    expect(summary(stderr)).toEqual({ packets: 600, dropped: 0 });
    // Quiet in a pipe: nothing dropped, so no progress line says so.
    expect(stderr).not.toMatch(/[1-9]\d* dropped/);

    const stored = await tsharkRead(file);
    const streamed = await tsharkRead(s.out);
    expect(stored).toHaveLength(600);
    expect(streamed.map(key)).toEqual(stored.map(key));
  });

  it('a quiet capture (40 packets over 2 s): the viewer gets every packet while the capture still runs', async () => {
    // 40 small packets are ~3 KiB, less than tcpdump's 4 KiB output buffer: unflushed, they
    // would reach the file (and the viewer) only when the capture ends.
    await startCapture('quiet');
    const s = streamInto('quiet', 'tcpdump -U -n -r - -w "$OUT"');
    await streaming(++streamsStarted);
    for (let i = 0; i < 20; i++) {
      await udp(1, 20);
      await new Promise((r) => setTimeout(r, 100));
    }
    const seen = await waitFor(
      () => tsharkRead(s.out).catch(() => [] as TsharkPacket[]),
      (packets) => packets.length >= 40,
    );
    // Every packet arrived before the capture ended: it is still running now.
    expect((await status('quiet')).packetCaptureStatus).toBe('Running');
    expect(seen).toHaveLength(40);
    await stopCapture('quiet');
    const done = await s.done;
    expect(done.code, done.stderr).toBe(0);
    expect(summary(await s.stderr())).toEqual({ packets: 40, dropped: 0 });
  });

  it('a slow reader: dropped for it and said on stderr; the stored capture keeps every packet', async () => {
    const file = await startCapture('slow');
    // The reader starts reading only after 10 s: the CLI's stdout fills, it stops reading the
    // socket, and the server drops for it.
    const s = streamInto('slow', '{ sleep 10; tcpdump -n -r - -w "$OUT"; }');
    await streaming(++streamsStarted);
    // 20,000 packets of 1.4 KB, far more than the buffers between the server and the reader
    // hold, in bursts that tcpdump's kernel buffer takes whole.
    for (let burst = 0; burst < 10; burst++) await udp(1000, 1400);
    await stopCapture('slow');
    const done = await s.done;
    expect(done.code, done.stderr).toBe(0);
    expect(await s.exitCode()).toBe(0);
    const { packets, dropped } = summary(await s.stderr());
    expect(dropped).toBeGreaterThan(0);

    // The capture was never slowed: every packet sent is stored.
    const stored = await tsharkRead(file);
    expect(stored).toHaveLength(20_000);
    // Every packet is accounted for: received or counted as dropped.
    expect(packets + dropped).toBe(20_000);
    const streamed = await tsharkRead(s.out);
    expect(streamed).toHaveLength(packets);
    // What the reader got is the stored packets, in order, with gaps.
    const storedKeys = stored.map(key);
    let at = 0;
    for (const k of streamed.map(key)) {
      at = storedKeys.indexOf(k, at);
      expect(at).toBeGreaterThanOrEqual(0);
      at++;
    }
  });

  it('a continuous capture: the stream follows the ring files in order', async () => {
    const stem = await startCapture('ring', {
      continuousCapture: true,
      captureSettings: { fileCount: 100, fileSizeInBytes: 20_000, sessionTimeLimitInSeconds: 300 },
    });
    const s = streamInto('ring', 'tcpdump -n -r - -w "$OUT"');
    await streaming(++streamsStarted);
    await udp(200, 300);
    await stopCapture('ring');
    const done = await s.done;
    expect(done.code, done.stderr).toBe(0);
    expect(summary(await s.stderr())).toEqual({ packets: 400, dropped: 0 });
    const stored: TsharkPacket[] = [];
    for (let n = 1; ; n++) {
      const part = await tsharkRead(ringFileName(stem, n)).catch(() => undefined);
      if (part === undefined) break;
      stored.push(...part);
    }
    expect(stored).toHaveLength(400);
    expect((await tsharkRead(s.out)).map(key)).toEqual(stored.map(key));
  });

  it('a stopped capture: exit 1 with CaptureNotRunning; another tenant: 404', async () => {
    const stopped = await runProgram(
      'sh',
      ['-c', '"$WW" "$CLI" capture stream -l westeurope fast | cat >/dev/null'],
      { ...env, WW: process.execPath, CLI: cli },
    );
    // The shell's status is cat's; the CLI's line is on stderr.
    expect(stopped.stderr).toMatch(/^wirewatch: CaptureNotRunning: .*fast.*Stopped/m);
    const direct = await runProgram(
      process.execPath,
      [cli, 'capture', 'stream', '-l', 'westeurope', '-n', 'fast'],
      env,
    );
    expect(direct.code).toBe(1);
    expect(direct.stderr.trim()).toMatch(/^wirewatch: CaptureNotRunning: /);
    expect(direct.stderr.trim().split('\n')).toHaveLength(1);

    // Another tenant's token: the subscription reads as if it did not exist.
    const other = await createTenant(server, 'other');
    const name = 'live-for-tenancy';
    await startCapture(name);
    try {
      const foreign = await runProgram(
        process.execPath,
        [
          cli,
          'capture',
          'stream',
          '-l',
          'westeurope',
          '-n',
          name,
          '--subscription',
          tenant.subscriptionId,
        ],
        { ...env, WIREWATCH_TOKEN: other.reader },
      );
      expect(foreign.code).toBe(1);
      expect(foreign.stderr).toMatch(/^wirewatch: SubscriptionNotFound: /);
      // The stream endpoint itself refuses before the upgrade, with Azure's body.
      const wsUrl = `${server.url.replace(/^http/, 'ws')}${url(name, '/stream')}`;
      const refused = await new Promise<{ status: number; body: string }>((resolve, reject) => {
        const ws = new WebSocket(wsUrl, { headers: { authorization: `Bearer ${other.reader}` } });
        ws.on('unexpected-response', (_req, res) => {
          let body = '';
          res.on('data', (d: Buffer) => (body += d.toString()));
          res.on('end', () => {
            ws.terminate();
            resolve({ status: res.statusCode ?? 0, body });
          });
        });
        ws.on('open', () => reject(new Error('another tenant opened the stream')));
        ws.on('error', () => undefined);
      });
      expect(refused.status).toBe(404);
      expect(JSON.parse(refused.body)).toMatchObject({ error: { code: 'SubscriptionNotFound' } });
      // A plain GET is told to upgrade.
      const plain = await server.call('GET', url(name, '/stream'), { token: tenant.reader });
      expect(plain.status).toBe(400);
      expect(plain.body).toMatchObject({ error: { code: 'InvalidRequestContent' } });
    } finally {
      await stopCapture(name);
    }
  });

  it('Ctrl-C ends the stream early: exit 0, a summary, and a file of whole packets', async () => {
    await startCapture('interrupted');
    const out = path.join(root, 'interrupted-streamed.pcap');
    const done = runProgram(
      'sh',
      ['-c', 'exec "$WW" "$CLI" capture stream -l westeurope -n interrupted >"$OUT"'],
      { ...env, WW: process.execPath, CLI: cli, OUT: out },
    );
    running.push(done);
    await streaming(++streamsStarted);
    await udp(300, 200);
    // What tcpdump still buffers reaches the file in 4 KiB blocks: wait for the first ones.
    await waitFor(
      () => readFile(out).then((b) => b.length),
      (n) => n > 4096,
    );
    const pid = await waitFor(
      () => run('pgrep', ['-f', 'capture stream -l westeurope -n interrupted'], { check: false }),
      (r) => r.stdout.trim() !== '',
    );
    process.kill(Number(pid.stdout.trim().split('\n')[0]), 'SIGINT');
    const finished = await done;
    expect(finished.code, finished.stderr).toBe(0);
    const m = /stream stopped: (\d+) packets, 0 dropped for this viewer/.exec(finished.stderr);
    expect(m, finished.stderr).not.toBeNull();
    const packets = await tsharkRead(out);
    expect(packets.length).toBe(Number(m![1]));
    expect(packets.length).toBeGreaterThan(0);
    await stopCapture('interrupted');
  });

  it('the reader exits early (| head -c): exit 0, the summary last, and the agent stops streaming', async () => {
    await startCapture('early');
    const s = streamInto('early', 'head -c 1000 >/dev/null');
    await streaming(++streamsStarted);
    await udp(200, 200);
    await s.done;
    expect(await s.exitCode()).toBe(0);
    expect(await s.stderr()).toMatch(
      /^stream closed by the reader: \d+ packets, \d+ dropped for this viewer\n$/,
    );
    // The server told the agent to stop streaming for the viewer that went away.
    await waitFor(
      () => Promise.resolve(agentLog.filter((l) => l.includes('"live stream ended"')).length),
      (n) => n >= streamsStarted,
    );
    await stopCapture('early');
  });
});
