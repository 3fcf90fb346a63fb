/**
 * `wirewatch up` as a user runs it: the built binary from a clean data dir, a capture on this
 * host into the `local` storage account, its download read by tshark, Ctrl-C, and a second run
 * that resumes. Captures run on `lo` only (never on this machine's own network interfaces), and
 * every packet goes to 127.0.0.1.
 */
import { createSocket } from 'node:dgram';
import { mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  freePort,
  launch,
  stopProcess,
  upPrinted as printed,
  type CliProcess,
  type UpPrinted as Printed,
} from './lab/cli-process.js';
import { API, apiClient, waitFor, type ApiClient } from './lab/control-plane.js';
import { isRoot, run } from './lab/exec.js';
import { tsharkRead } from './lab/tshark.js';

const launched: CliProcess[] = [];

function up(args: readonly string[]): CliProcess {
  const proc = launch(['up', ...args], { WIREWATCH_ADMIN_TOKEN: undefined });
  launched.push(proc);
  return proc;
}

/** Every descendant of a process, from /proc. */
async function descendants(pid: number): Promise<number[]> {
  const parents = new Map<number, number>();
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = await readFile(`/proc/${entry}/stat`, 'utf8');
      // pid (comm) state ppid …; comm may hold spaces and parentheses.
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      parents.set(Number(entry), ppid);
    } catch {
      // gone meanwhile
    }
  }
  const found: number[] = [];
  const walk = (p: number) => {
    for (const [child, parent] of parents) {
      if (parent === p) {
        found.push(child);
        walk(child);
      }
    }
  };
  walk(pid);
  return found;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** `count` UDP datagrams from 127.0.0.1 to 127.0.0.1:port. */
async function sendUdp(port: number, count: number): Promise<void> {
  const socket = createSocket('udp4');
  try {
    for (let i = 0; i < count; i++) {
      await new Promise<void>((resolve, reject) =>
        socket.send(Buffer.alloc(64, i), port, '127.0.0.1', (err) =>
          err ? reject(err) : resolve(),
        ),
      );
    }
  } finally {
    socket.close();
  }
}

