/**
 * One file for a whole scale-set capture (`GET …/packetCaptures/{name}/content`) and its merged
 * live stream (`wirewatch capture stream`), from a real server on loopback. The instances are
 * synthetic agents (test/lab/synthetic-agent.ts) enrolled as instances of scale sets, each
 * "capturing" a pcap file made here with packets that say which instance and which packet they
 * are; the agents serve it through the channel as the real agent does, or upload it to a real
 * Azurite through the capture's SAS. tshark is the judge: `frame.interface_name` per packet,
 * time order, every packet of every selected instance and none of the others.
 */
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startAzurite, type Azurite } from '../../src/blob/azurite.js';
import { encodeFileHeader } from '../../src/pcap/format.js';
import type { TimestampPrecision } from '../../src/pcap/types.js';
import { encodeRecord } from '../../src/pcap/writer.js';
import { cli } from '../lab/cli-process.js';
import {
  API,
  capturePath,
  createTenant,
  registerStorageAccount,
  startTestServer,
  instanceAgentOf,
  scaleSetId,
  waitFor,
  type Tenant,
  type TestServer,
} from '../lab/control-plane.js';
import { run } from '../lab/exec.js';
import type { SyntheticAgent } from '../lab/synthetic-agent.js';
import { tsharkFieldLines } from '../lab/tshark.js';

const NW = 'NetworkWatcher_westeurope';
const NW_RG = 'NetworkWatcherRG';
const BASE_SEC = 1_700_000_000;

interface InstanceFile {
  readonly linkType?: number;
  readonly precision?: TimestampPrecision;
  readonly snaplen?: number;
  readonly packets: number;
  readonly size?: number;
}

/**
 * A pcap file of instance `host`: packet k at BASE_SEC + k seconds plus `offsetUs`, its data
 * "host#k" padded to `size` bytes, so every instance's packets interleave with the others'.
 */
function instanceFile(host: string, offsetUs: number, spec: InstanceFile): Buffer {
  const precision = spec.precision ?? 'micro';
  const header = encodeFileHeader({
    byteOrder: 'LE',
    precision,
    versionMajor: 2,
    versionMinor: 4,
    snaplen: spec.snaplen ?? 65535,
    linkType: spec.linkType ?? 1,
  });
  const records = Array.from({ length: spec.packets }, (_, k) =>
    encodeRecord(
      {
        tsSec: BASE_SEC + k,
        tsFrac: precision === 'nano' ? offsetUs * 1000 : offsetUs,
        data: Buffer.from(`${host}#${k}`.padEnd(spec.size ?? 60, '.')),
      },
      { byteOrder: 'LE' },
    ),
  );
  return Buffer.concat([header, ...records]);
}

/** Runs `sh -c script` (its arguments `$1`…) with the CLI's environment added. */
const shell = (script: string, args: readonly string[], env: Record<string, string>) =>
  run('sh', ['-c', script, 'sh', ...args], { env, check: false });

