/**
 * bench/capture: wirewatch's capture runner against bare `tcpdump -w FILE`, both capturing the
 * same traffic on the same lab interface at the same time, so the machine's noise hits both.
 *
 *   1. UDP, 64-byte datagrams at full rate (iperf3 -u -b 0 -l 64) for 5 s, whole packets;
 *   2. TCP bulk (iperf3) for 5 s, snaplen 96.
 *
 * Each runs twice: with no live viewer (the usual case: the runner must cost what it always
 * did), and with a live viewer watching (the runner flushes tcpdump's output every 200 ms with
 * SIGUSR2 so a quiet capture's packets reach the viewer at once).
 *
 * Prints packets captured, kernel drops and CPU-seconds of each side and the ratios
 * wirewatch / tcpdump. Needs root (network namespaces). Run: `npm run bench:capture`.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { startCapture } from '../src/capture/runner.js';
import { readPcapFile } from '../src/pcap/reader.js';
import { run } from '../test/lab/exec.js';
import { createLab, type Lab } from '../test/lab/lab.js';

const ticksPerSecond = 100; // USER_HZ on Linux

interface Side {
  readonly name: string;
  packetsInFile: number;
  kernelDrops: number;
  cpuSeconds: number;
}

/** utime + stime of a process and, recursively, its live children, in seconds. */
async function cpuSeconds(pid: number): Promise<number> {
  let total = 0;
  try {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    total += (Number(fields[11]) + Number(fields[12])) / ticksPerSecond;
    for (const task of await readdir(`/proc/${pid}/task`)) {
      const children = await readFile(`/proc/${pid}/task/${task}/children`, 'utf8');
      for (const child of children.trim().split(/\s+/).filter(Boolean)) {
        total += await cpuSeconds(Number(child));
      }
    }
  } catch {
    // the process ended; nothing more to count
  }
  return total;
}

function waitFor(child: ChildProcess, stream: 'stdout' | 'stderr', text: string): Promise<string> {
  return new Promise((resolve, reject) => {
    let out = '';
    child[stream]!.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes(text)) resolve(out);
    });
    child.once('exit', (code) => reject(new Error(`exited ${code} before "${text}": ${out}`)));
  });
}

function collect(child: ChildProcess, stream: 'stdout' | 'stderr'): () => string {
  let out = '';
  child[stream]!.on('data', (d: Buffer) => (out += d.toString()));
  return () => out;
}

const exited = (child: ChildProcess) =>
  new Promise<void>((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) resolve();
    else child.once('exit', () => resolve());
  });

async function countPackets(file: string): Promise<number> {
  let n = 0;
  for await (const record of readPcapFile(file)) {
    void record;
    n++;
  }
  return n;
}

