/**
 * The agent's blob uploads on the lab: real tcpdump in a namespace, a real Azurite, SAS tokens
 * minted as the server mints them (create + write on one blob, the account key stays in the
 * test), the fake server driving the agent over the channel, and tshark as the judge.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { link, mkdir, mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import {
  BlobSASPermissions,
  BlobServiceClient,
  generateBlobSASQueryParameters,
  StorageSharedKeyCredential,
  type ContainerClient,
} from '@azure/storage-blob';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createAgent, type Agent, type AgentOptions } from '../src/agent/agent.js';
import { createJsonLineLog } from '../src/agent/agent-log.js';
import type { JournalEntry } from '../src/agent/journal.js';
import { startFakeServer, type FakeServer } from './support/fake-server.js';
import { pcapBytes } from './support/pcap-records.js';
import {
  AZURITE_ACCOUNT_KEY,
  AZURITE_ACCOUNT_NAME,
  startAzurite,
  type Azurite,
} from '../src/blob/azurite.js';
import type { CaptureAssignment, UploadReport } from '../src/model/channel.js';
import { launch, stopProcess, type CliProcess } from './lab/cli-process.js';
import { isRoot } from './lab/exec.js';
import { createLab, type Lab } from './lab/lab.js';
import { send, serve, type Server } from './lab/traffic.js';
import { tsharkRead, type TsharkPacket } from './lab/tshark.js';

if (!isRoot) {
  console.warn('agent blob uploads: SKIPPED — lab tests need root (network namespaces, tcpdump)');
}

const subscriptionId = randomUUID();
const CONTAINER = 'network-watcher-logs';
const UDP_5300 = [{ protocol: 'UDP', remotePort: '5300' }];

describe.skipIf(!isRoot)('agent blob uploads on the lab (root)', () => {
  let lab: Lab;
  let echo: Server;
  let azurite: Azurite;
  let container: ContainerClient;
  let top: string;
  let dir: string;
  let server: FakeServer;
  let agents: Agent[];
  let processes: CliProcess[];
  let helpers: ChildProcess[];
  let stopGrants: (() => void) | undefined;
  let nextPort = 48000;
  let logLines: string[];

  beforeAll(async () => {
    top = await mkdtemp(path.join(tmpdir(), 'wirewatch-agent-blob-'));
    lab = await createLab();
    echo = await serve(lab, lab.b, [{ proto: 'udp', host: lab.b.ipv4, port: 5300 }]);
    azurite = await startAzurite({ dataDir: path.join(top, 'azurite') });
    container = BlobServiceClient.fromConnectionString(azurite.connectionString, {
      retryOptions: { maxTries: 1 },
    }).getContainerClient(CONTAINER);
    await container.create();
  });
  afterAll(async () => {
    try {
      await echo?.close();
      await azurite?.close();
    } finally {
      await lab?.close();
      await rm(top, { recursive: true, force: true });
    }
  });

  beforeEach(async () => {
    dir = await mkdtemp(path.join(top, 'test-'));
    server = await startFakeServer();
    agents = [];
    processes = [];
    helpers = [];
    logLines = [];
    stopGrants = undefined;
  });
  afterEach(async () => {
    try {
      stopGrants?.();
      for (const agent of agents) await agent.close();
      for (const proc of processes) await stopProcess(proc, 'SIGKILL');
      for (const child of helpers) if (child.exitCode === null) child.kill('SIGKILL');
      if (!azurite.running) await azurite.start();
    } finally {
      await server.close();
      await rm(dir, { recursive: true, force: true });
    }
  });

  const captures = () => path.join(dir, 'captures');
  const dataDir = () => path.join(dir, 'data');
  const spoolDir = () => path.join(dataDir(), 'spool');
  const journalFile = (id: string) => path.join(dataDir(), 'sessions', `${id}.json`);

  function options(overrides: Partial<AgentOptions> = {}): AgentOptions {
    return {
      serverUrl: server.url,
      enrollToken: server.enrollToken,
      subscriptionId,
      resourceGroup: 'lab',
      name: 'lab-a',
      location: 'westeurope',
      interface: lab.a.iface,
      netns: lab.a.netns,
      dataDir: dataDir(),
      captureRoot: captures(),
      backoffMinMs: 50,
      backoffMaxMs: 500,
      progressIntervalMs: 300,
      ackWaitMs: 300,
      uploadBackoffMinMs: 100,
      uploadBackoffMaxMs: 1000,
      log: createJsonLineLog((line) => logLines.push(line), { minLevel: 'debug' }),
      ...overrides,
    };
  }

  async function startAgent(overrides: Partial<AgentOptions> = {}): Promise<Agent> {
    const agent = await createAgent(options(overrides));
    agents.push(agent);
    await server.waitFor('hello', (_m, r) => r.connection === server.connectionCount - 1);
    return agent;
  }

  /** A SAS for one blob, exactly as the server mints it: create + write, nothing else. */
  function mintSas(blobName: string, expiresOn = new Date(Date.now() + 3600_000)): string {
    return generateBlobSASQueryParameters(
      {
        containerName: CONTAINER,
        blobName,
        permissions: BlobSASPermissions.parse('cw'),
        startsOn: new Date(Date.now() - 60_000),
        expiresOn,
      },
      new StorageSharedKeyCredential(AZURITE_ACCOUNT_NAME, AZURITE_ACCOUNT_KEY),
    ).toString();
  }

  const blobName = (sessionId: string) =>
    `subscriptions/${subscriptionId}/resourcegroups/lab/providers/microsoft.compute/virtualmachines/lab-a/${sessionId}.cap`;
  const blobUrl = (name: string) => `${container.url}/${name}`;
  /** `…/x.cap` → `…/x_n.cap`, as the server names ring file n's blob. */
  const ringName = (name: string, n: number) => name.replace(/\.cap$/, `_${n}.cap`);

  function assignment(
    overrides: Partial<CaptureAssignment> = {},
    blob: { spoolOnly?: boolean; expiresOn?: Date; ring?: boolean } = {},
  ): CaptureAssignment {
    const sessionId = randomUUID();
    const name = blobName(sessionId);
    const expiresOn = blob.expiresOn ?? new Date(Date.now() + 3600_000);
    return {
      sessionId,
      resourceId: `/subscriptions/${subscriptionId}/resourceGroups/NetworkWatcherRG/providers/Microsoft.Network/networkWatchers/NetworkWatcher_westeurope/packetCaptures/pc-${sessionId.slice(0, 8)}`,
      filePath: path.join(captures(), `${sessionId}.cap`),
      filters: UDP_5300,
      bytesToCapturePerPacket: 0,
      totalBytesPerSession: 1073741824,
      timeLimitInSeconds: 300,
      continuousCapture: false,
      createdAt: new Date().toISOString(),
      blob: {
        url: blobUrl(name),
        ...(blob.ring === true ? {} : { sas: mintSas(name, expiresOn) }),
        expiresAt: expiresOn.toISOString(),
        spoolOnly: blob.spoolOnly ?? false,
      },
      ...overrides,
    };
  }

  /** Answers every blobGrantRequest as the server would: a SAS for ring file n's own blob. */
  function answerGrants(base: string): void {
    let seen = 0;
    const timer = setInterval(() => {
      for (; seen < server.received.length; seen++) {
        const { message } = server.received[seen]!;
        if (message.type !== 'blobGrantRequest' || !server.isConnected) continue;
        const name = ringName(base, message.fileIndex);
        server.send({
          type: 'blobGrant',
          sessionId: message.sessionId,
          fileIndex: message.fileIndex,
          url: blobUrl(name),
          sas: mintSas(name),
          expiresAt: new Date(Date.now() + 3600_000).toISOString(),
        });
      }
    }, 20);
    stopGrants = () => clearInterval(timer);
  }

  /** `count` UDP datagrams from a to b's echo server: 2 × count packets on a's veth. */
  async function udp(count: number, size = 100): Promise<void> {
    const [result] = await send(lab, lab.a, [
      {
        proto: 'udp',
        src: lab.a.ipv4,
        sport: nextPort++,
        dst: lab.b.ipv4,
        dport: 5300,
        count,
        size,
      },
    ]);
    expect(result!.echoed).toBe(count);
  }

  const udpOf = (packets: TsharkPacket[]) => packets.filter((p) => p.proto === 'udp');

  async function downloadTo(name: string): Promise<string> {
    const file = path.join(dir, `blob-${randomUUID()}.cap`);
    await container.getBlockBlobClient(name).downloadToFile(file);
    return file;
  }

  async function blobBytes(name: string): Promise<Buffer> {
    return container.getBlockBlobClient(name).downloadToBuffer();
  }

  const exists = (file: string) =>
    stat(file).then(
      () => true,
      () => false,
    );

  async function until(check: () => boolean | Promise<boolean>, timeoutMs = 15_000) {
    const deadline = Date.now() + timeoutMs;
    while (!(await check())) {
      if (Date.now() > deadline) throw new Error('condition not met in time');
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  async function startSession(a: CaptureAssignment) {
    server.send({ type: 'start', assignment: a });
    return server.waitFor('started', (m) => m.sessionId === a.sessionId);
  }

  async function stopSession(a: CaptureAssignment) {
    server.send({ type: 'stop', sessionId: a.sessionId, reason: 'ManualIntervention' });
    return server.waitFor('stopped', (m) => m.sessionId === a.sessionId);
  }

  const uploaded = (a: CaptureAssignment, timeoutMs = 30_000) =>
    server.waitFor('uploaded', (m) => m.sessionId === a.sessionId, timeoutMs);

  async function readJournal(id: string): Promise<JournalEntry> {
    return JSON.parse(await readFile(journalFile(id), 'utf8')) as JournalEntry;
  }

  it('streams a single-file capture into its blob, byte-identical to the local file it keeps', async () => {
    const agent = await startAgent();
    const a = assignment();
    await startSession(a);
    await udp(5);
    const stopped = await stopSession(a);
    const { upload, received } = await uploaded(a);
    // `uploaded` follows `stopped`.
    expect(received.seq).toBeGreaterThan(stopped.received.seq);
    const size = (await stat(a.filePath)).size;
    expect(upload).toEqual<UploadReport>({
      state: 'Completed',
      blobs: [{ url: a.blob!.url, size }],
    });
    expect((await blobBytes(blobName(a.sessionId))).equals(await readFile(a.filePath))).toBe(true);
    expect(udpOf(await tsharkRead(a.filePath))).toHaveLength(10);

    // The journal holds the upload too, and the session until both reports are acknowledged.
    expect(agent.sessions()).toEqual([
      expect.objectContaining({ sessionId: a.sessionId, state: 'Stopped', upload }),
    ]);
    expect(await readJournal(a.sessionId)).toMatchObject({ upload: { state: 'Completed' } });
    server.send({ type: 'ack', sessionId: a.sessionId });
    await new Promise((r) => setTimeout(r, 300));
    expect(await exists(journalFile(a.sessionId))).toBe(true);
    server.send({ type: 'ack', sessionId: a.sessionId });
    await until(async () => !(await exists(journalFile(a.sessionId))));
    // The SAS never reaches the log.
    expect(logLines.join('\n')).not.toContain('sig=');
  });

  it('with spoolOnly removes the local file once the blob is committed, and the blob holds the packets', async () => {
    await startAgent();
    const a = assignment({}, { spoolOnly: true });
    await startSession(a);
    await udp(7);
    const stopped = await stopSession(a);
    const { upload } = await uploaded(a);
    expect(upload).toEqual({
      state: 'Completed',
      blobs: [{ url: a.blob!.url, size: stopped.progress.bytes }],
    });
    expect(await exists(a.filePath)).toBe(false);
    const blob = await downloadTo(blobName(a.sessionId));
    expect(udpOf(await tsharkRead(blob))).toHaveLength(14);
    expect((await stat(blob)).size).toBe(stopped.progress.bytes);
  });

  it('loses nothing when storage is down for 20 s in the middle of a capture', async () => {
    // The default retry waits (500 ms up to 10 s), as an agent in production has them.
    await startAgent({ uploadBackoffMinMs: undefined, uploadBackoffMaxMs: undefined });
    const a = assignment({}, { spoolOnly: true });

    // The reference: a bare tcpdump on the same interface, running before and after the agent's.
    const reference = path.join(dir, 'reference.pcap');
    const bare = spawn(
      'ip',
      [
        'netns',
        'exec',
        lab.a.netns,
        'tcpdump',
        '-i',
        lab.a.iface,
        '-U',
        '-w',
        reference,
        'udp port 5300',
      ],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    );
    helpers.push(bare);
    let bareLog = '';
    bare.stderr.on('data', (d: Buffer) => (bareLog += d.toString()));
    await until(() => bareLog.includes('listening on'));

    await startSession(a);
    // The agent will remove its file once the blob is committed (spoolOnly); this second name
    // keeps the very file it wrote (and repaired) for the comparison.
    const kept = path.join(dir, 'agent-copy.cap');
    await link(a.filePath, kept);

    let sending = true;
    let datagrams = 0;
    const traffic = (async () => {
      while (sending) {
        await udp(10, 200);
        datagrams += 10;
        await new Promise((r) => setTimeout(r, 150));
      }
    })();
    const t0 = Date.now();
    const at = (ms: number) => new Promise((r) => setTimeout(r, Math.max(0, t0 + ms - Date.now())));
    await at(7_000);
    await azurite.stop();
    await at(27_000);
    await azurite.start();
    await at(34_000);
    sending = false;
    await traffic;
    await new Promise((r) => setTimeout(r, 1000));
    const stopped = await stopSession(a);
    const { upload } = await uploaded(a, 40_000);

    bare.kill('SIGINT');
    await new Promise((r) => bare.once('exit', r));

    expect(upload).toEqual({
      state: 'Completed',
      blobs: [{ url: a.blob!.url, size: stopped.progress.bytes }],
    });
    // Byte-identical to the agent's own file, which is gone from its place (the spool).
    const blob = await downloadTo(blobName(a.sessionId));
    expect((await readFile(blob)).equals(await readFile(kept))).toBe(true);
    expect(await exists(a.filePath)).toBe(false);
    expect(await readdir(spoolDir())).toEqual([]);
    // The same packets as the bare tcpdump saw, in the same order.
    const fromBlob = udpOf(await tsharkRead(blob));
    const fromReference = udpOf(await tsharkRead(reference));
    expect(fromBlob).toHaveLength(2 * datagrams);
    expect(fromBlob).toEqual(fromReference);
    expect(stopped.progress.kernelDrops).toBe(0);
    // It did see the outage, and rode it out.
    expect(logLines.some((l) => l.includes('blob storage unavailable; retrying'))).toBe(true);
    expect(logLines.join('\n')).not.toContain('sig=');
  }, 120_000);

  it('reports Failed StorageFailed when the SAS expires, and keeps the local copy', async () => {
    await startAgent();
    const a = assignment({}, { spoolOnly: true, expiresOn: new Date(Date.now() + 2500) });
    await startSession(a);
    await udp(3);
    await new Promise((r) => setTimeout(r, 3500));
    await udp(3);
    await stopSession(a);
    const { upload } = await uploaded(a);
    expect(upload).toMatchObject({
      state: 'Failed',
      blobs: [],
      error: { code: 'StorageFailed', message: expect.stringMatching(/SAS|403/) },
    });
    expect(JSON.stringify(upload)).not.toContain('sig=');
    // Nothing lost: the local copy stays where it is.
    expect(udpOf(await tsharkRead(a.filePath))).toHaveLength(12);
    expect(await readJournal(a.sessionId)).toMatchObject({ upload: { state: 'Failed' } });
  });

  it('uploads each finished ring file to its own blob, byte-identical, and the last one at the end', async () => {
    await startAgent();
    const a = assignment(
      {
        continuousCapture: true,
        filePath: path.join(captures(), 'ring.cap'),
        captureSettings: { fileCount: 3, fileSizeInBytes: 1500, sessionTimeLimitInSeconds: 600 },
      },
      { ring: true },
    );
    answerGrants(blobName(a.sessionId));
    await startSession(a);
    await udp(20, 200);
    await new Promise((r) => setTimeout(r, 1500));
    const stopped = await stopSession(a);
    const { upload } = await uploaded(a);
    expect(upload.state).toBe('Completed');
    // Every file the ring ever had, including those it has deleted since: 1…n.
    const n = upload.blobs.length;
    expect(n).toBeGreaterThan(3);
    expect(upload.blobs.map((b) => b.url)).toEqual(
      Array.from({ length: n }, (_, i) => blobUrl(ringName(blobName(a.sessionId), i + 1))),
    );
    expect(stopped.files).toHaveLength(3);
    expect(stopped.files.at(-1)).toBe(path.join(captures(), `ring_${n}.cap`));
    // The files still on the agent are byte-identical to their blobs.
    for (const file of stopped.files) {
      const index = Number(/_(\d+)\.cap$/.exec(file)![1]);
      const blob = await blobBytes(ringName(blobName(a.sessionId), index));
      expect(blob.equals(await readFile(file))).toBe(true);
      expect(upload.blobs[index - 1]!.size).toBe(blob.length);
    }
    // And the blobs hold every packet, the deleted files' included.
    let packets = 0;
    for (let i = 1; i <= n; i++) {
      packets += udpOf(
        await tsharkRead(await downloadTo(ringName(blobName(a.sessionId), i))),
      ).length;
    }
    expect(packets).toBe(40);
    // Each file was asked for by its number; the spool links are gone.
    const asked = server.received
      .map((r) => r.message)
      .filter((m) => m.type === 'blobGrantRequest')
      .map((m) => m.fileIndex);
    expect(new Set(asked)).toEqual(new Set(Array.from({ length: n }, (_, i) => i + 1)));
    expect(await readdir(spoolDir())).toEqual([]);
  });

  it('close() leaves an upload storage cannot take Pending; the next start completes it', async () => {
    const first = await startAgent({ uploadWaitMs: 500 });
    const a = assignment();
    await startSession(a);
    await udp(4);
    await azurite.stop();
    await first.close();
    const stopped = await server.waitFor('stopped', (m) => m.sessionId === a.sessionId);
    expect(await readJournal(a.sessionId)).toMatchObject({
      state: 'Stopped',
      upload: { state: 'Pending', blobs: [] },
    });
    expect(server.received.some((r) => r.message.type === 'uploaded')).toBe(false);

    // Started again while storage is still down: the hello says the upload is pending.
    await startAgent();
    const hello = await server.waitFor('hello', (_m, r) => r.connection === 1);
    expect(hello.sessions).toEqual([
      expect.objectContaining({
        sessionId: a.sessionId,
        state: 'Stopped',
        upload: { state: 'Pending', blobs: [] },
      }),
    ]);
    await azurite.start();
    const { upload } = await uploaded(a);
    expect(upload).toEqual({
      state: 'Completed',
      blobs: [{ url: a.blob!.url, size: stopped.progress.bytes }],
    });
    expect((await blobBytes(blobName(a.sessionId))).equals(await readFile(a.filePath))).toBe(true);
    // One ack for the hello's report, one for `uploaded`.
    server.send({ type: 'ack', sessionId: a.sessionId });
    server.send({ type: 'ack', sessionId: a.sessionId });
    await until(async () => !(await exists(journalFile(a.sessionId))));
  });

  it('after a crash resumes a ring: the files not yet committed, from the spool and the ring', async () => {
    // Enrolled once; then the state a crash left, written by hand.
    const first = await startAgent();
    await first.close();
    const a = assignment(
      {
        continuousCapture: true,
        filePath: path.join(captures(), 'ring.cap'),
        captureSettings: { fileCount: 2, fileSizeInBytes: 1000, sessionTimeLimitInSeconds: 600 },
      },
      { ring: true },
    );
    const spooled = (n: number) => path.join(spoolDir(), `${a.sessionId}_${n}.cap`);
    await mkdir(captures(), { recursive: true });
    await mkdir(spoolDir(), { recursive: true });
    // File 1 was committed (its link was not yet removed); file 2 only survives in the spool
    // (the ring deleted it); file 3 is in both; file 4 was being written, cut mid-record.
    await writeFile(spooled(1), pcapBytes(1));
    await writeFile(spooled(2), pcapBytes(3));
    await writeFile(path.join(captures(), 'ring_3.cap'), pcapBytes(4));
    await link(path.join(captures(), 'ring_3.cap'), spooled(3));
    await writeFile(path.join(captures(), 'ring_4.cap'), pcapBytes(2, 50));
    const first1 = { url: blobUrl(ringName(blobName(a.sessionId), 1)), size: 24 + 76 };
    const entry: JournalEntry = {
      assignment: a,
      state: 'Running',
      capturePath: a.filePath,
      startTime: new Date(Date.now() - 10_000).toISOString(),
      upload: { state: 'Pending', blobs: [first1], committedFiles: [1], failedFiles: [] },
    };
    await writeFile(journalFile(a.sessionId), JSON.stringify(entry));

    answerGrants(blobName(a.sessionId));
    await startAgent();
    const { upload } = await uploaded(a);
    const sizes = [3, 4, 2].map((records) => 24 + records * 76);
    expect(upload).toEqual({
      state: 'Completed',
      blobs: [
        first1,
        ...[2, 3, 4].map((n, i) => ({
          url: blobUrl(ringName(blobName(a.sessionId), n)),
          size: sizes[i],
        })),
      ],
    });
    const asked = server.received
      .map((r) => r.message)
      .filter((m) => m.type === 'blobGrantRequest')
      .map((m) => m.fileIndex);
    expect(new Set(asked)).toEqual(new Set([2, 3, 4]));
    expect((await blobBytes(ringName(blobName(a.sessionId), 2))).equals(pcapBytes(3))).toBe(true);
    // The file being written at the crash was repaired first, then uploaded.
    const last = await readFile(path.join(captures(), 'ring_4.cap'));
    expect(last.equals(pcapBytes(2))).toBe(true);
    expect((await blobBytes(ringName(blobName(a.sessionId), 4))).equals(last)).toBe(true);
    expect(await readdir(spoolDir())).toEqual([]);
    // Not spoolOnly: the ring's own files stay.
    expect(await exists(path.join(captures(), 'ring_3.cap'))).toBe(true);
  });

  it('after kill -9 of the agent binary mid-upload, the restarted agent completes the upload', async () => {
    const args = [
      'agent',
      '--server',
      server.url,
      '--subscription',
      subscriptionId,
      '--resource-group',
      'lab',
      '--name',
      'lab-a',
      '--location',
      'westeurope',
      '--interface',
      lab.a.iface,
      '--netns',
      lab.a.netns,
      '--data-dir',
      dataDir(),
      '--capture-root',
      captures(),
    ];
    // TMPDIR keeps tcpdump's scratch folder inside the test's folder even when killed.
    const env = { TMPDIR: dir, WIREWATCH_ENROLL_TOKEN: server.enrollToken };
    const first = launch(args, env);
    processes.push(first);
    await server.waitFor('hello', (_m, r) => r.connection === 0, 30_000);
    const a = assignment({}, { spoolOnly: true });
    await startSession(a);
    const kept = path.join(dir, 'agent-copy.cap');
    await link(a.filePath, kept);
    await udp(6, 300);
    // Blocks are staged while the capture runs; the kill comes before any commit.
    await new Promise((r) => setTimeout(r, 1500));
    first.child.kill('SIGKILL');
    await first.exited;
    expect(await readJournal(a.sessionId)).toMatchObject({
      state: 'Running',
      upload: { state: 'Pending' },
    });

    const second = launch(args, env);
    processes.push(second);
    const hello = await server.waitFor('hello', (_m, r) => r.connection === 1, 30_000);
    expect(hello.sessions[0]).toMatchObject({ state: 'Stopped', stopReason: 'AgentRestarted' });
    // The upload may have ended before the connection was up: then the hello says so.
    const upload =
      hello.sessions[0]!.upload?.state === 'Completed'
        ? hello.sessions[0]!.upload
        : (await uploaded(a)).upload;
    const size = (await stat(kept)).size;
    expect(upload).toEqual({ state: 'Completed', blobs: [{ url: a.blob!.url, size }] });
    // The repaired file, whole, and only in the blob now.
    expect((await blobBytes(blobName(a.sessionId))).equals(await readFile(kept))).toBe(true);
    expect(udpOf(await tsharkRead(kept))).toHaveLength(12);
    expect(await exists(a.filePath)).toBe(false);
    expect(await stopProcess(second)).toBe(0);
    expect(second.output()).not.toContain('sig=');
  });
});
