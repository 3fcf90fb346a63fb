/** The built `wirewatch` binary, run as a user would. */
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isRoot, run } from './lab/exec.js';
import { createLab, tcpdumpsIn, type Lab } from './lab/lab.js';
import { seqPackets, startSeqStream } from './lab/seq-stream.js';
import { send, serve, type Server } from './lab/traffic.js';
import { tsharkRead } from './lab/tshark.js';

const cli = fileURLToPath(new URL('../dist/src/cli/main.js', import.meta.url));
const wirewatch = (args: string[]) => run(process.execPath, [cli, ...args], { check: false });

describe('wirewatch CLI', () => {
  it('explains itself, with an example', async () => {
    const help = await wirewatch(['capture-local', '--help']);
    expect(help.code).toBe(0);
    expect(help.stdout).toMatch(/--bytes-per-session/);
    expect(help.stdout).toMatch(/Example:\n\s+wirewatch capture-local/);
  });

  const capture = ['capture-local', '-i', 'lo', '--file', '/var/captures/x.cap'];
  it.each([
    ['a missing --file', ['capture-local', '-i', 'lo'], /--file/],
    [
      'a malformed filter',
      [...capture, '--filters', '[{"localPort":"80-"}]'],
      /^wirewatch: InvalidFilter: --filters \[0\]\.localPort: "80-"/,
    ],
    ['filters that are not JSON', [...capture, '--filters', '{'], /JSON array/],
    ['a negative byte count', [...capture, '--bytes-per-session', '-5'], /--bytes-per-session/],
    ['ring options without --continuous', [...capture, '--file-count', '3'], /need --continuous/],
  ])('answers %s with exit code 2 and a message naming it', async (_name, args, message) => {
    const { code, stderr } = await wirewatch(args);
    expect(code).toBe(2);
    expect(stderr).toMatch(message);
  });

  it.each([
    [
      'a time limit beyond 18000',
      [...capture, '--time-limit', '18001'],
      'InvalidCaptureLimit: --time-limit 18001 is above the maximum 18000',
    ],
    [
      'a ring of too many files',
      [...capture, '--continuous', '--file-count', '10001'],
      'InvalidCaptureLimit: --file-count 10001 is above the maximum 10000',
    ],
    [
      'a port given as a number',
      [...capture, '--filters', '[{"localPort":53}]'],
      'InvalidFilter: --filters [0].localPort: 53 is a number; write it as a string, "53"',
    ],
    [
      'a file outside the capture root',
      ['capture-local', '-i', 'lo', '--file', '/etc/x.cap'],
      'InvalidCapturePath: --file "/etc/x.cap" must lie under --capture-root /var/captures',
    ],
  ])('answers %s in its own options, exit code 2', async (_name, args, line) => {
    const { code, stderr } = await wirewatch(args);
    expect(stderr).toBe(`wirewatch: ${line}\n`);
    expect(code).toBe(2);
  });
});

