/**
 * Downloading captures (`GET …/packetCaptures/{name}/content`) from a real server on loopback,
 * with the REAL agent (createAgent) running tcpdump on a lab namespace and serving its local
 * files through the channel, or uploading them to a real Azurite. The agent's files and the
 * blobs are the reference: a single file comes back byte for byte, a ring merged exactly as
 * mergePcaps merges the files (and readable by tshark), or as a tar that tar lists and
 * extracts to the same bytes.
 */
import { createWriteStream } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, stat, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { finished } from 'node:stream/promises';
import { BlobServiceClient } from '@azure/storage-blob';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createAgent, type Agent } from '../../src/agent/agent.js';
import { startAzurite, type Azurite } from '../../src/blob/azurite.js';
import { CAPTURE_CONTAINER } from '../../src/blob/blob-names.js';
import { blobNameOfUrl } from '../../src/blob/storage-account.js';
import { mergePcaps } from '../../src/pcap/merge.js';
import {
  API,
  capturePath,
  createTenant,
  registerStorageAccount,
  startTestServer,
  vmId,
  waitFor,
  type Tenant,
  type TestServer,
} from '../lab/control-plane.js';
import { isRoot, run } from '../lab/exec.js';
import { createLab, type Lab } from '../lab/lab.js';
import { send, serve, type Server } from '../lab/traffic.js';
import { tsharkFieldLines, tsharkRead } from '../lab/tshark.js';

if (!isRoot) {
  console.warn('capture-content: SKIPPED — lab tests need root (network namespaces, tcpdump)');
}

const nw = 'NetworkWatcher_westeurope';
const nwRg = 'NetworkWatcherRG';

interface Download {
  readonly status: number;
  readonly headers: Headers;
  readonly body: Buffer;
}

