/**
 * bench/upload: the agent's blob upload of a capture that writes at least 100 MB/s.
 *
 * The real agent (src/agent, in this process, as `wirewatch agent` runs it) captures on the
 * lab's interface while iperf3 sends TCP between the lab's two namespaces (paced at --mbit,
 * default 1000 Mbit/s of payload, whole packets captured), and streams the capture into a blob
 * of a real Azurite on loopback with a SAS minted by the server's own code
 * (StorageAccountClient.mintWriteSas: create + write on that one blob). The server's side of
 * the channel is a tiny one in this file (enroll, hello/welcome, start, stop, acks): no real
 * server, no database.
 *
 * Measured, all on this process's clock:
 *   - capture rate = bytes in the final file / (the session's startTime → tcpdump's last write,
 *     as the 100 ms samples of the file's size see it); the session's stopTime comes 2–5 s
 *     later (the runner's 1.2 s drain, tcpdump's exit, the fsync and the check of the file);
 *   - upload rate = bytes committed / (startTime → `uploaded` received);
 *   - their ratio, upload / capture;
 *   - the tail = the capture's end (stopTime, once tcpdump has exited and the file is
 *     repaired) → `uploaded` Completed received: the blob is committed and the agent's check
 *     passed (with a create+write SAS: the committed blocks add up to the file's length);
 *   - what the uploader owes, every 100 ms: the local file's size minus the bytes Azurite has
 *     received (its extent files, see extentBytes) — its maximum, and per half of the run.
 * Afterwards the blob is read back and must be byte-identical to the file (SHA-256 of both
 * whole); the agent deletes its file after the commit (spoolOnly), a hard link keeps it here.
 *
 * Needs root (network namespaces), tcpdump and iperf3. Run: `npm run build && npm run
 * bench:upload` (about 1.5 min); flags: --seconds N (capture length, default 25), --mbit N
 * (iperf3's pace, default 1000).
 */
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { link, mkdtemp, readFile, readdir, rm, stat } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { availableParallelism, loadavg, tmpdir } from 'node:os';
import path from 'node:path';
import { WebSocketServer, type WebSocket } from 'ws';
import { createAgent, type Agent } from '../src/agent/agent.js';
import { createJsonLineLog } from '../src/agent/agent-log.js';
import { startBlobUpload } from '../src/agent/blob-upload.js';
import { startAzurite, type Azurite } from '../src/blob/azurite.js';
import { captureBlobName } from '../src/blob/blob-names.js';
import { StorageAccountClient } from '../src/blob/storage-account.js';
import {
  CHANNEL_PATH,
  ENROLL_PATH,
  parseAgentMessage,
  type AgentMessage,
  type CaptureAssignment,
  type ServerMessage,
} from '../src/model/channel.js';
import { intFlag } from './flags.js';
import { run } from '../test/lab/exec.js';
import { createLab, type Lab } from '../test/lab/lab.js';

const MB = 1e6;
const SAMPLE_MS = 100;
/** What the tail may take, and what the uploader may owe at most, in seconds of capture. */
const TAIL_GOAL_S = 2;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

// ---- the server's side of the channel, as small as the agent allows ---------------------------

type Got = { readonly at: number; readonly message: AgentMessage };

interface TinyServer {
  readonly url: string;
  readonly enrollToken: string;
  send(message: ServerMessage): void;
  waitFor<T extends AgentMessage['type']>(
    type: T,
    match: (m: Extract<AgentMessage, { type: T }>) => boolean,
    timeoutMs: number,
  ): Promise<{ at: number; message: Extract<AgentMessage, { type: T }> }>;
  close(): Promise<void>;
}

/**
 * Enrolls one agent, answers `hello` with `welcome`, acknowledges `stopped` and `uploaded` as
 * the real server does once it has stored them, and records when each message arrived.
 */