describe.skipIf(!isRoot)('wirewatch capture-local on the lab (root)', () => {
  let lab: Lab;
  let root: string;
  let server: Server;

  beforeAll(async () => {
    lab = await createLab();
    root = await mkdtemp(path.join(tmpdir(), 'wirewatch-cli-'));
    server = await serve(lab, lab.b, [{ proto: 'udp', host: lab.b.ipv4, port: 5300 }]);
  });
  afterAll(async () => {
    try {
      await server?.close();
    } finally {
      await lab?.close();
      if (root) await rm(root, { recursive: true, force: true });
    }
  });

  /** Only the datagrams to the echo server on b. */
  const UDP_5300 = ['--filters', '[{"protocol":"UDP","remotePort":"5300"}]'];

  const udp = (sport: number, count: number) => ({
    proto: 'udp' as const,
    src: lab.a.ipv4,
    sport,
    dst: lab.b.ipv4,
    dport: 5300,
    count,
    size: 100,
  });

  function start(args: string[]) {
    const child = spawn(
      process.execPath,
      [
        cli,
        'capture-local',
        '-i',
        lab.a.iface,
        '--netns',
        lab.a.netns,
        '--capture-root',
        root,
        ...args,
      ],
      // Own process group, as a shell gives a foreground job; TMPDIR keeps tcpdump's scratch
      // folder inside the test's root even when the process is killed.
      { stdio: ['ignore', 'pipe', 'pipe'], detached: true, env: { ...process.env, TMPDIR: root } },
    );
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const started = new Promise<void>((resolve, reject) => {
      child.stderr.on('data', () => stderr.includes('capturing on') && resolve());
      child.once('exit', () => reject(new Error(`exited early: ${stderr}`)));
    });
    const exited = new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) =>
      child.once('exit', (code) => resolve({ code, stdout, stderr })),
    );
    return { child, started, exited };
  }

  it('captures until the time limit and prints the result as JSON', async () => {
    const file = path.join(root, 'time.cap');
    const c = start(['--time-limit', '2', '--file', file, '--json', ...UDP_5300]);
    await c.started;
    await send(lab, lab.a, [udp(40001, 5)]);
    const { code, stdout } = await c.exited;
    expect(code).toBe(0);
    const result = JSON.parse(stdout) as {
      stopReason: string;
      packets: number;
      files: string[];
      startedAt: string;
      stoppedAt: string;
      elapsedMs: number;
    };
    expect(result.stopReason).toBe('TimeExceeded');
    expect(Date.parse(result.stoppedAt) - Date.parse(result.startedAt)).toBe(2000);
    expect(result.elapsedMs).toBe(2000);
    expect(result.packets).toBe(10);
    expect(result.files).toEqual([file]);
    expect(await tsharkRead(file)).toHaveLength(10);
  });

  it('--time-limit is exact: the file holds what was stamped within it, the summary says 0:02', async () => {
    const file = path.join(root, 'exact.cap');
    const c = start(['--time-limit', '2', '--file', file, ...UDP_5300]);
    await c.started;
    // A steady stream across the deadline: the drain brings datagrams from after it.
    const stream = startSeqStream(lab.a, {
      src: lab.a.ipv4,
      sport: 40010,
      dst: lab.b.ipv4,
      dport: 5300,
    });
    let result: { code: number | null; stdout: string };
    try {
      result = await c.exited;
    } finally {
      await stream.stop();
    }
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(/^stopped: TimeExceeded$/m);
    expect(result.stdout).toMatch(/^time: {4}0:02$/m);
    const [, written, captured, late] =
      /^packets: (\d+) written, (\d+) captured \((\d+) stamped outside the time limit, left out\)/m.exec(
        result.stdout,
      ) ?? [];
    expect(Number(written)).toBeGreaterThan(20);
    expect(Number(late)).toBeGreaterThan(0);
    expect(Number(captured)).toBe(Number(written) + Number(late));
    const packets = await seqPackets(file);
    expect(packets).toHaveLength(Number(written));
    // Two seconds from the first datagram to the last, at most.
    expect(packets.at(-1)!.timeNs - packets[0]!.timeNs).toBeLessThanOrEqual(2_000_000_000n);
  });

  it('a continuous capture with an explicit --time-limit ends at that limit (the earliest limit wins)', async () => {
    const file = path.join(root, 'ring-limited.cap');
    // The ring's own session limit (default 86400 s) is far away; --time-limit 2 ends it.
    const c = start([
      '--continuous',
      '--file-count',
      '3',
      '--file-size',
      '20000',
      '--time-limit',
      '2',
      '--file',
      file,
      '--json',
      ...UDP_5300,
    ]);
    await c.started;
    await send(lab, lab.a, [udp(40005, 5)]);
    const { code, stdout } = await c.exited;
    expect(code).toBe(0);
    const result = JSON.parse(stdout) as {
      stopReason: string;
      packets: number;
      files: string[];
      elapsedMs: number;
    };
    expect(result.stopReason).toBe('TimeExceeded');
    expect(result.files).toEqual([path.join(root, 'ring-limited_1.cap')]);
    expect(result.packets).toBe(10);
    expect((await tsharkRead(result.files[0]!)).filter((p) => p.proto === 'udp')).toHaveLength(10);
  });

  it('stops cleanly on Ctrl-C with every packet written, even a packet sent just before', async () => {
    const file = path.join(root, 'sigint.cap');
    const c = start(['--file', file]);
    await c.started;
    await send(lab, lab.a, [udp(40002, 7)]);
    // Ctrl-C on a terminal signals the whole foreground process group, at once.
    process.kill(-c.child.pid!, 'SIGINT');
    const { code, stdout } = await c.exited;
    expect(code).toBe(0);
    expect(stdout).toMatch(/^stopped: ManualIntervention$/m);
    expect(stdout).toMatch(/^packets: 14 written, 14 captured, 0 dropped by kernel$/m);
    expect((await tsharkRead(file)).filter((p) => p.proto === 'udp')).toHaveLength(14);
  });

  it('loses nothing already captured when the wirewatch process is killed with SIGKILL', async () => {
    const file = path.join(root, 'killed.cap');
    const c = start(['--file', file]);
    await c.started;
    await send(lab, lab.a, [udp(40003, 6)]);
    // Give the kernel time to hand the packets to tcpdump, then kill wirewatch outright:
    // tcpdump gets SIGINT from the kernel (parent-death signal), flushes and exits.
    await new Promise((r) => setTimeout(r, 1500));
    c.child.kill('SIGKILL');
    await c.exited;
    for (let i = 0; i < 50; i++) {
      if ((await tcpdumpsIn(lab.a)).length === 0) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(await tcpdumpsIn(lab.a)).toEqual([]);
    expect((await tsharkRead(file)).filter((p) => p.proto === 'udp')).toHaveLength(12);
  });

  it('a missing interface: the same error and exit code as wirewatch up --interface', async () => {
    const local = await wirewatch([
      'capture-local',
      '-i',
      'nosuch0',
      '--capture-root',
      root,
      '--file',
      path.join(root, 'none.cap'),
    ]);
    const line =
      'wirewatch: InterfaceNotFound: --interface nosuch0: this host has no such interface (see: ip link)';
    expect(local.stderr).toBe(`${line}\n`);
    expect(local.code).toBe(2);
    const up = await wirewatch(['up', '--interface', 'nosuch0', '--data-dir', root]);
    expect(up.stderr.trimEnd().split('\n').at(-1)).toBe(line);
    expect(up.code).toBe(2);
    // In a namespace, the namespace is named.
    const inNetns = await wirewatch([
      'capture-local',
      '-i',
      'nosuch0',
      '--netns',
      lab.a.netns,
      '--capture-root',
      root,
      '--file',
      path.join(root, 'none.cap'),
    ]);
    expect(inNetns.stderr).toBe(
      `wirewatch: InterfaceNotFound: --interface nosuch0: network namespace ${lab.a.netns} has no such interface (see: ip -n ${lab.a.netns} link)\n`,
    );
    expect(inNetns.code).toBe(2);
  });
});