describe.skipIf(!isRoot)('downloading captures from the agent (root)', () => {
  let lab: Lab;
  let echo: Server;
  let t: TestServer;
  let tenant: Tenant;
  let azurite: Azurite | undefined;
  let dir: string;
  let agent: Agent | undefined;
  let sport = 51000;
  /** A stopped single-file capture of a few MB, and a stopped ring of several files. */
  let single: { name: string; file: string };
  let ring: { name: string; files: string[] };

  const captures = () => path.join(dir, 'captures');
  const url = (name: string, suffix = '') =>
    `${capturePath(tenant.subscriptionId, nwRg, nw, name)}${suffix}?api-version=${API}`;

  async function download(
    name: string,
    options: {
      query?: string;
      headers?: Record<string, string>;
      token?: string;
      method?: string;
    } = {},
  ): Promise<Download> {
    const res = await fetch(`${t.url}${url(name, '/content')}${options.query ?? ''}`, {
      method: options.method ?? 'GET',
      headers: { authorization: `Bearer ${options.token ?? tenant.reader}`, ...options.headers },
    });
    return { status: res.status, headers: res.headers, body: Buffer.from(await res.arrayBuffer()) };
  }

  const errorCode = (d: Download) =>
    (JSON.parse(d.body.toString('utf8')) as { error: { code: string } }).error.code;

  async function startAgent(): Promise<Agent> {
    const started = await createAgent({
      serverUrl: t.url,
      enrollToken: tenant.enrollToken,
      subscriptionId: tenant.subscriptionId,
      resourceGroup: 'lab',
      name: 'host-a',
      location: 'westeurope',
      interface: lab.a.iface,
      netns: lab.a.netns,
      dataDir: path.join(dir, 'agent'),
      captureRoot: captures(),
      backoffMinMs: 50,
      backoffMaxMs: 500,
      progressIntervalMs: 300,
      ackWaitMs: 300,
    });
    await waitFor(
      () => Promise.resolve(t.server.hub.isConnected(started.agentId)),
      (c) => c,
    );
    return started;
  }

  async function status(name: string) {
    const r = await t.call('POST', url(name, '/queryStatus'), { token: tenant.reader });
    expect(r.status, r.text).toBe(200);
    return r.body as {
      packetCaptureStatus: string;
      files: string[];
      uploadState?: string;
      blobs?: { url: string; size: number }[];
    };
  }

  async function create(name: string, properties: Record<string, unknown>) {
    const r = await t.call('PUT', url(name), {
      token: tenant.contributor,
      body: { properties: { target: vmId(tenant.subscriptionId, 'lab', 'host-a'), ...properties } },
    });
    expect(r.status, r.text).toBe(201);
    await waitFor(
      () => status(name),
      (s) => s.packetCaptureStatus === 'Running',
    );
  }

  async function stopCapture(name: string): Promise<string[]> {
    const r = await t.call('POST', url(name, '/stop'), { token: tenant.contributor });
    expect(r.status, r.text).toBe(202);
    const s = await waitFor(
      () => status(name),
      (x) => x.packetCaptureStatus === 'Stopped',
    );
    return s.files;
  }

  async function udp(count: number, size: number): Promise<void> {
    const [result] = await send(lab, lab.a, [
      { proto: 'udp', src: lab.a.ipv4, sport: sport++, dst: lab.b.ipv4, dport: 5300, count, size },
    ]);
    expect(result!.echoed).toBe(count);
  }

  beforeAll(async () => {
    lab = await createLab();
    echo = await serve(lab, lab.b, [
      { proto: 'udp', host: lab.b.ipv4, port: 5300 },
      { proto: 'tcp', host: lab.b.ipv4, port: 80 },
    ]);
    dir = await mkdtemp(path.join(tmpdir(), 'ww-content-'));
    azurite = await startAzurite({ dataDir: path.join(dir, 'azurite') });
    t = await startTestServer();
    tenant = await createTenant(t, 'downloads');
    await registerStorageAccount(t, tenant, azurite.connectionString);
    agent = await startAgent();

    // A file of several MB: several windows of the relay, many 256 KiB frames.
    single = { name: 'single', file: path.join(captures(), 'single.cap') };
    await create(single.name, {
      storageLocation: { filePath: single.file },
      filters: [{ protocol: 'TCP', remotePort: '80' }],
    });
    await send(lab, lab.a, [
      { proto: 'tcp', src: lab.a.ipv4, sport: sport++, dst: lab.b.ipv4, dport: 80, bytes: 3e6 },
    ]);
    expect(await stopCapture(single.name)).toEqual([single.file]);

    // A ring of small files: a merged download must interleave nothing wrongly and lose nothing.
    await create('ring', {
      storageLocation: { localPath: path.join(captures(), 'ring.cap') },
      filters: [{ protocol: 'UDP', remotePort: '5300' }],
      continuousCapture: true,
      captureSettings: { fileCount: 10, fileSizeInBytes: 20000, sessionTimeLimitInSeconds: 120 },
    });
    await udp(60, 500);
    ring = { name: 'ring', files: await stopCapture('ring') };
    expect(ring.files.length).toBeGreaterThan(2);
  });

  afterAll(async () => {
    try {
      await agent?.close();
      await t?.close();
      await echo?.close();
      await azurite?.close();
    } finally {
      await lab?.close();
      if (dir) await rm(dir, { recursive: true, force: true });
    }
  });

  describe('one file', () => {
    it("is the agent's file byte for byte, as an attachment with its length", async () => {
      const local = await readFile(single.file);
      expect(local.length).toBeGreaterThan(3e6);
      const d = await download(single.name);
      expect(d.status).toBe(200);
      expect(d.body.equals(local)).toBe(true);
      expect(d.headers.get('content-type')).toBe('application/vnd.tcpdump.pcap');
      expect(d.headers.get('content-disposition')).toBe('attachment; filename="single.cap"');
      expect(d.headers.get('content-length')).toBe(String(local.length));
      expect(d.headers.get('accept-ranges')).toBe('bytes');
      expect(d.headers.get('cache-control')).toBe('private, no-store');
    });

    it('serves ranges: the pcap header, a middle part across windows, a suffix, an open end', async () => {
      const local = await readFile(single.file);
      const size = local.length;
      const cases: [string, number, number][] = [
        ['bytes=0-23', 0, 23],
        ['bytes=1000000-2100000', 1000000, 2100000],
        ['bytes=-100', size - 100, size - 1],
        [`bytes=${size - 5000}-`, size - 5000, size - 1],
        // An end beyond the file is cut to it.
        [`bytes=${size - 10}-${size + 1000}`, size - 10, size - 1],
      ];
      for (const [range, start, end] of cases) {
        const d = await download(single.name, { headers: { range } });
        expect(d.status, range).toBe(206);
        expect(d.headers.get('content-range'), range).toBe(`bytes ${start}-${end}/${size}`);
        expect(d.headers.get('content-length'), range).toBe(String(end - start + 1));
        expect(d.body.equals(local.subarray(start, end + 1)), range).toBe(true);
      }
      // The first 24 bytes are the pcap file header (tcpdump writes the microsecond magic).
      const head = await download(single.name, { headers: { range: 'bytes=0-23' } });
      expect(head.body.readUInt32LE(0)).toBe(0xa1b2c3d4);
    });

    it('answers 416 with the size for a range beyond the end, and the whole file for several ranges', async () => {
      const size = (await stat(single.file)).size;
      for (const range of [`bytes=${size}-`, `bytes=${size + 10}-${size + 20}`, 'bytes=-0']) {
        const d = await download(single.name, { headers: { range } });
        expect(d.status, range).toBe(416);
        expect(d.headers.get('content-range'), range).toBe(`bytes */${size}`);
        expect(d.headers.get('content-disposition')).toBeNull();
        expect(errorCode(d)).toBe('RangeNotSatisfiable');
      }
      for (const range of ['bytes=0-10,20-30', 'items=0-10', 'bytes=20-10']) {
        const d = await download(single.name, { headers: { range } });
        expect(d.status, range).toBe(200);
        expect(d.body.length, range).toBe(size);
      }
    });

    it('HEAD answers the headers without reading the file', async () => {
      const size = (await stat(single.file)).size;
      const d = await download(single.name, { method: 'HEAD' });
      expect(d.status).toBe(200);
      expect(d.headers.get('content-length')).toBe(String(size));
      expect(d.body.length).toBe(0);
      const part = await download(single.name, { method: 'HEAD', headers: { range: 'bytes=0-9' } });
      expect(part.status).toBe(206);
      expect(part.headers.get('content-range')).toBe(`bytes 0-9/${size}`);
    });

    it('a client that goes away mid-download cancels the read on the agent', async () => {
      const controller = new AbortController();
      const res = await fetch(`${t.url}${url(single.name, '/content')}`, {
        headers: { authorization: `Bearer ${tenant.reader}` },
        signal: controller.signal,
      });
      const reader = res.body!.getReader();
      await reader.read();
      controller.abort();
      await waitFor(
        () => Promise.resolve(t.server.hub.files.pendingCount),
        (n) => n === 0,
      );
      // The server still serves the next download whole.
      const d = await download(single.name);
      expect(d.body.equals(await readFile(single.file))).toBe(true);
    });
  });

  describe('a ring of files', () => {
    it('merges them by time into one pcap: the bytes mergePcaps makes of the files, read by tshark', async () => {
      const d = await download(ring.name);
      expect(d.status).toBe(200);
      expect(d.headers.get('content-type')).toBe('application/vnd.tcpdump.pcap');
      expect(d.headers.get('content-disposition')).toBe('attachment; filename="ring.cap"');
      expect(d.headers.get('accept-ranges')).toBe('none');
      expect(d.headers.get('content-length')).toBeNull();

      const merged = path.join(dir, 'merged.cap');
      await mkdir(dir, { recursive: true });
      const out = createWriteStream(path.join(dir, 'expected.cap'));
      await mergePcaps(ring.files, out);
      await finished(out);
      expect(d.body.equals(await readFile(path.join(dir, 'expected.cap')))).toBe(true);

      await writeFile(merged, d.body);
      const packets = await tsharkRead(merged);
      let total = 0;
      for (const file of ring.files) total += (await tsharkRead(file)).length;
      expect(packets.length).toBe(total);
      // 60 datagrams and their echoes, unless the ring already dropped its oldest file.
      expect(total).toBeGreaterThan(0);
      expect(total).toBeLessThanOrEqual(120);
    });

    it("?format=pcapng: one interface named after the VM, every packet in the files' order, read by tshark", async () => {
      for (const [name, files] of [
        [ring.name, ring.files],
        [single.name, [single.file]],
      ] as const) {
        const d = await download(name, {
          query: '&format=pcapng',
          headers: { range: 'bytes=0-9' },
        });
        expect(d.status, name).toBe(200);
        expect(d.headers.get('content-type')).toBe('application/x-pcapng');
        expect(d.headers.get('content-disposition')).toBe(`attachment; filename="${name}.pcapng"`);
        expect(d.headers.get('accept-ranges')).toBe('none');
        expect(d.body.readUInt32LE(0)).toBe(0x0a0d0d0a);
        const file = path.join(dir, `${name}.pcapng`);
        await writeFile(file, d.body);
        const fields = ['frame.interface_name', 'frame.time_epoch', 'frame.len'];
        const lines = await tsharkFieldLines(file, fields);
        expect(new Set(lines.map((l) => l.split('\t')[0]))).toEqual(new Set(['host-a']));
        // Every packet of the files, in their order (a ring's files one after the other): what
        // tcpdump wrote, also where its stamps are not in order.
        const expected: string[] = [];
        for (const f of files) {
          for (const l of await tsharkFieldLines(f, fields.slice(1))) expected.push(l);
        }
        expect(expected.length, name).toBeGreaterThan(0);
        expect(lines.map((l) => l.split('\t').slice(1).join('\t'))).toEqual(expected);
      }
    });

    it('ignores Range on the merged pcap', async () => {
      const whole = await download(ring.name);
      const d = await download(ring.name, { headers: { range: 'bytes=0-23' } });
      expect(d.status).toBe(200);
      expect(d.body.equals(whole.body)).toBe(true);
    });

    it('?format=tar: a ustar archive that tar lists with the sizes and extracts to the same bytes', async () => {
      const d = await download(ring.name, { query: '&format=tar' });
      expect(d.status).toBe(200);
      expect(d.headers.get('content-type')).toBe('application/x-tar');
      expect(d.headers.get('content-disposition')).toBe('attachment; filename="ring.tar"');
      expect(d.headers.get('content-length')).toBe(String(d.body.length));
      const archive = path.join(dir, 'ring.tar');
      await writeFile(archive, d.body);

      const listing = await run('tar', ['-tvf', archive]);
      const lines = listing.stdout.trim().split('\n');
      expect(lines).toHaveLength(ring.files.length);
      for (const [i, file] of ring.files.entries()) {
        // -rw-r--r-- 0/0  20000 2026-11-30 10:00 ring_1.cap
        const fields = lines[i]!.trim().split(/\s+/);
        expect(fields[0]).toBe('-rw-r--r--');
        expect(Number(fields[2])).toBe((await stat(file)).size);
        expect(fields.at(-1)).toBe(path.basename(file));
      }
      const out = path.join(dir, 'extracted');
      await mkdir(out);
      await run('tar', ['-xf', archive, '-C', out]);
      for (const file of ring.files) {
        const extracted = await readFile(path.join(out, path.basename(file)));
        expect(extracted.equals(await readFile(file)), file).toBe(true);
      }
    });

    it('?format=tar of one file holds that file', async () => {
      const d = await download(single.name, { query: '&format=tar' });
      expect(d.status).toBe(200);
      const size = (await stat(single.file)).size;
      expect(d.body.length).toBe(512 + Math.ceil(size / 512) * 512 + 1024);
      expect(d.body.subarray(512, 512 + size).equals(await readFile(single.file))).toBe(true);
    });
  });

  describe('from blob storage', () => {
    const storageId = () =>
      `/subscriptions/${tenant.subscriptionId}/resourceGroups/lab/providers/Microsoft.Storage/storageAccounts/logs`;
    const blobOf = (url: string) =>
      BlobServiceClient.fromConnectionString(azurite!.connectionString)
        .getContainerClient(CAPTURE_CONTAINER)
        .getBlobClient(blobNameOfUrl(azurite!.blobEndpoint, url)!);

    /** Stops the capture and waits until every file is in its blob; the blobs. */
    async function stopAndUpload(name: string) {
      const files = await stopCapture(name);
      const s = await waitFor(
        () => status(name),
        (x) => x.uploadState === 'Completed',
        30_000,
      );
      expect(s.blobs).toHaveLength(files.length);
      return { files, blobs: s.blobs! };
    }

    it('a capture whose upload completed comes from its blob, byte for byte and by range', async () => {
      const file = path.join(captures(), 'stored.cap');
      await create('stored', {
        storageLocation: { storageId: storageId(), filePath: file },
        filters: [{ protocol: 'UDP', remotePort: '5300' }],
      });
      await udp(40, 700);
      const { blobs } = await stopAndUpload('stored');
      const blob = await blobOf(blobs[0]!.url).downloadToBuffer();
      expect(blob.equals(await readFile(file))).toBe(true);
      // Only the blob has it now: the download cannot come from the agent.
      await unlink(file);

      const d = await download('stored');
      expect(d.status).toBe(200);
      expect(d.body.equals(blob)).toBe(true);
      expect(d.headers.get('content-length')).toBe(String(blob.length));
      expect(d.headers.get('content-disposition')).toBe('attachment; filename="stored.cap"');
      for (const [range, start, end] of [
        ['bytes=0-23', 0, 23],
        ['bytes=100-5000', 100, 5000],
        ['bytes=-77', blob.length - 77, blob.length - 1],
      ] as const) {
        const part = await download('stored', { headers: { range } });
        expect(part.status, range).toBe(206);
        expect(part.headers.get('content-range')).toBe(`bytes ${start}-${end}/${blob.length}`);
        expect(part.body.equals(blob.subarray(start, end + 1)), range).toBe(true);
      }
      const beyond = await download('stored', { headers: { range: `bytes=${blob.length}-` } });
      expect(beyond.status).toBe(416);
    });

    it('a ring in blob storage: merged from its blobs, or a tar of them', async () => {
      await create('ring-stored', {
        storageLocation: { storageId: storageId(), localPath: path.join(captures(), 'rs.cap') },
        filters: [{ protocol: 'UDP', remotePort: '5300' }],
        continuousCapture: true,
        captureSettings: { fileCount: 10, fileSizeInBytes: 20000, sessionTimeLimitInSeconds: 120 },
      });
      await udp(60, 500);
      const { files, blobs } = await stopAndUpload('ring-stored');
      expect(files.length).toBeGreaterThan(2);
      const expected = path.join(dir, 'ring-stored-expected.cap');
      const out = createWriteStream(expected);
      await mergePcaps(files, out);
      await finished(out);
      const contents = await Promise.all(blobs.map((b) => blobOf(b.url).downloadToBuffer()));
      for (const file of files) await unlink(file);

      const merged = await download('ring-stored');
      expect(merged.status).toBe(200);
      expect(merged.body.equals(await readFile(expected))).toBe(true);

      const d = await download('ring-stored', { query: '&format=tar' });
      expect(d.status).toBe(200);
      const archive = path.join(dir, 'ring-stored.tar');
      await writeFile(archive, d.body);
      const out2 = path.join(dir, 'ring-stored');
      await mkdir(out2);
      await run('tar', ['-xf', archive, '-C', out2]);
      const listing = (await run('tar', ['-tf', archive])).stdout.trim().split('\n');
      expect(listing).toEqual(blobs.map((b) => path.posix.basename(new URL(b.url).pathname)));
      for (const [i, name] of listing.entries()) {
        expect((await readFile(path.join(out2, name))).equals(contents[i]!), name).toBe(true);
      }
    });

    it('audits blob downloads as such', async () => {
      const r = await t.call(
        'GET',
        `/api/v1/subscriptions/${tenant.subscriptionId}/audit?$top=1000`,
        { token: tenant.owner },
      );
      const entries = (r.body.value as { action: string; resourceId: string; detail: unknown }[])
        .filter((e) => e.action === 'packetCapture.download')
        .filter((e) => e.resourceId.endsWith('/packetCaptures/stored'));
      expect(entries.map((e) => e.detail)).toContainEqual({
        source: 'blob',
        format: 'pcap',
        range: 'bytes=100-5000',
        files: 1,
      });
    });

    it('a deleted blob answers 410, an unreachable storage account 502', async () => {
      const { blobs } = await status('stored').then((s) => ({ blobs: s.blobs! }));
      await blobOf(blobs[0]!.url).delete();
      const gone = await download('stored');
      expect(gone.status).toBe(410);
      expect(errorCode(gone)).toBe('CaptureFileGone');

      await azurite!.stop();
      try {
        const away = await download('ring-stored');
        expect(away.status).toBe(502);
        expect(errorCode(away)).toBe('CaptureFileUnavailable');
        expect(away.body.toString()).not.toContain('AccountKey');
      } finally {
        await azurite!.start();
      }
    });
  });

  describe('refusals', () => {
    it('answers 400 for an unknown format', async () => {
      const d = await download(single.name, { query: '&format=zip' });
      expect(d.status).toBe(400);
      expect(errorCode(d)).toBe('InvalidRequestContent');
    });

    it('answers 409 CaptureStillRunning while the capture runs', async () => {
      await create('running', {
        storageLocation: { filePath: path.join(captures(), 'running.cap') },
        filters: [{ protocol: 'UDP', remotePort: '5300' }],
      });
      const d = await download('running');
      expect(d.status).toBe(409);
      expect(errorCode(d)).toBe('CaptureStillRunning');
      await stopCapture('running');
    });

    it('answers 410 CaptureFileGone when the file was deleted from the VM', async () => {
      await create('deleted', {
        storageLocation: { filePath: path.join(captures(), 'deleted.cap') },
        filters: [{ protocol: 'UDP', remotePort: '5300' }],
      });
      const [file] = await stopCapture('deleted');
      await unlink(file!);
      const d = await download('deleted');
      expect(d.status).toBe(410);
      expect(errorCode(d)).toBe('CaptureFileGone');
    });

    it("answers 404 for another tenant's capture and for one that does not exist", async () => {
      const other = await createTenant(t, 'other');
      const d = await download(single.name, { token: other.reader });
      expect(d.status).toBe(404);
      expect(d.body.toString()).not.toContain(single.file);
      const none = await download('no-such-capture');
      expect(none.status).toBe(404);
      expect(errorCode(none)).toBe('ResourceNotFound');
    });

    it('audits every download: source, format, range, files', async () => {
      const r = await t.call(
        'GET',
        `/api/v1/subscriptions/${tenant.subscriptionId}/audit?$top=1000`,
        {
          token: tenant.owner,
        },
      );
      expect(r.status).toBe(200);
      const downloads = (
        r.body.value as { action: string; resourceId: string; actor: string; detail: unknown }[]
      ).filter((e) => e.action === 'packetCapture.download');
      const of = (name: string) =>
        downloads.filter((e) => e.resourceId.endsWith(`/packetCaptures/${name}`));
      expect(of(single.name)).toContainEqual(
        expect.objectContaining({
          detail: { source: 'agent', format: 'pcap', range: null, files: 1 },
        }),
      );
      expect(of(single.name)).toContainEqual(
        expect.objectContaining({
          detail: { source: 'agent', format: 'pcap', range: 'bytes=0-23', files: 1 },
        }),
      );
      expect(of(ring.name)).toContainEqual(
        expect.objectContaining({
          detail: { source: 'agent', format: 'tar', range: null, files: ring.files.length },
        }),
      );
      // HEAD, refusals and 416 read no bytes and are not downloads.
      expect(of('running')).toEqual([]);
      expect(of('deleted')).toEqual([]);
      expect(downloads.every((e) => e.actor.startsWith('token:'))).toBe(true);
    });

    it('answers 503 AgentNotConnected with Retry-After while the agent is away', async () => {
      await agent!.close();
      agent = undefined;
      await waitFor(
        () => Promise.resolve(t.server.hub.connectedCount),
        (n) => n === 0,
      );
      const d = await download(single.name);
      expect(d.status).toBe(503);
      expect(errorCode(d)).toBe('AgentNotConnected');
      expect(d.headers.get('retry-after')).toBe('30');
      // Back again: the same download works.
      agent = await startAgent();
      const again = await download(single.name);
      expect(again.status).toBe(200);
      expect(again.body.equals(await readFile(single.file))).toBe(true);
    });
  });
});
