/**
 * The capture engine on real traffic: tcpdump on a veth pair between two network namespaces,
 * scripted TCP and UDP flows over IPv4 and IPv6, and tshark as the independent judge of what
 * each capture holds.
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { parseFilters } from '../src/capture/filter.js';
import type { HostAddress, PacketCaptureFilter } from '../src/capture/filter-spec.js';
import { interfaceAddresses } from '../src/capture/interface-addresses.js';
import { matchesFilters } from '../src/capture/match.js';
import { startCapture, type CaptureOptions } from '../src/capture/runner.js';
import { decodePacket } from '../src/pcap/decode.js';
import { openPcapFile } from '../src/pcap/reader.js';
import { isRoot, run } from './lab/exec.js';
import { createLab, type Lab } from './lab/lab.js';
import { seqPackets, startSeqStream } from './lab/seq-stream.js';
import { send, serve, type Flow, type Server } from './lab/traffic.js';
import { tsharkFieldLines, tsharkRead, type TsharkPacket } from './lab/tshark.js';

if (!isRoot) {
  console.warn('capture-lab: SKIPPED — lab tests need root (network namespaces, tcpdump)');
}

type LabFlow = Flow & { from: 'a' | 'b' };

describe.skipIf(!isRoot)('capture on the lab (root)', () => {
  let lab: Lab;
  let root: string;
  let servers: Server[] = [];
  let hostAddresses: HostAddress[];
  let runIndex = 0;

  beforeAll(async () => {
    lab = await createLab();
    root = await mkdtemp(path.join(tmpdir(), 'wirewatch-captures-'));
    const { a, b } = lab;
    servers = [
      await serve(lab, b, [
        { proto: 'tcp', host: b.ipv4, port: 80 },
        { proto: 'udp', host: b.ipv4, port: 5300 },
        { proto: 'tcp', host: b.ipv6, port: 8080 },
      ]),
      await serve(lab, a, [
        { proto: 'tcp', host: a.ipv4, port: 80 },
        { proto: 'udp', host: a.ipv4, port: 5353 },
        { proto: 'udp', host: a.ipv6, port: 5353 },
      ]),
    ];
    hostAddresses = await interfaceAddresses(a.iface, a.netns);
  });

  afterAll(async () => {
    try {
      for (const server of servers) await server.close();
    } finally {
      await lab?.close();
      if (root) await rm(root, { recursive: true, force: true });
    }
  });

  /** The scripted mix, seen from host a (where captures run). Source ports move every run. */
  function flows() {
    const { a, b } = lab;
    const k = ++runIndex * 3;
    return {
      outTcp80: {
        from: 'a',
        proto: 'tcp',
        src: a.ipv4,
        sport: 41000 + k,
        dst: b.ipv4,
        dport: 80,
        bytes: 3000,
      },
      inTcp80: {
        from: 'b',
        proto: 'tcp',
        src: b.ipv4,
        sport: 42000 + k,
        dst: a.ipv4,
        dport: 80,
        bytes: 2000,
      },
      outUdp4: {
        from: 'a',
        proto: 'udp',
        src: a.ipv4,
        sport: 43000 + k,
        dst: b.ipv4,
        dport: 5300,
        count: 5,
        size: 200,
      },
      inUdp6: {
        from: 'b',
        proto: 'udp',
        src: b.ipv6,
        sport: 44000 + k,
        dst: a.ipv6,
        dport: 5353,
        count: 4,
        size: 300,
      },
      outTcp6: {
        from: 'a',
        proto: 'tcp',
        src: a.ipv6,
        sport: 45000 + k,
        dst: b.ipv6,
        dport: 8080,
        bytes: 1500,
      },
      inUdp4: {
        from: 'b',
        proto: 'udp',
        src: b.ipv4,
        sport: 46000 + k,
        dst: a.ipv4,
        dport: 5353,
        count: 3,
        size: 100,
      },
    } satisfies Record<string, LabFlow>;
  }

  /** Polls a condition every 100 ms; fails after 15 s. */
  async function waitUntil(ok: () => boolean | Promise<boolean>): Promise<void> {
    for (let waited = 0; !(await ok()); waited += 100) {
      if (waited > 15_000) throw new Error('condition not met in 15 s');
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  async function sendAll(all: Partial<Record<string, LabFlow>>): Promise<void> {
    for (const flow of Object.values(all)) {
      if (flow === undefined) continue;
      const [result] = await send(lab, flow.from === 'a' ? lab.a : lab.b, [flow]);
      expect(result!.echoed, `echo of ${JSON.stringify(flow)}`).toBe(result!.sent);
    }
  }

  function belongsTo(p: TsharkPacket, f: Flow): boolean {
    if (p.proto !== f.proto) return false;
    return (
      (p.src === f.src && p.dst === f.dst && p.sport === f.sport && p.dport === f.dport) ||
      (p.src === f.dst && p.dst === f.src && p.sport === f.dport && p.dport === f.sport)
    );
  }

  /** Checks that a flow is wholly in the capture: every datagram and echo, every TCP byte. */
  function expectWholeFlow(packets: TsharkPacket[], name: string, f: Flow): void {
    const mine = packets.filter((p) => belongsTo(p, f));
    if (f.proto === 'udp') {
      expect(mine.length, `${name}: UDP packets`).toBe(2 * (f.count ?? 1));
    } else {
      const forward = mine
        .filter((p) => p.src === f.src)
        .reduce((n, p) => n + (p.tcpLength ?? 0), 0);
      const back = mine.filter((p) => p.src === f.dst).reduce((n, p) => n + (p.tcpLength ?? 0), 0);
      expect([forward, back], `${name}: TCP payload bytes each way`).toEqual([f.bytes, f.bytes]);
      expect(mine.filter((p) => p.syn).length, `${name}: SYN and SYN-ACK`).toBe(2);
    }
  }

  /** Packet contents in file order, hashed: two captures of the same packets compare equal. */
  async function digests(file: string, keep: (data: Buffer) => boolean = () => true) {
    const reader = await openPcapFile(file);
    const out: string[] = [];
    for await (const record of reader.records) {
      if (keep(record.data)) out.push(createHash('sha1').update(record.data).digest('hex'));
    }
    expect(reader.truncatedBytes()).toBe(0);
    return { linkType: reader.header.linkType, digests: out };
  }

  /** A bare tcpdump on the same interface: the unfiltered reference. */
  async function referenceCapture(file: string) {
    const { a } = lab;
    const { spawn } = await import('node:child_process');
    const child = spawn(
      'ip',
      ['netns', 'exec', a.netns, 'tcpdump', '-i', a.iface, '-n', '--immediate-mode', '-w', file],
      {
        stdio: ['ignore', 'ignore', 'pipe'],
      },
    );
    await new Promise<void>((resolve, reject) => {
      let err = '';
      child.stderr.on('data', (d: Buffer) => {
        err += d.toString();
        if (err.includes('listening on')) resolve();
      });
      child.once('exit', () => reject(new Error(`reference tcpdump: ${err}`)));
    });
    const stop = () =>
      new Promise<void>((resolve) => {
        if (child.exitCode !== null || child.signalCode !== null) return resolve();
        child.once('exit', () => resolve());
        child.kill('SIGINT');
      });
    running.push({ close: stop });
    return { stop };
  }

  /** Everything a test started, stopped after it even when it failed. */
  const running: { close(): Promise<unknown> }[] = [];
  afterEach(async () => {
    for (const item of running.splice(0)) await item.close().catch(() => undefined);
  });

  async function capture(name: string, extra: Partial<CaptureOptions> = {}) {
    const session = await startCapture({
      interface: lab.a.iface,
      netns: lab.a.netns,
      filePath: path.join(root, `${name}.cap`),
      captureRoot: root,
      progressIntervalMs: 200,
      ...extra,
    });
    running.push(session);
    return session;
  }

  type FlowName = keyof ReturnType<typeof flows>;
  const filterCases: {
    name: string;
    filters: (l: Lab) => PacketCaptureFilter[];
    keep: FlowName[] | 'all';
  }[] = [
    { name: 'no filter', filters: () => [], keep: 'all' },
    {
      name: 'TCP local port 80',
      filters: () => [{ protocol: 'TCP', localPort: '80' }],
      keep: ['inTcp80'],
    },
    {
      name: 'TCP remote port 80',
      filters: () => [{ protocol: 'TCP', remotePort: '80' }],
      keep: ['outTcp80'],
    },
    {
      name: 'UDP only',
      filters: () => [{ protocol: 'UDP' }],
      keep: ['outUdp4', 'inUdp6', 'inUdp4'],
    },
    {
      name: 'local IPv6 address',
      filters: (l) => [{ localIPAddress: l.a.ipv6 }],
      keep: ['inUdp6', 'outTcp6'],
    },
    {
      name: 'remote IPv4 range, UDP',
      filters: (l) => [
        {
          protocol: 'UDP',
          remoteIPAddress: `${l.b.ipv4.replace(/\.2$/, '.0')}-${l.b.ipv4.replace(/\.2$/, '.255')}`,
        },
      ],
      keep: ['outUdp4', 'inUdp4'],
    },
    {
      name: 'two filters OR-ed',
      filters: () => [
        { protocol: 'TCP', localPort: '80' },
        { protocol: 'UDP', remotePort: '5300' },
      ],
      keep: ['inTcp80', 'outUdp4'],
    },
    {
      name: 'local port list',
      filters: () => [{ localPort: '5353;80;' }],
      keep: ['inTcp80', 'inUdp6', 'inUdp4'],
    },
    {
      name: 'remote IPv6 CIDR and port range',
      filters: () => [{ remoteIPAddress: 'fd77::/64', remotePort: '8000-8100' }],
      keep: ['outTcp6'],
    },
    {
      name: 'local and remote address, local port range',
      filters: (l) => [
        {
          localIPAddress: l.a.ipv4,
          remoteIPAddress: l.b.ipv4,
          localPort: '43000-43100;46000-46100',
        },
      ],
      keep: ['outUdp4'],
    },
  ];

  for (const testCase of filterCases) {
    it(`keeps exactly the right packets: ${testCase.name}`, async () => {
      const all = flows();
      const specs = parseFilters(testCase.filters(lab));
      const refFile = path.join(root, `ref-${runIndex}.pcap`);
      const reference = await referenceCapture(refFile);
      const session = await capture(`filter-${runIndex}`, { filters: specs });
      await sendAll(all);
      const result = await session.stop();
      await reference.stop();

      expect(result.stopReason).toBe('ManualIntervention');
      expect(result.error).toBeUndefined();
      expect(result.packets).toBe(result.tcpdumpCaptured);
      const packets = await tsharkRead(result.files[0]!);
      expect(packets.length).toBe(result.packets);

      const kept = testCase.keep === 'all' ? (Object.keys(all) as FlowName[]) : testCase.keep;
      for (const name of kept) expectWholeFlow(packets, name, all[name]);
      const dropped = (Object.keys(all) as FlowName[]).filter((n) => !kept.includes(n));
      for (const name of dropped) {
        expect(
          packets.filter((p) => belongsTo(p, all[name])),
          `${name} must be filtered out`,
        ).toEqual([]);
      }
      const strays = packets.filter((p) => !Object.values(all).some((f) => belongsTo(p, f)));
      if (testCase.keep !== 'all') expect(strays, 'packets outside the scripted flows').toEqual([]);

      // The userland matcher, applied to the unfiltered reference, keeps the same packets as BPF.
      // Only the scripted flows are compared: the reference runs a little longer than ours.
      const scripted = new Set(Object.values(all).map((f) => f.sport));
      const isScripted = (data: Buffer, linkType: number) => {
        const p = decodePacket(linkType, data);
        const ports = p.tcp ?? p.udp;
        return ports !== undefined && (scripted.has(ports.srcPort) || scripted.has(ports.dstPort));
      };
      const ours = await digests(result.files[0]!, (data) => isScripted(data, 1));
      const ref = await digests(
        refFile,
        (data) =>
          isScripted(data, 1) && matchesFilters(specs, decodePacket(1, data), { hostAddresses }),
      );
      expect(ours.linkType).toBe(1);
      expect(ours.digests).toEqual(ref.digests);
    });
  }

  it('cuts packets at bytesToCapturePerPacket', async () => {
    const session = await capture('snaplen', { limits: { bytesToCapturePerPacket: 96 } });
    const all = flows();
    await sendAll({ outUdp4: all.outUdp4, outTcp80: all.outTcp80 });
    const result = await session.stop();
    const packets = await tsharkRead(result.files[0]!);
    expect(packets.length).toBeGreaterThan(10);
    expect(Math.max(...packets.map((p) => p.capturedLength))).toBe(96);
    expect(packets.some((p) => p.frameLength > 96)).toBe(true);
    for (const p of packets) expect(p.capturedLength).toBe(Math.min(96, p.frameLength));
  });

  it('ends at the last whole packet within totalBytesPerSession', async () => {
    const limit = 5000;
    const refFile = path.join(root, `ref-bytes.pcap`);
    const reference = await referenceCapture(refFile);
    const session = await capture('bytes', { limits: { totalBytesPerSession: limit } });
    const all = flows();
    await sendAll({ outUdp4: all.outUdp4, outTcp80: all.outTcp80, inUdp4: all.inUdp4 });
    const result = await session.result;
    await reference.stop();
    expect(result.stopReason).toBe('SessionBytesExceeded');
    const size = (await stat(result.files[0]!)).size;
    expect(size).toBe(result.bytes);
    expect(size).toBeLessThanOrEqual(limit);
    // Same packets as the reference's first ones, and the reference's next one would not have fit.
    const ours = await digests(result.files[0]!);
    const reader = await openPcapFile(refFile);
    const refRecords: { digest: string; size: number }[] = [];
    for await (const r of reader.records) {
      refRecords.push({
        digest: createHash('sha1').update(r.data).digest('hex'),
        size: 16 + r.capturedLength,
      });
    }
    expect(ours.digests).toEqual(refRecords.slice(0, ours.digests.length).map((r) => r.digest));
    const next = refRecords[ours.digests.length];
    expect(next, 'more traffic than the limit was sent').toBeDefined();
    expect(size + next!.size).toBeGreaterThan(limit);
    await tsharkRead(result.files[0]!);
  });

  it('stops at timeLimitInSeconds with TimeExceeded', async () => {
    const session = await capture('time', { limits: { timeLimitInSeconds: 2 } });
    const all = flows();
    await sendAll({ outUdp4: all.outUdp4 });
    const result = await session.result;
    expect(result.stopReason).toBe('TimeExceeded');
    expect(result.stoppedAt.getTime() - result.startedAt.getTime()).toBeGreaterThanOrEqual(2000);
    expectWholeFlow(await tsharkRead(result.files[0]!), 'outUdp4', all.outUdp4);
  });

  it('holds exactly the packets stamped within [start, start + limit] and stops at the deadline, single file and ring', async () => {
    const { a, b } = lab;
    const stream = startSeqStream(a, { src: a.ipv4, sport: 47100, dst: b.ipv4, dport: 5300 });
    running.push({ close: () => stream.stop() });
    const refFile = path.join(root, 'exact-ref.pcap');
    const reference = await referenceCapture(refFile);
    await stream.reach(5);
    const filters = parseFilters([{ protocol: 'UDP', remotePort: '5300' }]);
    const single = await capture('exact', { filters, limits: { timeLimitInSeconds: 2 } });
    const ring = await capture('exact-ring', {
      filters,
      ring: { fileCount: 5, fileSizeInBytes: 100_000, sessionTimeLimitInSeconds: 2 },
    });
    const results = [await single.result, await ring.result];
    await stream.stop();
    await reference.stop();
    const sent = (await seqPackets(refFile)).filter((p) => p.sport === stream.sport);

    for (const result of results) {
      expect(result.stopReason).toBe('TimeExceeded');
      expect(result.stoppedAt.getTime() - result.startedAt.getTime()).toBe(2000);
      expect(result.elapsedMs).toBe(2000);
      // The drain brought packets from after the deadline, and they were left out.
      expect(result.outsideTimeLimit).toBeGreaterThan(0);
      const start = BigInt(result.startedAt.getTime()) * 1_000_000n;
      const deadline = BigInt(result.stoppedAt.getTime()) * 1_000_000n;
      const inFile = (await Promise.all(result.files.map((f) => seqPackets(f)))).flat();
      expect(inFile.length).toBe(result.packets);
      const outside = inFile.filter((p) => p.timeNs < start || p.timeNs > deadline);
      expect(outside, 'packets stamped outside [start, deadline]').toEqual([]);
      // Nothing before the deadline is lost: every datagram the reference saw well inside the
      // window (1 ms margins: two sockets may stamp a packet a little apart) is in the file.
      const ms = 1_000_000n;
      const due = sent.filter((p) => p.timeNs > start + ms && p.timeNs < deadline - ms);
      const seqs = new Set(inFile.filter((p) => p.sport === stream.sport).map((p) => p.seq));
      expect(due.length).toBeGreaterThan(20);
      expect(due.filter((p) => !seqs.has(p.seq)).map((p) => p.seq)).toEqual([]);
    }
  });

  it('keeps exactly fileCount files in a continuous ring', async () => {
    const session = await capture('ring', {
      ring: { fileCount: 3, fileSizeInBytes: 2000, sessionTimeLimitInSeconds: 600 },
    });
    const all = flows();
    await sendAll(all);
    const result = await session.stop();
    expect(result.stopReason).toBe('ManualIntervention');
    expect(result.files).toHaveLength(3);
    const names = result.files.map((f) => Number(/_(\d+)\.cap$/.exec(f)![1]));
    expect(names[2]! - names[0]!).toBe(2);
    expect(names[0]!).toBeGreaterThan(1);
    let packets = 0;
    for (const file of result.files) {
      expect((await stat(file)).size).toBeLessThanOrEqual(2000);
      packets += (await tsharkRead(file)).length;
    }
    expect(packets).toBeLessThan(result.packets);
    const { stdout } = await run('ls', [root]);
    expect(stdout.split('\n').filter((f) => f.startsWith('ring_'))).toHaveLength(3);
  });

  it('ring sessions end at sessionTimeLimitInSeconds', async () => {
    const session = await capture('ring-time', {
      ring: { fileCount: 2, fileSizeInBytes: 100_000, sessionTimeLimitInSeconds: 1 },
    });
    const result = await session.result;
    expect(result.stopReason).toBe('TimeExceeded');
    expect(result.files).toHaveLength(1);
    await tsharkRead(result.files[0]!);
  });

  it('ring sessions end at an explicit timeLimitInSeconds when it comes before sessionTimeLimitInSeconds', async () => {
    const session = await capture('ring-explicit', {
      ring: { fileCount: 2, fileSizeInBytes: 100_000, sessionTimeLimitInSeconds: 600 },
      limits: { timeLimitInSeconds: 1 },
    });
    const result = await session.result;
    expect(result.stopReason).toBe('TimeExceeded');
    expect(result.files).toHaveLength(1);
    await tsharkRead(result.files[0]!);
  });

  it('a ring stopped while its reader is behind loses no packet tcpdump captured', async () => {
    // A flood, and a reader stuck (in onRingFileClosed) across the stop: tcpdump's output pipe
    // is full and its write blocked when the stop comes. tcpdump does not restart a write a
    // SIGINT interrupts, so a SIGINT then made stdio throw away the 4 KiB it held: packets
    // counted as captured but never written, reported as a failed write.
    const { a, b } = lab;
    const flood = spawn(
      'ip',
      [
        'netns',
        'exec',
        a.netns,
        process.execPath,
        '-e',
        `const s = require('node:dgram').createSocket('udp4'); const d = Buffer.alloc(600);
         const go = () => { for (let i = 0; i < 100; i++) s.send(d, 9, '${b.ipv4}'); setImmediate(go); };
         go();`,
      ],
      { stdio: 'ignore' },
    );
    const flooding = new Promise<void>((resolve) => flood.once('exit', () => resolve()));
    running.push({ close: () => (flood.kill('SIGKILL'), flooding) });
    let release = () => {};
    const stuck = new Promise<void>((resolve) => (release = resolve));
    let closed = 0;
    const session = await capture('ring-behind', {
      ring: { fileCount: 3, fileSizeInBytes: 20_000, sessionTimeLimitInSeconds: 1 },
      drainMs: 200,
      onRingFileClosed: async () => {
        if (closed++ === 0) await stuck;
      },
    });
    // Stuck from the first rotation until well after the stop (deadline 1 s, SIGINT 0.2 s later).
    const timer = setTimeout(release, 2500);
    try {
      const result = await session.result;
      expect(closed, 'the reader was held up').toBeGreaterThan(1);
      expect(result.error?.message).toBeUndefined();
      expect(result.stopReason).toBe('TimeExceeded');
      expect(result.packets + result.outsideTimeLimit).toBe(result.tcpdumpCaptured);
      for (const file of result.files) await tsharkRead(file);
    } finally {
      clearTimeout(timer);
      release();
    }
  });

  it('flushes its output while watched (a live viewer), and only then', async () => {
    const quiet = (sport: number) => ({
      outUdp4: { ...flows().outUdp4, sport, count: 3, size: 20 },
    });
    const records = async (file: string) => {
      const size = (await stat(file)).size;
      return size < 24 ? 0 : (await tsharkRead(file).catch(() => [])).length;
    };
    // Unwatched: tcpdump has the 6 packets (its counters say so) and the file still holds none
    // of them — they wait in tcpdump's 4 KiB buffer, as they always did.
    const plain = await capture('unwatched', { filters: parseFilters([{ protocol: 'UDP' }]) });
    await sendAll(quiet(47001));
    await waitUntil(() => plain.progress().receivedByFilter >= 6);
    expect(await records(path.join(root, 'unwatched.cap'))).toBe(0);
    expect((await plain.stop()).packets).toBe(6);

    // Watched: the same packets reach the file while the capture still runs.
    const watched = await capture('watched', { filters: parseFilters([{ protocol: 'UDP' }]) });
    const release = watched.watch();
    await sendAll(quiet(47002));
    await waitUntil(async () => (await records(path.join(root, 'watched.cap'))) >= 6);
    release();
    const result = await watched.stop();
    expect(result.stopReason).toBe('ManualIntervention');
    expect(result.packets).toBe(6);
  });

  it('a watched capture of a flood holds every packet sent (none torn by the live flush)', async () => {
    // tcpdump's SIGUSR2 handler flushes stdio at once: one that landed inside fwrite wrote
    // bytes twice and tore a record, and the repair cut the file there (LocalFileFailed, a
    // third of a full-rate capture gone). Flushing every 5 ms instead of 200 makes that near
    // certain on such a flood; the flush must wait until tcpdump waits for packets.
    const { a, b } = lab;
    const port = 47300;
    const count = 300_000;
    const session = await capture('watched-flood', {
      filters: parseFilters([{ protocol: 'UDP' }]),
      liveFlushMs: 5,
    });
    const release = session.watch();
    // Sends `count` 64-byte datagrams as fast as the socket takes them; prints how many it sent.
    const sender = `const s = require('node:dgram').createSocket('udp4'); const d = Buffer.alloc(64);
      let started = 0, done = 0, sent = 0;
      const go = () => { while (started < ${count} && started - done < 256) { started++;
        s.send(d, ${port}, '${b.ipv4}', (err) => { done++; if (!err) sent++;
          if (done === ${count}) { console.log(sent); s.close(); } else go(); }); } };
      go();`;
    const { stdout } = await run('ip', ['netns', 'exec', a.netns, process.execPath, '-e', sender]);
    const sent = Number(stdout.trim());
    release();
    const result = await session.stop();
    expect(result.error?.message).toBeUndefined();
    expect(result.stopReason).toBe('ManualIntervention');
    expect(result.packets).toBe(result.tcpdumpCaptured);
    const inFile = (await tsharkFieldLines(result.files[0]!, ['udp.dstport'])).filter(
      (line) => line === String(port),
    ).length;
    expect(inFile).toBe(result.packets);
    // Every packet sent is in the file, or was dropped by the kernel on a loaded host (tcpdump
    // counts those; the test says so rather than hide them).
    if (result.kernelDrops > 0) console.warn(`watched flood: ${result.kernelDrops} kernel drops`);
    expect(inFile + result.kernelDrops).toBe(sent);
    expect(sent).toBeGreaterThan(count / 2);
  });

  it('reports progress with packets, bytes and kernel drops, counted from the same packets', async () => {
    const seen: { packets: number; bytes: number; kernelDrops: number }[] = [];
    const session = await capture('progress', {
      onProgress: (p) => seen.push(p),
      progressIntervalMs: 1000,
    });
    const all = flows();
    await sendAll({ outUdp4: all.outUdp4, inUdp4: all.inUdp4, outTcp80: all.outTcp80 });
    // The kernel hands packets to tcpdump a block at a time, within a second; a report flushes
    // tcpdump's output for the next one.
    await new Promise((r) => setTimeout(r, 3500));
    const result = await session.stop();
    expect(seen.length).toBeGreaterThan(1);
    // Packets and bytes describe the same whole records of the file: never bytes without
    // packets (a 24-byte pcap header is all an empty file holds, and a report before tcpdump
    // wrote even that says 0), never more than they can take.
    for (const p of seen) {
      if (p.packets === 0) expect([0, 24], JSON.stringify(p)).toContain(p.bytes);
      else expect(p.bytes, JSON.stringify(p)).toBeGreaterThanOrEqual(24 + 16 * p.packets);
      expect(p.bytes, JSON.stringify(p)).toBeLessThanOrEqual(24 + p.packets * (16 + 262144));
    }
    const last = seen.at(-1)!;
    expect(last.packets).toBeGreaterThanOrEqual(16);
    expect(last.packets).toBeLessThanOrEqual(result.packets);
    expect(last.bytes).toBeLessThanOrEqual(result.bytes);
    expect(result.packets).toBeGreaterThanOrEqual(16);
    expect(result.kernelDrops).toBe(0);
    expect(result.receivedByFilter).toBeGreaterThanOrEqual(result.packets);
  });

  /** A real full disk: a small tmpfs as the capture root. */
  async function withSmallDisk<T>(name: string, size: string, body: (dir: string) => Promise<T>) {
    const dir = path.join(root, name);
    await run('mkdir', ['-p', dir]);
    await run('mount', ['-t', 'tmpfs', '-o', `size=${size}`, 'tmpfs', dir]);
    try {
      return await body(dir);
    } finally {
      for (const item of running.splice(0)) await item.close().catch(() => undefined);
      await run('umount', [dir], { check: false });
    }
  }

  it('reports writes lost to a full disk and leaves a readable file', async () => {
    await withSmallDisk('enospc', '64k', async (dir) => {
      // No free-space guard: tcpdump runs into ENOSPC itself.
      const session = await capture('x', {
        filePath: path.join(dir, 'full.cap'),
        captureRoot: dir,
        diskReserveBytes: 0,
      });
      const all = flows();
      await sendAll({ outTcp80: { ...all.outTcp80, bytes: 100_000 }, outUdp4: all.outUdp4 });
      const result = await session.stop();
      expect(result.stopReason).toBe('Error');
      expect(result.error?.code).toBe('LocalFileFailed');
      expect(result.error?.message).toMatch(/could not be written/);
      expect(result.packets).toBeGreaterThan(0);
      expect(result.packets).toBeLessThan(result.tcpdumpCaptured);
      const packets = await tsharkRead(result.files[0]!);
      expect(packets.length).toBe(result.packets);
      expect((await digests(result.files[0]!)).digests).toHaveLength(result.packets);
    });
  });

  it('stops before the disk is full, with a clear error and a readable file', async () => {
    await withSmallDisk('guard', '1m', async (dir) => {
      const session = await capture('x', {
        filePath: path.join(dir, 'full.cap'),
        captureRoot: dir,
      });
      const all = flows();
      await sendAll({ outTcp80: { ...all.outTcp80, bytes: 400_000 } });
      const result = await session.result;
      expect(result.stopReason).toBe('Error');
      expect(result.error?.code).toBe('LocalFileFailed');
      expect(result.error?.message).toMatch(/no space left on device/);
      // Stopped with room to spare (the guard keeps 512 KiB free), after real data.
      expect(result.packets).toBeGreaterThan(0);
      expect(result.bytes).toBeGreaterThan(100_000);
      expect(await tsharkRead(result.files[0]!)).toHaveLength(result.packets);
    });
  });

  it('stops a capture aborted while tcpdump was still starting', async () => {
    const controller = new AbortController();
    const starting = capture('abort-early', {
      signal: controller.signal,
      limits: { timeLimitInSeconds: 600 },
    });
    controller.abort();
    const result = await (await starting).result;
    expect(result.stopReason).toBe('ManualIntervention');
    await tsharkRead(result.files[0]!);
  });

  it('refuses a continuous capture whose files would collide with an earlier ring', async () => {
    const ring = { fileCount: 2, fileSizeInBytes: 2000, sessionTimeLimitInSeconds: 600 };
    const first = await capture('ring-again', { ring });
    await first.stop();
    await expect(capture('ring-again', { ring })).rejects.toMatchObject({
      code: 'LocalFileFailed',
      message: expect.stringMatching(/already exists/),
    });
  });

  it('refuses a missing interface or namespace, missing tcpdump and a denied permission', async () => {
    await expect(capture('e1', { interface: 'nosuch0' })).rejects.toMatchObject({
      code: 'CaptureFailed',
      message: expect.stringMatching(/interface nosuch0 does not exist/),
    });
    await expect(capture('e2', { netns: 'ww-no-such-netns' })).rejects.toMatchObject({
      code: 'CaptureFailed',
      message: expect.stringMatching(/namespace ww-no-such-netns does not exist/),
    });
    await expect(capture('e3', { tcpdumpPath: '/nonexistent/tcpdump' })).rejects.toMatchObject({
      code: 'CaptureFailed',
      message: expect.stringMatching(/tcpdump is not installed/),
    });
    const { spawn } = await import('node:child_process');
    await expect(
      capture('e4', {
        // A real permission failure: tcpdump run as nobody cannot open a capture socket.
        spawn: (cmd, args, options) => spawn(cmd, args, { ...options, uid: 65534, gid: 65534 }),
        netns: undefined,
        interface: 'lo',
      }),
    ).rejects.toMatchObject({
      code: 'CaptureFailed',
      message: expect.stringMatching(/permission denied/),
    });
    // None of the failed starts leaves a file behind.
    const { stdout } = await run('ls', [root]);
    expect(stdout.split('\n').filter((f) => /^e\d\.cap$/.test(f))).toEqual([]);
  });
});