describe('one file for a scale-set capture', () => {
  let dir: string;
  let t: TestServer;
  let tenant: Tenant;
  let azurite: Azurite;
  const agents: SyntheticAgent[] = [];
  /** Each instance's file, by VM name. */
  const files = new Map<string, Buffer>();
  let cliEnv: Record<string, string>;

  const url = (name: string, suffix = '') =>
    `${capturePath(tenant.subscriptionId, NW_RG, NW, name)}${suffix}?api-version=${API}`;
  const storageId = () =>
    `/subscriptions/${tenant.subscriptionId}/resourceGroups/lab/providers/Microsoft.Storage/storageAccounts/logs`;

  /** Enrolls and connects instance `id` of `ss`, capturing `file` (none: it fails to start). */
  async function instance(ss: string, id: string, spec?: InstanceFile): Promise<SyntheticAgent> {
    const host = `${ss}_${id}`;
    const file = spec === undefined ? undefined : instanceFile(host, Number(id) * 1000, spec);
    if (file) files.set(host, file);
    const agent = instanceAgentOf(t, tenant, ss, id, {
      resourceGroup: 'lab',
      progressIntervalMs: 300,
      ...(file === undefined
        ? { failStarts: { code: 'CaptureFailed', message: 'no tcpdump here' } }
        : { captureFile: file }),
    });
    agents.push(agent);
    await agent.connect();
    return agent;
  }

  async function status(name: string) {
    const r = await t.call('POST', url(name, '/queryStatus'), { token: tenant.reader });
    expect(r.status, r.text).toBe(200);
    return r.body as {
      packetCaptureStatus: string;
      instances?: { instanceId: string; blobs: unknown[] }[];
    };
  }

  async function create(name: string, ss: string, properties: Record<string, unknown> = {}) {
    const r = await t.call('PUT', url(name), {
      token: tenant.contributor,
      body: {
        properties: {
          targetType: 'AzureVMSS',
          target: scaleSetId(tenant.subscriptionId, 'lab', ss),
          storageLocation: { filePath: `/var/captures/${name}.cap` },
          ...properties,
        },
      },
    });
    expect(r.status, r.text).toBe(201);
    await waitFor(
      () => status(name),
      (s) => s.packetCaptureStatus === 'Running',
    );
  }

  async function stop(name: string) {
    const r = await t.call('POST', url(name, '/stop'), { token: tenant.contributor });
    expect(r.status, r.text).toBe(202);
    await waitFor(
      () => status(name),
      (s) => s.packetCaptureStatus === 'Stopped',
    );
  }

  async function download(name: string, query = '') {
    const res = await fetch(`${t.url}${url(name, '/content')}${query}`, {
      headers: { authorization: `Bearer ${tenant.reader}` },
    });
    return { status: res.status, headers: res.headers, body: Buffer.from(await res.arrayBuffer()) };
  }

  /** tshark's interface name, time and data label of every packet of a downloaded file. */
  async function packetsOf(body: Buffer, name: string) {
    const file = path.join(dir, name);
    await writeFile(file, body);
    return parsePackets(
      await tsharkFieldLines(file, ['frame.interface_name', 'frame.time_epoch', 'frame.len']),
      body,
    );
  }

  /** The labels of every packet of the named instances, in time order. */
  function expectedLabels(hosts: readonly string[], packets: number): string[] {
    const labels: string[] = [];
    for (let k = 0; k < packets; k++) for (const h of hosts) labels.push(`${h}#${k}`);
    return labels;
  }

  beforeAll(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'ww-vmss-content-'));
    azurite = await startAzurite({ dataDir: path.join(dir, 'azurite') });
    t = await startTestServer();
    tenant = await createTenant(t, 'vmss-content');
    await registerStorageAccount(t, tenant, azurite.connectionString);
    // Scale set web: instances 0–2 and 3 (excluded below) capture 30 packets; 4 fails to start.
    for (const id of ['0', '1', '2', '3']) await instance('web', id, { packets: 30 });
    await instance('web', '4');
    // Scale set mixed: Ethernet, and Linux cooked in nanoseconds with a snaplen of 200.
    await instance('mixed', '0', { packets: 5 });
    await instance('mixed', '1', { packets: 5, linkType: 113, precision: 'nano', snaplen: 200 });

    cliEnv = { XDG_CONFIG_HOME: path.join(dir, 'config') };
    const login = await shell(
      '"$@"',
      [process.execPath, cli, 'login', '--server', t.url, '--token', tenant.reader],
      cliEnv,
    );
    expect(login.code, login.stderr).toBe(0);
  }, 120_000);

  afterAll(async () => {
    try {
      await Promise.allSettled(agents.map((a) => a.close()));
      await t?.close();
      await azurite?.close();
    } finally {
      if (dir) await rm(dir, { recursive: true, force: true });
    }
  });

  describe('from the agents', () => {
    beforeAll(async () => {
      await create('web-all', 'web', { scope: { exclude: ['3'] } });
      await stop('web-all');
    });

    it('pcapng by default: one interface per instance, every packet of each, in time order, none of the excluded', async () => {
      const d = await download('web-all');
      expect(d.status).toBe(200);
      expect(d.headers.get('content-type')).toBe('application/x-pcapng');
      expect(d.headers.get('content-disposition')).toBe('attachment; filename="web-all.pcapng"');
      expect(d.headers.get('accept-ranges')).toBe('none');
      // Instance 4 never started: it has no file, and the download says so.
      expect(d.headers.get('wirewatch-skipped-instances')).toBe('4');
      const packets = await packetsOf(d.body, 'web-all.pcapng');
      expect(packets.map((p) => p.label)).toEqual(expectedLabels(['web_0', 'web_1', 'web_2'], 30));
      for (const p of packets) expect(p.label.startsWith(`${p.iface}#`), p.label).toBe(true);
      const times = packets.map((p) => p.time);
      expect(times).toEqual([...times].sort((a, b) => a - b));
    });

    it('format=pcap: the same packets merged into classic pcap', async () => {
      const d = await download('web-all', '&format=pcap');
      expect(d.status).toBe(200);
      expect(d.headers.get('content-type')).toBe('application/vnd.tcpdump.pcap');
      expect(d.headers.get('content-disposition')).toBe('attachment; filename="web-all.cap"');
      expect(d.body.readUInt32LE(0)).toBe(0xa1b2c3d4);
      const packets = await packetsOf(d.body, 'web-all.cap');
      expect(packets.map((p) => p.label)).toEqual(expectedLabels(['web_0', 'web_1', 'web_2'], 30));
    });

    it('format=tar: each instance file as it is, in a folder per instance', async () => {
      const d = await download('web-all', '&format=tar');
      expect(d.status).toBe(200);
      expect(d.headers.get('content-length')).toBe(String(d.body.length));
      const archive = path.join(dir, 'web-all.tar');
      await writeFile(archive, d.body);
      const listing = (await run('tar', ['-tf', archive])).stdout.trim().split('\n');
      expect(listing).toEqual(['web_0/web-all.cap', 'web_1/web-all.cap', 'web_2/web-all.cap']);
      const out = path.join(dir, 'web-all');
      await mkdir(out);
      await run('tar', ['-xf', archive, '-C', out]);
      for (const host of ['web_0', 'web_1', 'web_2']) {
        const extracted = await readFile(path.join(out, host, 'web-all.cap'));
        expect(extracted.equals(files.get(host)!), host).toBe(true);
      }
    });

    it('capture download: pcapng by default (NAME.pcapng), --format pcap and tar', async () => {
      const at = ['-l', 'westeurope'];
      const cwd = path.join(dir, 'cli');
      await mkdir(cwd);
      const script = 'cd "$1" && shift && "$@"';
      const dl = (...args: string[]) =>
        shell(script, [cwd, process.execPath, cli, 'capture', 'download', ...at, ...args], cliEnv);
      const byDefault = await dl('-n', 'web-all');
      expect(byDefault.code, byDefault.stderr).toBe(0);
      expect(JSON.parse(byDefault.stdout)).toMatchObject({
        file: 'web-all.pcapng',
        format: 'pcapng',
      });
      const fromCli = await readFile(path.join(cwd, 'web-all.pcapng'));
      expect(fromCli.equals((await download('web-all')).body)).toBe(true);
      const pcap = await dl('-n', 'web-all', '--format', 'pcap');
      expect(JSON.parse(pcap.stdout)).toMatchObject({ file: 'web-all.cap', format: 'pcap' });
      expect((await readFile(path.join(cwd, 'web-all.cap'))).readUInt32LE(0)).toBe(0xa1b2c3d4);
      const tar = await dl('-n', 'web-all', '--format', 'tar');
      expect(JSON.parse(tar.stdout)).toMatchObject({ file: 'web-all.tar', format: 'tar' });
    });

    it('keeps each instance’s link type, snaplen and resolution in pcapng; pcap is refused naming format', async () => {
      await create('mixed-all', 'mixed');
      await stop('mixed-all');
      const ng = await download('mixed-all');
      expect(ng.status).toBe(200);
      const file = path.join(dir, 'mixed.pcapng');
      await writeFile(file, ng.body);
      const lines = await tsharkFieldLines(file, [
        'frame.interface_name',
        'frame.encap_type',
        'frame.time_epoch',
      ]);
      expect(lines).toHaveLength(10);
      const byIface = new Map(lines.map((l) => l.split('\t')).map(([i, e]) => [i, e]));
      expect(byIface).toEqual(
        new Map([
          ['mixed_0', '1'],
          ['mixed_1', '25'],
        ]),
      );
      // mixed_1's nanoseconds survive: 1000 µs after the second, as written in ns.
      expect(lines.some((l) => l.endsWith(`${BASE_SEC}.001000000`))).toBe(true);

      const pcap = await download('mixed-all', '&format=pcap');
      expect(pcap.status, pcap.body.toString()).toBe(400);
      const error = (JSON.parse(pcap.body.toString()) as { error: Record<string, string> }).error;
      expect(error).toMatchObject({ code: 'InvalidRequestContent', target: 'format' });
      expect(error['message']).toMatch(/link type/);
      expect(pcap.headers.get('content-disposition')).toBeNull();
    });

    it('refuses an unknown format naming pcapng as the default', async () => {
      const d = await download('web-all', '&format=zip');
      expect(d.status).toBe(400);
      expect(d.body.toString()).toContain('pcapng (default)');
    });

    it('audits the download with its instances', async () => {
      const r = await t.call(
        'GET',
        `/api/v1/subscriptions/${tenant.subscriptionId}/audit?$top=1000`,
        { token: tenant.owner },
      );
      const downloads = (r.body.value as { action: string; resourceId: string; detail: unknown }[])
        .filter((e) => e.action === 'packetCapture.download')
        .filter((e) => e.resourceId.endsWith('/packetCaptures/web-all'));
      expect(downloads).toContainEqual(
        expect.objectContaining({
          detail: {
            source: 'agent',
            format: 'pcapng',
            range: null,
            files: 3,
            instances: 3,
            skipped: ['4'],
          },
        }),
      );
    });
  });

  it('reads every instance lazily, a few windows at a time, however large the files', async () => {
    const count = 16;
    const big: SyntheticAgent[] = [];
    for (let i = 0; i < count; i++) {
      big.push(await instance('big', String(i), { packets: 3000, size: 1000 }));
    }
    await create('big-all', 'big');
    await stop('big-all');
    const total = count * files.get('big_0')!.length;
    const asked = () =>
      big.flatMap((a) =>
        a.received.flatMap((m) => (m.type === 'readFile' && m.length !== 0 ? [m] : [])),
      );
    const res = await fetch(`${t.url}${url('big-all', '/content')}`, {
      headers: { authorization: `Bearer ${tenant.reader}` },
    });
    const reader = res.body!.getReader();
    const first = await reader.read();
    expect(first.done).toBe(false);
    // Every instance is being read, each in windows (no read of a whole file) ...
    await waitFor(
      () => Promise.resolve(new Set(asked().map((m) => m.sessionId)).size),
      (n) => n === count,
    );
    // ... and while the client reads no further, the server asks for no more than a few.
    await new Promise((r) => setTimeout(r, 1000));
    const reads = asked();
    for (const m of reads) expect(m.length).toBeLessThanOrEqual(256 * 1024);
    const requested = reads.reduce((sum, m) => sum + (m.length ?? 0), 0);
    // file-relay.ts: two windows in flight, and about one more held in the stream's buffers.
    expect(requested).toBeLessThanOrEqual(count * 4 * 256 * 1024);
    expect(requested).toBeLessThan(total / 2);
    // The rest comes whole: every packet of every instance.
    const chunks = [Buffer.from(first.value)];
    for (let r = await reader.read(); !r.done; r = await reader.read()) {
      chunks.push(Buffer.from(r.value));
    }
    const file = path.join(dir, 'big.pcapng');
    await writeFile(file, Buffer.concat(chunks));
    const lines = await tsharkFieldLines(file, ['frame.interface_name']);
    expect(lines).toHaveLength(count * 3000);
    expect(new Set(lines).size).toBe(count);
  }, 120_000);

  it('streams every running instance live as one pcapng, a late joiner included', async () => {
    await create('web-live', 'web', { scope: { exclude: ['3'] } });
    const streamed = path.join(dir, 'live.pcapng');
    // What a user runs: the stream into tshark (and a copy, to read the packets' labels).
    const viewer = shell(
      '"$@" capture stream -l westeurope -n web-live | tee "$STREAMED" | tshark -n -r - -T fields -e frame.interface_name',
      [process.execPath, cli],
      { ...cliEnv, STREAMED: streamed },
    );
    const streaming = (a: SyntheticAgent) => a.received.some((m) => m.type === 'streamStart');
    const [web0, web1, web2] = agents;
    await waitFor(
      () => Promise.resolve([web0!, web1!, web2!].every(streaming)),
      (all) => all,
    );
    // Instance 5 enrolls while the capture runs (empty scope but for 3): it joins, and the
    // stream takes it in.
    const web5 = await instance('web', '5', { packets: 7 });
    await waitFor(
      () => Promise.resolve(streaming(web5)),
      (yes) => yes,
    );
    await stop('web-live');
    const out = await viewer;
    expect(out.code, out.stderr).toBe(0);
    expect(out.stderr).toMatch(/stream ended: 97 packets, 0 dropped/);
    const ifaces = out.stdout.trim().split('\n');
    const packets = parsePackets(ifaces, await readFile(streamed));
    for (const host of ['web_0', 'web_1', 'web_2', 'web_5']) {
      const own = packets.filter((p) => p.iface === host).map((p) => p.label);
      expect(own, host).toEqual(
        Array.from({ length: host === 'web_5' ? 7 : 30 }, (_, k) => `${host}#${k}`),
      );
    }
    expect(packets).toHaveLength(97);
  });

  it('comes from blob storage once the instances uploaded', async () => {
    await create('web-blob', 'web', {
      scope: { include: ['1', '2'] },
      storageLocation: { storageId: storageId() },
    });
    await stop('web-blob');
    // Both instances' uploads are checked and recorded (queryStatus' instances say so) ...
    await waitFor(
      () => status('web-blob'),
      (x) => x.instances?.every((i) => i.blobs.length === 1) === true,
    );
    // ... so with the instances' agents away, the blobs serve it.
    await Promise.all([agents[1]!.disconnect(), agents[2]!.disconnect()]);
    const d = await download('web-blob');
    expect(d.status).toBe(200);
    const packets = await packetsOf(d.body, 'web-blob.pcapng');
    expect(packets.map((p) => p.label)).toEqual(expectedLabels(['web_1', 'web_2'], 30));
  });
});

/** Packets as tshark lists them, with the label the test wrote into each. */
function parsePackets(lines: readonly string[], body: Buffer) {
  const labels = [...body.toString('latin1').matchAll(/([a-z]+_\d+#\d+)\.*/g)].map((m) => m[1]!);
  expect(labels).toHaveLength(lines.length);
  return lines.map((line, i) => {
    const [iface = '', time = '0'] = line.split('\t');
    return { iface, time: Number(time), label: labels[i]! };
  });
}