async function startTinyServer(): Promise<TinyServer> {
  const enrollToken = randomBytes(16).toString('hex');
  const credential = randomBytes(16).toString('hex');
  const got: Got[] = [];
  let waiters: (() => void)[] = [];
  let current: WebSocket | undefined;
  const sockets = new Set<Socket>();
  const wss = new WebSocketServer({ noServer: true });
  const bearer = (req: IncomingMessage) =>
    /^Bearer (.+)$/.exec(req.headers.authorization ?? '')?.[1];
  const send = (socket: WebSocket, message: ServerMessage) => socket.send(JSON.stringify(message));

  const http: Server = createServer((req, res) => {
    if (req.method !== 'POST' || req.url !== ENROLL_PATH || bearer(req) !== enrollToken) {
      res.writeHead(404).end();
      return;
    }
    let body = '';
    req.setEncoding('utf8').on('data', (d: string) => (body += d));
    req.on('end', () => {
      const r = JSON.parse(body) as { subscriptionId: string; resourceGroup: string; name: string };
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(
        JSON.stringify({
          agentId: randomUUID(),
          vmId: `/subscriptions/${r.subscriptionId}/resourceGroups/${r.resourceGroup}/providers/Microsoft.Compute/virtualMachines/${r.name}`,
          credential,
        }),
      );
    });
  });
  http.on('connection', (s: Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  http.on('upgrade', (req: IncomingMessage, socket: Socket, head: Buffer) => {
    if (req.url !== CHANNEL_PATH || bearer(req) !== credential) {
      socket.end('HTTP/1.1 401 Unauthorized\r\nconnection: close\r\ncontent-length: 0\r\n\r\n');
      return;
    }
    wss.handleUpgrade(req, socket, head, (ws) => {
      current = ws;
      const pinger = setInterval(() => ws.ping(), 15_000);
      ws.on('close', () => clearInterval(pinger));
      ws.on('message', (data: Buffer, isBinary) => {
        const message = isBinary ? undefined : parseAgentMessage(data.toString('utf8'));
        if (message === undefined) return;
        got.push({ at: Date.now(), message });
        if (message.type === 'hello') {
          send(ws, {
            type: 'welcome',
            agentId: randomUUID(),
            serverTime: new Date().toISOString(),
          });
        }
        if (message.type === 'stopped' || message.type === 'uploaded') {
          send(ws, { type: 'ack', sessionId: message.sessionId });
        }
        const list = waiters;
        waiters = [];
        for (const w of list) w();
      });
    });
  });
  await new Promise<void>((resolve, reject) => {
    http.once('error', reject);
    http.listen(0, '127.0.0.1', () => resolve());
  });
  const port = (http.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`,
    enrollToken,
    send(message) {
      if (current === undefined) throw new Error('the agent is not connected');
      send(current, message);
    },
    waitFor(type, match, timeoutMs) {
      type Found = Extract<AgentMessage, { type: typeof type }>;
      return new Promise((resolve, reject) => {
        const check = () => {
          const hit = got.find((g) => g.message.type === type && match(g.message as Found));
          if (hit === undefined) return false;
          resolve({ at: hit.at, message: hit.message as Found });
          return true;
        };
        if (check()) return;
        const timer = setTimeout(() => {
          waiters = waiters.filter((w) => w !== waiter);
          reject(new Error(`no ${type} message within ${timeoutMs} ms`));
        }, timeoutMs);
        const waiter = () => {
          if (check()) clearTimeout(timer);
          else waiters.push(waiter);
        };
        waiters.push(waiter);
      });
    },
    async close() {
      for (const ws of wss.clients) ws.terminate();
      for (const s of sockets) s.destroy();
      wss.close();
      await new Promise<void>((resolve) => http.close(() => resolve()));
    },
  };
}

// ---- measuring ---------------------------------------------------------------------------------

interface Sample {
  readonly at: number;
  readonly fileBytes: number;
  readonly blockBytes: number;
}

/**
 * Bytes Azurite has written into its extent files (where it keeps every block it receives; a
 * commit copies nothing). Asking Azurite for the block list instead costs it and this process
 * (whose event loop is the agent's) 5–10 ms of CPU per call at a few hundred blocks, ten times
 * a second: enough to slow down what is measured. The extents also hold the part of a block
 * Azurite is still receiving, so "owed" below errs low by at most the blocks in flight (one
 * 4 MiB block per concurrent stage).
 */
async function extentBytes(azuriteDir: string): Promise<number> {
  const extents = path.join(azuriteDir, '__blobstorage__');
  let sum = 0;
  let names: string[];
  try {
    names = await readdir(extents);
  } catch {
    return 0; // nothing written yet
  }
  for (const name of names) {
    try {
      sum += (await stat(path.join(extents, name))).size;
    } catch {
      // removed meanwhile
    }
  }
  return sum;
}

async function sha256(stream: NodeJS.ReadableStream): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of stream) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

// ---- where the CPU goes ------------------------------------------------------------------------

const TICKS_PER_SECOND = 100; // USER_HZ on Linux

type CpuGroup =
  'agent + bench (this process)' | 'tcpdump' | 'Azurite' | 'iperf3' | 'rest of the machine';

/** utime + stime of one process (all its threads), in ticks; undefined once it is gone. */
async function ticksOf(
  pid: number,
): Promise<{ ticks: number; ppid: number; comm: string } | undefined> {
  try {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
    const close = stat.lastIndexOf(')');
    const comm = stat.slice(stat.indexOf('(') + 1, close);
    const fields = stat.slice(close + 2).split(' ');
    return { ticks: Number(fields[11]) + Number(fields[12]), ppid: Number(fields[1]), comm };
  } catch {
    return undefined;
  }
}

/** Ticks of the whole machine (every CPU), from /proc/stat. */
async function machineTicks(): Promise<{ processes: number; interrupts: number; iowait: number }> {
  const line = (await readFile('/proc/stat', 'utf8')).split('\n')[0]!;
  const [, user, nice, system, , iowait, irq, softirq, steal] = line
    .trim()
    .split(/\s+/)
    .map(Number);
  return {
    processes: user! + nice! + system! + steal!,
    interrupts: irq! + softirq!,
    iowait: iowait!,
  };
}

/**
 * CPU-seconds per group between start() and stop(): this process, its descendants (tcpdump,
 * Azurite, the iperf3 client) and whatever runs in the lab's namespaces (the iperf3 server),
 * each process's last sample counting (taken every 100 ms, so one that exits loses ≤ 100 ms),
 * and the rest of the machine (other work, interrupts) as the difference to /proc/stat.
 */
class CpuMeter {
  readonly #netns: readonly string[];
  readonly #first = new Map<number, number>();
  readonly #last = new Map<number, { ticks: number; group: CpuGroup }>();
  #pids = new Map<number, CpuGroup>();
  #machine0 = { processes: 0, interrupts: 0, iowait: 0 };
  #machine1 = { processes: 0, interrupts: 0, iowait: 0 };
  #t0 = 0;
  #t1 = 0;
  #lastScan = 0;

  constructor(netns: readonly string[]) {
    this.#netns = netns;
  }

  async #scan(): Promise<void> {
    const all = new Map<number, { ppid: number; comm: string }>();
    for (const name of await readdir('/proc')) {
      if (!/^\d+$/.test(name)) continue;
      const t = await ticksOf(Number(name));
      if (t !== undefined) all.set(Number(name), t);
    }
    const inLab = new Set<number>();
    for (const ns of this.#netns) {
      const { stdout } = await run('ip', ['netns', 'pids', ns], { check: false });
      for (const pid of stdout.split(/\s+/).filter(Boolean)) inLab.add(Number(pid));
    }
    const ours = (pid: number): boolean => {
      for (let p = pid, hops = 0; p > 1 && hops < 20; hops++) {
        if (p === process.pid) return true;
        p = all.get(p)?.ppid ?? 0;
      }
      return false;
    };
    const pids = new Map<number, CpuGroup>();
    for (const [pid, { comm }] of all) {
      if (pid === process.pid) continue; // counted with process.cpuUsage()
      if (!ours(pid) && !inLab.has(pid)) continue;
      const group: CpuGroup =
        comm === 'tcpdump'
          ? 'tcpdump'
          : comm === 'iperf3'
            ? 'iperf3'
            : comm === 'node' || comm.startsWith('azurite')
              ? 'Azurite'
              : 'agent + bench (this process)';
      pids.set(pid, group);
    }
    this.#pids = pids;
  }

  #self0 = process.cpuUsage();
  #selfSeconds = 0;
  #started = false;

  async sample(): Promise<void> {
    if (Date.now() - this.#lastScan >= 1000) {
      this.#lastScan = Date.now();
      await this.#scan();
    }
    for (const [pid, group] of this.#pids) {
      const t = await ticksOf(pid);
      if (t === undefined) continue;
      // A process first seen after start() started after it (every one before was seen then).
      if (!this.#first.has(pid)) this.#first.set(pid, this.#started ? 0 : t.ticks);
      this.#last.set(pid, { ticks: t.ticks, group });
    }
  }

  async start(): Promise<void> {
    this.#lastScan = 0;
    await this.sample();
    this.#started = true;
    this.#self0 = process.cpuUsage();
    this.#machine0 = await machineTicks();
    this.#t0 = Date.now();
  }

  async stop(): Promise<void> {
    await this.sample();
    const self = process.cpuUsage(this.#self0);
    this.#selfSeconds = (self.user + self.system) / 1e6;
    this.#machine1 = await machineTicks();
    this.#t1 = Date.now();
  }

  /** CPU-seconds per group, and the wall time they were measured over. */
  result(): { seconds: number; groups: Map<CpuGroup, number>; iowait: number } {
    const groups = new Map<CpuGroup, number>();
    const add = (g: CpuGroup, s: number) => groups.set(g, (groups.get(g) ?? 0) + s);
    add('agent + bench (this process)', this.#selfSeconds);
    for (const [pid, { ticks, group }] of this.#last) {
      add(group, (ticks - (this.#first.get(pid) ?? ticks)) / TICKS_PER_SECOND);
    }
    const ours = [...groups.values()].reduce((a, b) => a + b, 0);
    const m0 = this.#machine0;
    const m1 = this.#machine1;
    // Interrupt and softirq time (most of the lab's packet handling) lands in the processes'
    // times or in /proc/stat's own columns as the ticks fall, so it only counts in this rest;
    // tick sampling also makes the rest err by a few CPU-seconds either way.
    add(
      'rest of the machine',
      (m1.processes + m1.interrupts - m0.processes - m0.interrupts) / TICKS_PER_SECOND - ours,
    );
    return {
      seconds: (this.#t1 - this.#t0) / 1000,
      groups,
      iowait: (m1.iowait - m0.iowait) / TICKS_PER_SECOND,
    };
  }
}

const mbps = (bytes: number, ms: number) => bytes / MB / (ms / 1000);

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) {
    console.error('bench/upload needs root (network namespaces, tcpdump)');
    process.exitCode = 2;
    return;
  }
  const seconds = intFlag('seconds', 25);
  const mbit = intFlag('mbit', 1000);
  // One capture file holds at most 4 GiB (totalBytesPerSession's maximum); a cut file is no bench.
  if (((seconds + 2) * mbit * 1e6) / 8 > 0.95 * 4294967295) {
    throw new Error('--seconds × --mbit would fill more than the 4 GiB a capture may hold');
  }
  await run('iperf3', ['--version']);

  const dir = await mkdtemp(path.join(tmpdir(), 'wirewatch-bench-upload-'));
  const cleanUps: (() => Promise<unknown>)[] = [];
  const cleanUp = async () => {
    for (const fn of cleanUps.splice(0).reverse()) await fn().catch(() => undefined);
    await rm(dir, { recursive: true, force: true });
  };
  // Ctrl-C or a timeout must not leave the lab's namespaces or Azurite behind.
  const abort = () => void cleanUp().then(() => process.exit(130));
  process.once('SIGINT', abort);
  process.once('SIGTERM', abort);

  try {
    const lab: Lab = await createLab();
    cleanUps.push(() => lab.close());
    const azuriteDir = path.join(dir, 'azurite');
    const azurite: Azurite = await startAzurite({ dataDir: azuriteDir });
    cleanUps.push(() => azurite.close());
    // The server's storage code: container, blob name, SAS.
    const account = new StorageAccountClient(azurite.connectionString);
    await account.ensureContainer();

    const server = await startTinyServer();
    cleanUps.push(() => server.close());
    const logLines: { time: number; level: string; msg: string; line: string }[] = [];
    const subscriptionId = randomUUID();
    const agent: Agent = await createAgent({
      serverUrl: server.url,
      enrollToken: server.enrollToken,
      subscriptionId,
      resourceGroup: 'bench',
      name: 'lab-a',
      location: 'westeurope',
      interface: lab.a.iface,
      netns: lab.a.netns,
      dataDir: path.join(dir, 'agent'),
      captureRoot: path.join(dir, 'captures'),
      log: createJsonLineLog(
        (line) => {
          const { time, level, msg } = JSON.parse(line) as {
            time: string;
            level: string;
            msg: string;
          };
          logLines.push({ time: Date.parse(time), level, msg, line: line.trim() });
        },
        { minLevel: 'info' },
      ),
    });
    cleanUps.push(() => agent.close());
    await server.waitFor('hello', () => true, 10_000);

    // A daemon in b's namespace; lab.close() kills what is left in the namespaces.
    await run('ip', ['netns', 'exec', lab.b.netns, 'iperf3', '-s', '-D', '-B', lab.b.ipv4]);
    await sleep(300);

    const sessionId = randomUUID();
    const createdAt = new Date();
    const blobName = captureBlobName({
      subscriptionId,
      resourceGroup: 'bench',
      vmName: 'lab-a',
      createdAt,
    });
    const expiresOn = new Date(Date.now() + 3600_000);
    const assignment: CaptureAssignment = {
      sessionId,
      resourceId: `/subscriptions/${subscriptionId}/resourceGroups/NetworkWatcherRG/providers/Microsoft.Network/networkWatchers/NetworkWatcher_westeurope/packetCaptures/bench-upload`,
      filePath: path.join(dir, 'captures', `${sessionId}.cap`),
      filters: [],
      bytesToCapturePerPacket: 0,
      totalBytesPerSession: 4294967295,
      timeLimitInSeconds: seconds + 60,
      continuousCapture: false,
      createdAt: createdAt.toISOString(),
      blob: {
        url: account.blobUrl(blobName),
        sas: account.mintWriteSas(blobName, expiresOn),
        expiresAt: expiresOn.toISOString(),
        spoolOnly: true,
      },
    };

    console.log(
      `bench/upload: ${seconds} s of iperf3 TCP at ${mbit} Mbit/s between the lab's namespaces, ` +
        `whole packets, captured by the agent and streamed to Azurite on loopback ` +
        `(load average before: ${loadavg()
          .map((l) => l.toFixed(2))
          .join(' ')})`,
    );
    server.send({ type: 'start', assignment });
    const started = await server.waitFor('started', (m) => m.sessionId === sessionId, 15_000);
    // The agent removes its file once the blob is committed; this second name keeps it.
    const kept = path.join(dir, 'kept.cap');
    await link(assignment.filePath, kept);

    // Traffic outlasts the capture: the stop comes while packets still flow.
    const cpu = new CpuMeter([lab.a.netns, lab.b.netns]);
    await cpu.start();
    const traffic = run(
      'ip',
      [
        'netns',
        'exec',
        lab.a.netns,
        'iperf3',
        '-c',
        lab.b.ipv4,
        '-B',
        lab.a.ipv4,
        '-t',
        String(seconds + 5),
        '-b',
        `${mbit}M`,
        '-J',
      ],
      { timeoutMs: (seconds + 60) * 1000 },
    );

    const samples: Sample[] = [];
    const extents0 = await extentBytes(azuriteDir);
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        const tick = Date.now();
        const blocks = (await extentBytes(azuriteDir)) - extents0;
        const fileBytes = (await stat(kept)).size;
        samples.push({ at: Date.now(), fileBytes, blockBytes: blocks });
        await cpu.sample();
        await sleep(Math.max(0, tick + SAMPLE_MS - Date.now()));
      }
    })();

    const startTime = Date.parse(started.message.startTime);
    await sleep(Math.max(0, startTime + seconds * 1000 - Date.now()));
    const stopAsked = Date.now();
    server.send({ type: 'stop', sessionId, reason: 'ManualIntervention' });
    const stopped = await server.waitFor('stopped', (m) => m.sessionId === sessionId, 60_000);
    const uploaded = await server.waitFor('uploaded', (m) => m.sessionId === sessionId, 300_000);
    sampling = false;
    await sampler;
    await cpu.stop();
    const iperf = JSON.parse((await traffic).stdout) as {
      end: { sum_sent: { bytes: number; seconds: number } };
    };

    // ---- checks ----
    const upload = uploaded.message.upload;
    if (upload.state !== 'Completed') {
      throw new Error(`the upload ended ${upload.state}: ${JSON.stringify(upload.error)}`);
    }
    const fileBytes = (await stat(kept)).size;
    const committed = upload.blobs[0]?.size ?? 0;
    const blobSize = await account.blobSize(blobName);
    const [fileHash, blobHash] = await Promise.all([
      sha256(createReadStream(kept)),
      account.download(blobName).then((d) => sha256(d.stream)),
    ]);
    const identical = committed === fileBytes && blobSize === fileBytes && fileHash === blobHash;
    const spoolGone = await stat(assignment.filePath).then(
      () => false,
      () => true,
    );

    // The peer: the same uploader on the same final file, alone (no capture, no traffic).
    const aloneName = `${blobName.replace(/\.cap$/, '')}-alone.cap`;
    const aloneStart = Date.now();
    const alone = await startBlobUpload({
      file: kept,
      url: account.blobUrl(aloneName),
      sas: account.mintWriteSas(aloneName, expiresOn),
      expiresAt: expiresOn,
    }).outcome;
    const aloneMs = Date.now() - aloneStart;
    if (alone.state !== 'Completed') throw new Error(`the lone upload ended ${alone.state}`);

    // ---- figures ----
    const stopTime = Date.parse(stopped.message.stopTime);
    // tcpdump's last write: the first sample that saw the final size.
    const lastWrite = samples.find((x) => x.fileBytes === fileBytes)?.at ?? stopTime;
    const writingMs = lastWrite - startTime;
    const sessionMs = stopTime - startTime;
    const uploadMs = uploaded.at - startTime;
    const captureRate = mbps(fileBytes, writingMs);
    const uploadRate = mbps(committed, uploadMs);
    const ratio = uploadRate / captureRate;
    const tailMs = uploaded.at - stopTime;
    const owed = samples.map((x) => ({ at: x.at, bytes: x.fileBytes - x.blockBytes }));
    const maxOwed = (list: typeof owed) => Math.max(0, ...list.map((o) => o.bytes));
    const half = startTime + writingMs / 2;
    const owedFirst = maxOwed(owed.filter((o) => o.at < half));
    const owedSecond = maxOwed(owed.filter((o) => o.at >= half && o.at <= lastWrite));
    // The trend while tcpdump writes (least squares, the first 2 s left out): an uploader
    // slower than the capture owes more every second, one that keeps up stays level.
    const writing = owed.filter((o) => o.at >= startTime + 2000 && o.at <= lastWrite);
    const meanT = writing.reduce((a, o) => a + o.at, 0) / writing.length;
    const meanB = writing.reduce((a, o) => a + o.bytes, 0) / writing.length;
    const slope =
      writing.reduce((a, o) => a + (o.at - meanT) * (o.bytes - meanB), 0) /
      writing.reduce((a, o) => a + (o.at - meanT) ** 2, 0); // bytes per ms
    const trend = (slope * 1000) / MB; // MB/s
    const owedAll = maxOwed(owed);
    const owedGoal = TAIL_GOAL_S * captureRate * MB;
    const atStop = owed.filter((o) => o.at <= stopTime).at(-1)?.bytes ?? 0;
    const gaps = samples.slice(1).map((x, i) => x.at - samples[i]!.at);
    const ratioGoal = writingMs / (sessionMs + TAIL_GOAL_S * 1000);
    // The tail, step by step: the last bytes staged (the sampler's first look at extents as
    // long as the file), the commit (the agent's log line), the report.
    const allStaged = samples.find((x) => x.at >= stopTime && x.blockBytes >= fileBytes)?.at;
    const committedAt = logLines.find((l) => l.msg === 'blob committed')?.time;
    const owedAtStop = `owed at stopTime ${(atStop / MB).toFixed(1)} MB`;
    const toUploaded =
      committedAt === undefined
        ? ''
        : `"blob committed" logged → \`uploaded\` received ${uploaded.at - committedAt} ms`;
    const tailSteps =
      allStaged === undefined || committedAt === undefined
        ? `${owedAtStop}; no ${SAMPLE_MS} ms sample fell between the last bytes and the commit; ${toUploaded}`
        : `${owedAtStop}; stopTime → every byte received by Azurite ≈ ${allStaged - stopTime} ms, ` +
          `→ "blob committed" logged ${committedAt - allStaged} ms (±${SAMPLE_MS} ms), ${toUploaded}`;

    console.log(
      `\niperf3 sent ${(iperf.end.sum_sent.bytes / MB).toFixed(0)} MB in ${iperf.end.sum_sent.seconds.toFixed(1)} s ` +
        `(${mbps(iperf.end.sum_sent.bytes, iperf.end.sum_sent.seconds * 1000).toFixed(1)} MB/s of payload); ` +
        `kernel drops ${stopped.message.progress.kernelDrops}`,
    );
    console.log(
      `capture: startTime → last write ${(writingMs / 1000).toFixed(2)} s, → stopTime ` +
        `${(sessionMs / 1000).toFixed(2)} s (stop asked → \`stopped\` received ${stopped.at - stopAsked} ms: ` +
        `the runner's 1.2 s drain, tcpdump's exit, fsync and the check of the file)`,
    );
    console.log(
      `spool samples: ${samples.length}, every ${SAMPLE_MS} ms (largest gap ${Math.max(...gaps)} ms)`,
    );
    console.log(`tail: ${tailSteps}`);
    // The owed bytes' shape: bounded, or growing with the capture's length.
    const perWindow: string[] = [];
    for (let t = startTime; t < uploaded.at; t += 2000) {
      perWindow.push((maxOwed(owed.filter((o) => o.at >= t && o.at < t + 2000)) / MB).toFixed(0));
    }
    console.log(`owed, largest in each 2 s from startTime, MB: ${perWindow.join(' ')}`);
    const row = (metric: string, value: string, goal: string, met: string) =>
      console.log(`${metric.padEnd(46)} ${value.padStart(17)}  ${goal.padEnd(32)} ${met}`);
    const yes = (ok: boolean) => (ok ? 'yes' : 'NO');
    console.log('');
    row('metric', 'value', 'goal', 'met?');
    row('bytes captured (final file)', `${(fileBytes / MB).toFixed(1)} MB`, '', '');
    row(
      'capture rate (file / startTime→last write)',
      `${captureRate.toFixed(1)} MB/s`,
      '≥ 100 MB/s',
      yes(captureRate >= 100),
    );
    row('upload rate (committed / startTime→uploaded)', `${uploadRate.toFixed(1)} MB/s`, '', '');
    row(
      'ratio upload / capture',
      ratio.toFixed(3),
      `≥ ${ratioGoal.toFixed(3)} (what a 2 s tail gives)`,
      yes(ratio >= ratioGoal),
    );
    row(
      'tail: stopTime → `uploaded` Completed',
      `${tailMs} ms`,
      `≤ ${TAIL_GOAL_S * 1000} ms`,
      yes(tailMs <= TAIL_GOAL_S * 1000),
    );
    row(
      'max owed (file − bytes Azurite has received)',
      `${(owedAll / MB).toFixed(1)} MB`,
      `≤ ${TAIL_GOAL_S} s of capture (${(owedGoal / MB).toFixed(0)} MB)`,
      yes(owedAll <= owedGoal),
    );
    row(
      '  … largest in 1st / 2nd half of the writing',
      `${(owedFirst / MB).toFixed(1)} / ${(owedSecond / MB).toFixed(1)} MB`,
      '(info)',
      '',
    );
    row(
      '  … trend while writing (least squares)',
      `${trend >= 0 ? '+' : ''}${trend.toFixed(2)} MB/s`,
      `(info; ${((trend / captureRate) * 100).toFixed(1)} % of the capture rate)`,
      '',
    );
    row('  … owed at stopTime', `${(atStop / MB).toFixed(1)} MB`, '', '');
    row(
      'blob = file (length, SHA-256 of every byte)',
      identical ? 'identical' : 'DIFFERENT',
      'identical',
      yes(identical),
    );
    row(
      'local file removed after the commit',
      spoolGone ? 'yes' : 'no',
      'yes (spoolOnly)',
      yes(spoolGone),
    );
    row(
      'uploader alone, same file, no capture',
      `${mbps(alone.size, aloneMs).toFixed(1)} MB/s`,
      '(info: the peer)',
      '',
    );
    row(
      'upload rate / uploader alone',
      (uploadRate / mbps(alone.size, aloneMs)).toFixed(3),
      '(info)',
      '',
    );

    const { seconds: cpuWall, groups, iowait } = cpu.result();
    console.log(
      `\nCPU from the traffic's start to \`uploaded\` (${cpuWall.toFixed(1)} s; ${availableParallelism()} cores):`,
    );
    for (const [group, cpuSeconds] of [...groups].sort((x, y) => y[1] - x[1])) {
      console.log(
        `  ${group.padEnd(29)} ${cpuSeconds.toFixed(1).padStart(6)} CPU-s  ${(cpuSeconds / cpuWall).toFixed(2)} cores`,
      );
    }
    console.log(`  (and idle waiting for I/O: ${(iowait / cpuWall).toFixed(2)} cores)`);
    console.log(
      `load average after: ${loadavg()
        .map((l) => l.toFixed(2))
        .join(' ')}`,
    );
    const warnings = logLines.filter((l) => l.level === 'warn' || l.level === 'error');
    if (warnings.length > 0) {
      console.log(`\nagent warnings (${warnings.length}):`);
      for (const { line } of warnings.slice(0, 20)) console.log(`  ${line}`);
    }
    if (!identical) process.exitCode = 1;
  } finally {
    await cleanUp();
  }
}

await main();