describe.skipIf(!isRoot)('wirewatch up (root)', () => {
  let root: string;
  let dataDir: string;
  let listen: string;
  let first: Printed;
  let api: ApiClient;
  let firstProc: CliProcess;
  let watcher: string;
  let vmName: string;
  const udpPort = 20000 + Math.floor(Math.random() * 20000);
  const sent = 25;
  /** Descendants of the first `up` while its capture ran (Azurite, tcpdump, setpriv). */
  let children: number[] = [];

  beforeAll(async () => {
    root = await mkdtemp(path.join(tmpdir(), 'ww-up-'));
    dataDir = path.join(root, 'data');
    listen = `127.0.0.1:${await freePort()}`;
  });

  afterAll(async () => {
    for (const proc of launched) {
      try {
        process.kill(-proc.child.pid!, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    if (root) await rm(root, { recursive: true, force: true });
  });

  async function status(name: string) {
    const r = await api.call(
      'POST',
      `${watcher}/packetCaptures/${name}/queryStatus?api-version=${API}`,
    );
    expect(r.status).toBe(200);
    return r.body as {
      packetCaptureStatus: string;
      packetsCaptured?: number;
      uploadState?: string;
      stopReason?: string;
    };
  }

  async function running(name: string) {
    await waitFor(
      () => api.call('GET', `${watcher}/packetCaptures/${name}?api-version=${API}`),
      (r) => r.body?.properties?.provisioningState !== 'Updating',
    ).then((r) => expect(r.body.properties.provisioningState).toBe('Succeeded'));
  }

  async function stopAndUpload(name: string) {
    const stop = await api.call(
      'POST',
      `${watcher}/packetCaptures/${name}/stop?api-version=${API}`,
    );
    expect([200, 202]).toContain(stop.status);
    return waitFor(
      () => status(name),
      (s) => s.packetCaptureStatus !== 'Running' && s.uploadState === 'Completed',
      20_000,
      250,
    );
  }

  /** A capture on this host of UDP to udpPort, into storage account local and a local file. */
  async function createCapture(name: string, filePath: string) {
    const put = await api.call('PUT', `${watcher}/packetCaptures/${name}?api-version=${API}`, {
      body: {
        properties: {
          target: `/subscriptions/${first.subscriptionId}/resourceGroups/default/providers/Microsoft.Compute/virtualMachines/${vmName}`,
          timeLimitInSeconds: 120,
          storageLocation: {
            storageId: `/subscriptions/${first.subscriptionId}/resourceGroups/default/providers/Microsoft.Storage/storageAccounts/local`,
            filePath,
          },
          filters: [{ protocol: 'UDP', localPort: String(udpPort) }],
        },
      },
    });
    expect(put.status, put.text).toBe(201);
  }

  /** GET …/content into a file. */
  async function download(name: string, file: string) {
    const content = await fetch(
      `${first.url}${watcher}/packetCaptures/${name}/content?api-version=${API}`,
      { headers: { authorization: `Bearer ${first.token}` } },
    );
    expect(content.status).toBe(200);
    await writeFile(file, Buffer.from(await content.arrayBuffer()));
  }

  it('starts from a clean data dir and prints the URL, the token, the subscription and three commands', async () => {
    firstProc = up(['--data-dir', dataDir, '--listen', listen, '--interface', 'lo']);
    first = await printed(firstProc);
    expect(first.url).toBe(`http://${listen}`);
    expect((await readFile(path.join(dataDir, 'server', 'admin.token'), 'utf8')).trim()).toBe(
      first.token,
    );
    api = apiClient(first.url, first.token);
    watcher = `/subscriptions/${first.subscriptionId}/resourceGroups/default/providers/Microsoft.Network/networkWatchers/local`;
    expect(first.create).toContain(`${watcher}/packetCaptures/demo?api-version=`);
    expect(first.download).toContain('/packetCaptures/demo/content?api-version=');

    const subs = await api.call('GET', '/api/v1/subscriptions');
    expect(subs.body.value).toEqual([
      expect.objectContaining({ subscriptionId: first.subscriptionId, displayName: 'default' }),
    ]);
    const nw = await api.call('GET', `${watcher}?api-version=${API}`);
    expect(nw.status).toBe(200);
    expect(nw.body.location).toBe('local');
    const accounts = await api.call(
      'GET',
      `/api/v1/subscriptions/${first.subscriptionId}/storageAccounts`,
    );
    expect(accounts.body.value).toEqual([
      expect.objectContaining({ name: 'local', resourceGroup: 'default' }),
    ]);
    const agents = await waitFor(
      () => api.call('GET', `/api/v1/subscriptions/${first.subscriptionId}/agents`),
      (r) => r.body?.value?.[0]?.connectionState === 'Connected',
    );
    expect(agents.body.value).toHaveLength(1);
    vmName = agents.body.value[0].name as string;
    expect(vmName).toMatch(/^[A-Za-z0-9][-A-Za-z0-9._]*$/);
    expect(agents.body.value[0]).toMatchObject({ resourceGroup: 'default', location: 'local' });
    expect((await stat(path.join(dataDir, 'up.json'))).isFile()).toBe(true);
  });

  it('captures on this host into the local storage account, and the download is what tshark reads', async () => {
    const filePath = path.join(dataDir, 'captures', 'udp.cap');
    await createCapture('udp', filePath);
    await running('udp');
    await sendUdp(udpPort, sent);
    await waitFor(
      () => status('udp'),
      (s) => (s.packetsCaptured ?? 0) >= sent,
      15_000,
      250,
    );
    // tcpdump and Azurite run under `up` while the capture runs: all must be gone after Ctrl-C.
    children = await descendants(firstProc.child.pid!);
    const done = await stopAndUpload('udp');
    expect(done.stopReason).toBe('ManualIntervention');

    const downloaded = path.join(root, 'udp-download.cap');
    await download('udp', downloaded);
    const packets = await tsharkRead(downloaded);
    expect(packets).toHaveLength(sent);
    for (const p of packets)
      expect(p).toMatchObject({ proto: 'udp', dport: udpPort, dst: '127.0.0.1' });
    // The local copy holds the same packets.
    expect(await tsharkRead(filePath)).toHaveLength(sent);
  });

  it('stops everything on Ctrl-C and exits 0, leaving no process behind', async () => {
    children = [...new Set([...children, ...(await descendants(firstProc.child.pid!))])];
    expect(children.length).toBeGreaterThan(0);
    expect(await stopProcess(firstProc, 'SIGINT')).toBe(0);
    expect(firstProc.output()).toContain('stopped');
    await waitFor(
      () => Promise.resolve(children.filter(alive)),
      (left) => left.length === 0,
      5000,
    );
  });

  it('resumes on a second run: same subscription and token, the earlier capture, the agent back, and the printed commands work', async () => {
    const second = up(['--data-dir', dataDir, '--listen', listen, '--interface', 'lo']);
    const again = await printed(second);
    expect(second.output()).toContain('(resumed)');
    expect(again).toMatchObject({ subscriptionId: first.subscriptionId, token: first.token });
    expect((await api.call('GET', '/api/v1/subscriptions')).body.value).toHaveLength(1);
    const list = await api.call('GET', `${watcher}/packetCaptures?api-version=${API}`);
    expect(list.body.value.map((c: { name: string }) => c.name)).toEqual(['udp']);
    expect((await status('udp')).uploadState).toBe('Completed');
    const agents = await waitFor(
      () => api.call('GET', `/api/v1/subscriptions/${first.subscriptionId}/agents`),
      (r) => r.body?.value?.[0]?.connectionState === 'Connected',
    );
    expect(agents.body.value).toHaveLength(1);

    // The three printed commands, pasted into a shell as they are.
    const shell = (command: string) => run('bash', ['-c', `cd ${root} && ${command}`]);
    const created = JSON.parse((await shell(again.create)).stdout) as { name: string };
    expect(created.name).toBe('demo');
    await running('demo');
    await sendUdp(udpPort, 5);
    expect(JSON.parse((await shell(again.status)).stdout)).toMatchObject({
      packetCaptureStatus: 'Running',
    });
    await stopAndUpload('demo');
    await shell(again.download);
    const demo = await tsharkRead(path.join(root, 'capture.cap'));
    expect(demo.filter((p) => p.dport === udpPort).length).toBeGreaterThanOrEqual(5);

    // Ctrl-C while a capture runs: the agent stops it and finishes its upload before the rest
    // stops, although the terminal's SIGINT reached Azurite as well.
    await createCapture('late', path.join(dataDir, 'captures', 'late.cap'));
    await running('late');
    await sendUdp(udpPort, sent);
    await waitFor(
      () => status('late'),
      (s) => (s.packetsCaptured ?? 0) >= sent,
      15_000,
      250,
    );
    expect(await stopProcess(second, 'SIGINT')).toBe(0);
    expect(second.output()).not.toContain('uploads not finished');
  });

  it('keeps a capture that was running at Ctrl-C: stopped, uploaded, downloadable', async () => {
    const third = up(['--data-dir', dataDir, '--listen', listen, '--interface', 'lo']);
    expect((await printed(third)).subscriptionId).toBe(first.subscriptionId);
    const late = await waitFor(
      () => status('late'),
      (s) => s.uploadState === 'Completed',
      15_000,
      250,
    );
    expect(late).toMatchObject({
      packetCaptureStatus: 'Stopped',
      stopReason: 'ManualIntervention',
    });
    const file = path.join(root, 'late-download.cap');
    await download('late', file);
    expect(await tsharkRead(file)).toHaveLength(sent);
    expect(await stopProcess(third, 'SIGINT')).toBe(0);
  });
});