async function scenario(
  lab: Lab,
  dir: string,
  name: string,
  snaplen: number,
  iperfArgs: string[],
  watched = false,
): Promise<[Side, Side]> {
  const { a, b } = lab;
  const server = spawn(
    'ip',
    ['netns', 'exec', b.netns, 'iperf3', '-s', '-1', '--forceflush', '-B', b.ipv4],
    {
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  await waitFor(server, 'stdout', 'Server listening');

  const bareFile = path.join(dir, `${name}-bare.pcap`);
  const bare = spawn(
    'ip',
    [
      'netns',
      'exec',
      a.netns,
      'tcpdump',
      '-i',
      a.iface,
      '-n',
      '-s',
      String(snaplen),
      '-w',
      bareFile,
    ],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  const bareErr = collect(bare, 'stderr');
  await waitFor(bare, 'stderr', 'listening on');

  const oursFile = path.join(dir, `${name}-wirewatch.pcap`);
  // The runner runs in this process, as the agent will run it; its tcpdump child is counted too.
  let oursChild: ChildProcess | undefined;
  const session = await startCapture({
    interface: a.iface,
    netns: a.netns,
    limits: { bytesToCapturePerPacket: snaplen, timeLimitInSeconds: 120 },
    captureRoot: dir,
    filePath: oursFile,
    spawn: (command, args, options) => (oursChild = spawn(command, args, options)),
  });
  // A live viewer holds the capture flushed, as the agent does while a stream runs.
  const unwatch = watched ? session.watch() : undefined;

  const bareCpu0 = await cpuSeconds(bare.pid!);
  const childCpu0 = await cpuSeconds(oursChild!.pid!);
  const nodeCpu0 = process.cpuUsage();
  await lab.exec(a, 'iperf3', ['-c', b.ipv4, '-B', a.ipv4, '-t', '5', ...iperfArgs]);
  // Let both drain: the kernel hands packets to tcpdump a block at a time, within 1 s.
  await new Promise((r) => setTimeout(r, 1500));
  const bareCpu = (await cpuSeconds(bare.pid!)) - bareCpu0;
  const childCpu = (await cpuSeconds(oursChild!.pid!)) - childCpu0;
  bare.kill('SIGINT');
  const seconds = (u: NodeJS.CpuUsage) => (u.user + u.system) / 1e6;
  const nodeDuring = seconds(process.cpuUsage(nodeCpu0));
  // This process's CPU runs until the result is in: the final pass that checks every record
  // header and cuts the file to the byte limit counts too.
  unwatch?.();
  const nodeCpu1 = process.cpuUsage();
  const result = await session.stop();
  const nodeFinish = seconds(process.cpuUsage(nodeCpu1));
  const oursCpu = childCpu + nodeDuring + nodeFinish;
  console.log(
    `  ${name}: wirewatch CPU-s = tcpdump ${childCpu.toFixed(2)} + node while capturing ${nodeDuring.toFixed(2)} + final check of the file ${nodeFinish.toFixed(2)}; while capturing / bare tcpdump = ${bareCpu === 0 ? 'n/a' : ((childCpu + nodeDuring) / bareCpu).toFixed(3)}`,
  );
  // A file that holds fewer packets than its tcpdump counted lost them after capture (a torn
  // record cut by the repair); kernel drops are load, counted by tcpdump before it saw them.
  console.log(
    `  ${name}: wirewatch's tcpdump counted ${result.tcpdumpCaptured}, the file holds ${result.packets}, kernel drops ${result.kernelDrops}${result.error === undefined ? '' : `; error: ${result.error.message}`}`,
  );
  await Promise.all([exited(bare), exited(server)]);

  const bareDrops = Number(/(\d+) packets? dropped by kernel/.exec(bareErr())?.[1] ?? NaN);
  const sides: [Side, Side] = [
    {
      name: 'tcpdump -w',
      packetsInFile: await countPackets(bareFile),
      kernelDrops: bareDrops,
      cpuSeconds: bareCpu,
    },
    {
      name: 'wirewatch',
      packetsInFile: await countPackets(oursFile),
      kernelDrops: result.kernelDrops,
      cpuSeconds: oursCpu,
    },
  ];
  await rm(bareFile, { force: true });
  await rm(oursFile, { force: true });
  return sides;
}

function report(title: string, [bare, ours]: [Side, Side]): void {
  const ratio = (x: number, y: number) => (y === 0 ? 'n/a' : (x / y).toFixed(3));
  console.log(`\n${title}`);
  console.log('side         packets   kernel drops  CPU-s');
  for (const s of [bare, ours]) {
    console.log(
      `${s.name.padEnd(12)} ${String(s.packetsInFile).padStart(9)} ${String(s.kernelDrops).padStart(13)}  ${s.cpuSeconds.toFixed(2)}`,
    );
  }
  console.log(
    `captured ratio (wirewatch/tcpdump): ${ratio(ours.packetsInFile, bare.packetsInFile)}  (goal >= 0.98)`,
  );
  console.log(
    `CPU ratio (wirewatch/tcpdump):      ${ratio(ours.cpuSeconds, bare.cpuSeconds)}  (goal <= 1.25)`,
  );
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) {
    console.error('bench/capture needs root (network namespaces, tcpdump)');
    process.exitCode = 2;
    return;
  }
  await run('iperf3', ['--version']);
  const lab = await createLab();
  const dir = await mkdtemp(path.join(tmpdir(), 'wirewatch-bench-'));
  // Ctrl-C or a timeout must not leave the lab's namespaces behind.
  const abort = () => {
    void Promise.allSettled([lab.close(), rm(dir, { recursive: true, force: true })]).then(() =>
      process.exit(130),
    );
  };
  process.once('SIGINT', abort);
  process.once('SIGTERM', abort);
  try {
    report(
      'UDP 64-byte datagrams at full rate, 5 s, whole packets',
      await scenario(lab, dir, 'udp', 0, ['-u', '-b', '0', '-l', '64']),
    );
    report('TCP bulk (iperf3), 5 s, snaplen 96', await scenario(lab, dir, 'tcp', 96, []));
    report(
      'UDP 64-byte datagrams at full rate, 5 s, whole packets — a live viewer watching',
      await scenario(lab, dir, 'udp-watched', 0, ['-u', '-b', '0', '-l', '64'], true),
    );
    report(
      'TCP bulk (iperf3), 5 s, snaplen 96 — a live viewer watching',
      await scenario(lab, dir, 'tcp-watched', 96, [], true),
    );
  } finally {
    await lab.close();
    await rm(dir, { recursive: true, force: true });
  }
}

await main();
