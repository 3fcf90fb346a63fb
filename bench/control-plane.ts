/**
 * bench/control-plane: one `wirewatch server` process (SQLite, plain HTTP on loopback), 1,000
 * SYNTHETIC agents and 10,000 capture sessions.
 *
 * The agents (test/lab/synthetic-agent.ts) enroll and speak the real channel protocol over real
 * WebSockets, but their capture engine is made up: they capture nothing and report invented
 * packet counts, every 2 s per session (the real agent's default). They run in a child process
 * of this bench, so the process that times requests is not also busy sending their progress.
 *
 *   1. 1,000 agents enroll and connect (one VM each, one subscription, one location);
 *   2. 10,000 ARM PUTs of packetCaptures (10 per VM), 48 in flight: create throughput, and
 *      create→Running per session (see below);
 *   3. with all 10,000 Running and reporting progress: POST …/queryStatus, GET /healthz of the
 *      same server process (a bare Fastify route: no auth, no store — the ratio's base) and
 *      GET /healthz of a bare Fastify process, 16 in flight, in interleaved blocks, for at least
 *      2,000 requests each and 25 s (two rounds of the server's 10 s deadline sweep): p50/p99
 *      and the ratios;
 *   4. the server's RSS (VmRSS, and the peak VmHWM) from /proc.
 *
 * create→Running: from the moment this bench sends the PUT to the create operation's `endTime`
 * (GET …/operations/{id}), which the server stamps when it handles the agent's `started` message
 * and marks the session Running. Both are this machine's wall clock (ms).
 *
 * Diagnostics, not goals: the server's event loop (utilisation, lag, GC pauses) per phase, from a
 * module the bench loads into it with `node --import` (the server's code is unchanged), and how
 * busy the machine was, split into this bench's processes and everything else.
 *
 * Run: `npm run build && npm run bench:control-plane` (full scale, about 1.5 min), or scaled
 * down: `npm run bench:control-plane -- --agents 100 --sessions-per-agent 10`. Other flags:
 * --progress-ms, --create-concurrency, --status-requests, --status-concurrency,
 * --status-seconds, --block-size, --agent-processes, --log-level, --keep, --cpu-prof.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { openSync, closeSync, existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { Agent as HttpAgent, request as httpRequest, type IncomingHttpHeaders } from 'node:http';
import { availableParallelism, tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { API, capturePath, vmId } from '../test/lab/control-plane.js';
import { SyntheticAgent } from '../test/lab/synthetic-agent.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const self = fileURLToPath(import.meta.url);
const mainJs = path.resolve(here, '../src/cli/main.js');

const RG = 'rg-bench';
const LOCATION = 'westeurope';
const NW_RG = 'NetworkWatcherRG';
const NW = `NetworkWatcher_${LOCATION}`;
const GIB = 1024 * 1024 * 1024;
const cpus = availableParallelism();

// ---- small helpers ------------------------------------------------------------------------

function flag(args: string[], name: string, fallback: string): string {
  const i = args.indexOf(`--${name}`);
  if (i < 0) return fallback;
  const value = args[i + 1];
  if (value === undefined) throw new Error(`--${name} needs a value`);
  return value;
}

function intFlag(args: string[], name: string, fallback: number): number {
  const value = Number(flag(args, name, String(fallback)));
  if (!Number.isInteger(value) || value < 1) throw new Error(`--${name}: a whole number ≥ 1`);
  return value;
}

/** Runs fn(0 … n-1) with at most `concurrency` calls in flight. */
async function pool(n: number, concurrency: number, fn: (i: number) => Promise<void>) {
  let next = 0;
  const workers = Array.from({ length: Math.min(concurrency, n) }, async () => {
    while (next < n) await fn(next++);
  });
  await Promise.all(workers);
}

/** Nearest-rank percentile of an ascending array. */
function pct(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

const ascending = (xs: number[]) => [...xs].sort((a, b) => a - b);
const ms = (x: number) => (x >= 100 ? x.toFixed(0) : x.toFixed(2)) + ' ms';
const sleep = (t: number) => new Promise((r) => setTimeout(r, t));

interface Reply {
  readonly status: number;
  readonly headers: IncomingHttpHeaders;
  readonly text: string;
}

const keepAlive = new HttpAgent({ keepAlive: true, maxSockets: 256 });

function call(
  base: string,
  method: string,
  pathAndQuery: string,
  token?: string,
  body?: unknown,
): Promise<Reply> {
  const payload = body === undefined ? undefined : JSON.stringify(body);
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      `${base}${pathAndQuery}`,
      {
        method,
        agent: keepAlive,
        headers: {
          ...(token ? { authorization: `Bearer ${token}` } : {}),
          ...(payload === undefined
            ? { 'content-length': 0 }
            : { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) }),
        },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () =>
          resolve({
            status: res.statusCode ?? 0,
            headers: res.headers,
            text: Buffer.concat(chunks).toString('utf8'),
          }),
        );
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(payload);
  });
}

async function expectJson<T>(reply: Promise<Reply>, status: number, what: string): Promise<T> {
  const r = await reply;
  if (r.status !== status) throw new Error(`${what}: ${r.status} ${r.text.slice(0, 300)}`);
  return JSON.parse(r.text) as T;
}

/** VmRSS and VmHWM (peak) of a process, in bytes. */
async function memoryOf(pid: number): Promise<{ rss: number; hwm: number }> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const kb = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(status)?.[1]);
  return { rss: kb('VmRSS') * 1024, hwm: kb('VmHWM') * 1024 };
}

/** utime + stime of a process, in seconds. */
async function cpuSecondsOf(pid: number): Promise<number> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100; // USER_HZ
}

/** CPU-seconds the whole machine spent busy (all cores), from /proc/stat. */
async function machineBusySeconds(): Promise<number> {
  const line = (await readFile('/proc/stat', 'utf8')).split('\n')[0]!;
  // cpu user nice system idle iowait irq softirq steal …
  const f = line.trim().split(/\s+/).slice(1).map(Number);
  return ((f[0] ?? 0) + (f[1] ?? 0) + (f[2] ?? 0) + (f[5] ?? 0) + (f[6] ?? 0) + (f[7] ?? 0)) / 100;
}

/** The soft and hard limits on open files of this process. */
async function openFileLimits(): Promise<{ soft: number; hard: number }> {
  const limits = await readFile('/proc/self/limits', 'utf8');
  const m = /^Max open files\s+(\S+)\s+(\S+)/m.exec(limits);
  const n = (s: string | undefined) => (s === 'unlimited' || !s ? Infinity : Number(s));
  return { soft: n(m?.[1]), hard: n(m?.[2]) };
}

/**
 * Spawns `node args…` with at least `nofile` open files allowed: when this process's soft limit
 * is lower, through `sh -c 'ulimit -n N && exec node …'` (the pid stays node's).
 */
function spawnNode(
  args: string[],
  nofile: number,
  softLimit: number,
  stdio: ('ignore' | 'pipe' | 'inherit' | number)[],
  env: NodeJS.ProcessEnv = process.env,
): ChildProcess {
  if (softLimit >= nofile) return spawn(process.execPath, args, { stdio, env });
  return spawn(
    '/bin/sh',
    ['-c', 'ulimit -n "$0" && exec "$@"', String(nofile), process.execPath, ...args],
    { stdio, env },
  );
}

/** Resolves with the first match of `pattern` in the child's stream; rejects if it exits first. */
function waitForLine(
  child: ChildProcess,
  stream: 'stdout' | 'stderr',
  pattern: RegExp,
): Promise<RegExpExecArray> {
  return new Promise((resolve, reject) => {
    let out = '';
    const onData = (d: Buffer) => {
      out += d.toString();
      const m = pattern.exec(out);
      if (m) {
        child[stream]!.off('data', onData);
        child.off('exit', onExit);
        resolve(m);
      }
    };
    const onExit = (code: number | null) =>
      reject(new Error(`child exited (${code}) before ${pattern}: ${out.slice(-2000)}`));
    child[stream]!.on('data', onData);
    child.once('exit', onExit);
  });
}

const exited = (child: ChildProcess, timeoutMs: number) =>
  new Promise<void>((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve();
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      resolve();
    }, timeoutMs);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve();
    });
  });

/**
 * Loaded into the server process with `node --import` (the server's code is unchanged): its
 * event-loop delay, event-loop utilisation and GC pauses since the previous SIGUSR2, written to
 * stderr on SIGUSR2.
 */
const MONITOR = `
import { monitorEventLoopDelay, PerformanceObserver, performance } from 'node:perf_hooks';
const delay = monitorEventLoopDelay({ resolution: 10 });
delay.enable();
let gc = { ms: 0, max: 0, n: 0 };
new PerformanceObserver((list) => {
  for (const e of list.getEntries()) {
    gc.ms += e.duration;
    gc.n += 1;
    gc.max = Math.max(gc.max, e.duration);
  }
}).observe({ entryTypes: ['gc'] });
let elu = performance.eventLoopUtilization();
process.on('SIGUSR2', () => {
  const used = performance.eventLoopUtilization(elu);
  elu = performance.eventLoopUtilization();
  const line = { elu: used.utilization, p50: delay.percentile(50) / 1e6, p99: delay.percentile(99) / 1e6,
    max: delay.max / 1e6, gcMs: gc.ms, gcMax: gc.max, gcN: gc.n };
  delay.reset();
  gc = { ms: 0, max: 0, n: 0 };
  process.stderr.write('LOOP ' + JSON.stringify(line) + '\\n');
});
`;

interface LoopStats {
  /** Event-loop utilisation, 0…1. */
  readonly elu: number;
  /** Event-loop delay percentiles and maximum, ms (10 ms resolution timer). */
  readonly p50: number;
  readonly p99: number;
  readonly max: number;
  /** GC pauses: total and longest, ms, and how many. */
  readonly gcMs: number;
  readonly gcMax: number;
  readonly gcN: number;
}

// ---- child: a bare Fastify process (the second base) -------------------------------------

async function bareServer(): Promise<void> {
  const { default: Fastify } = await import('fastify');
  const app = Fastify({ logger: false });
  // The same handler as wirewatch's /healthz (src/server/app.ts), async included.
  // eslint-disable-next-line @typescript-eslint/require-await
  app.get('/healthz', async () => ({ status: 'ok' }));
  await app.listen({ host: '127.0.0.1', port: 0 });
  const address = app.server.address();
  const port = typeof address === 'object' && address ? address.port : 0;
  process.stdout.write(`BARE http://127.0.0.1:${port}\n`);
  process.once('SIGTERM', () => void app.close().then(() => process.exit(0)));
}

// ---- child: a process of synthetic agents ---------------------------------------------------

async function agentWorker(args: string[]): Promise<void> {
  const serverUrl = flag(args, 'server', '');
  const from = intFlag(args, 'from', 1);
  const count = intFlag(args, 'count', 1);
  const agents: SyntheticAgent[] = [];
  for (let i = from; i < from + count; i++) {
    agents.push(
      new SyntheticAgent({
        serverUrl,
        enrollToken: flag(args, 'enroll-token', ''),
        subscriptionId: flag(args, 'subscription', ''),
        resourceGroup: RG,
        name: vmName(i),
        location: LOCATION,
        progressIntervalMs: intFlag(args, 'progress-ms', 2000),
      }),
    );
  }
  const t0 = performance.now();
  await pool(agents.length, 16, async (i) => {
    await agents[i]!.connect();
  });
  process.stdout.write(
    `READY ${JSON.stringify({ agents: agents.length, ms: performance.now() - t0 })}\n`,
  );
  process.once('SIGTERM', () => {
    let running = 0;
    for (const a of agents)
      for (const s of a.sessions.values()) if (s.state === 'Running') running++;
    process.stdout.write(`STATS ${JSON.stringify({ running })}\n`, () => process.exit(0));
  });
}

const vmName = (i: number) => `vm-${String(i).padStart(5, '0')}`;

// ---- the bench --------------------------------------------------------------------------------

interface Options {
  agents: number;
  sessionsPerAgent: number;
  progressMs: number;
  createConcurrency: number;
  statusRequests: number;
  statusConcurrency: number;
  statusSeconds: number;
  blockSize: number;
  agentProcesses: number;
  logLevel: string;
  cpuProf: boolean;
  keep: boolean;
}

function parseOptions(args: string[]): Options {
  const known = new Set([
    '--agents',
    '--sessions-per-agent',
    '--progress-ms',
    '--create-concurrency',
    '--status-requests',
    '--status-concurrency',
    '--status-seconds',
    '--block-size',
    '--agent-processes',
    '--log-level',
  ]);
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a === '--keep' || a === '--cpu-prof') continue;
    if (!known.has(a)) {
      throw new Error(
        `unknown argument ${a}; flags: ${[...known].join(' ')} --keep (keep the data dir) --cpu-prof (profile the server into the data dir; implies --keep)`,
      );
    }
    i++;
  }
  return {
    agents: intFlag(args, 'agents', 1000),
    sessionsPerAgent: intFlag(args, 'sessions-per-agent', 10),
    // The real agent reports every 2 s by default (src/agent/agent.ts) and at most every 5 s.
    progressMs: intFlag(args, 'progress-ms', 2000),
    createConcurrency: intFlag(args, 'create-concurrency', 48),
    statusRequests: intFlag(args, 'status-requests', 2000),
    statusConcurrency: intFlag(args, 'status-concurrency', 16),
    // At least two rounds of the server's 10 s deadline sweep fall into the measurement.
    statusSeconds: intFlag(args, 'status-seconds', 25),
    blockSize: intFlag(args, 'block-size', 100),
    agentProcesses: intFlag(args, 'agent-processes', 1),
    logLevel: flag(args, 'log-level', 'info'),
    cpuProf: args.includes('--cpu-prof'),
    keep: args.includes('--keep') || args.includes('--cpu-prof'),
  };
}

interface Created {
  readonly name: string;
  readonly sentAt: number;
  readonly operationPath: string;
}

async function bench(o: Options): Promise<void> {
  if (!existsSync(mainJs)) {
    throw new Error(`${mainJs} is missing: run \`npm run build\` first`);
  }
  const total = o.agents * o.sessionsPerAgent;
  const limits = await openFileLimits();
  const perWorker = Math.ceil(o.agents / o.agentProcesses);
  const serverFiles = o.agents + o.createConcurrency + 2 * o.statusConcurrency + 256;
  const workerFiles = perWorker + 256;
  const needed = Math.max(serverFiles, workerFiles);
  if (limits.hard < needed) {
    throw new Error(
      `open files: the hard limit is ${limits.hard} but ${needed} are needed (1 per agent WebSocket plus HTTP); raise it (ulimit -Hn, LimitNOFILE=) or use --agents`,
    );
  }

  const dataDir = await mkdtemp(path.join(tmpdir(), 'wirewatch-bench-cp-'));
  const children: ChildProcess[] = [];
  const cleanup = async () => {
    for (const c of [...children].reverse()) {
      c.kill('SIGTERM');
      await exited(c, 30_000);
    }
    keepAlive.destroy();
    if (!o.keep) await rm(dataDir, { recursive: true, force: true });
    else console.log(`kept ${dataDir} (server.log${o.cpuProf ? ', profile/' : ''})`);
  };
  const abort = () => void cleanup().then(() => process.exit(130));
  process.once('SIGINT', abort);
  process.once('SIGTERM', abort);

  try {
    console.log(
      `bench/control-plane: one wirewatch server process (SQLite in ${dataDir}, HTTP on loopback, log level ${o.logLevel} to a file),\n` +
        `${o.agents} SYNTHETIC agents in ${o.agentProcesses} child process(es) — real enrollment and channel protocol over WebSocket,\n` +
        `invented capture engine (no packets are captured) — each with ${o.sessionsPerAgent} sessions = ${total} sessions, progress every ${o.progressMs} ms.\n` +
        `open files: soft ${limits.soft}, hard ${limits.hard}, needed ~${needed}${limits.soft < needed ? ' (children get a raised soft limit)' : ''}`,
    );

    // -- the server, in its own process
    const adminToken = `wwadmin_bench_${Math.random().toString(36).slice(2)}${Date.now()}`;
    const logFd = openSync(path.join(dataDir, 'server.log'), 'a');
    const monitorPath = path.join(dataDir, 'monitor.mjs');
    await writeFile(monitorPath, MONITOR);
    const server = spawnNode(
      [
        '--import',
        pathToFileURL(monitorPath).href,
        ...(o.cpuProf ? ['--cpu-prof', '--cpu-prof-dir', path.join(dataDir, 'profile')] : []),
        mainJs,
        'server',
        '--data-dir',
        dataDir,
        '--listen',
        '127.0.0.1:0',
        '--log-level',
        o.logLevel,
        // 1,000 agents enrolling from one address and one token polling flat out are the load
        // measured here, not an attack: no rate limits.
        '--rate-limit',
        '0',
        '--anonymous-rate-limit',
        '0',
      ],
      serverFiles,
      limits.soft,
      ['ignore', logFd, 'pipe'],
      { ...process.env, WIREWATCH_ADMIN_TOKEN: adminToken },
    );
    closeSync(logFd);
    children.push(server);
    const url = (await waitForLine(server, 'stderr', /listening on (http:\/\/\S+)/))[1]!;
    const loopLines: ((s: LoopStats) => void)[] = [];
    let serverErr = '';
    server.stderr!.on('data', (d: Buffer) => {
      serverErr += d.toString();
      let nl: number;
      while ((nl = serverErr.indexOf('\n')) >= 0) {
        const line = serverErr.slice(0, nl);
        serverErr = serverErr.slice(nl + 1);
        if (line.startsWith('LOOP ')) loopLines.shift()?.(JSON.parse(line.slice(5)) as LoopStats);
      }
    });
    /** The server's event loop since the previous call. */
    const loop = (): Promise<LoopStats> =>
      new Promise((resolve) => {
        loopLines.push(resolve);
        server.kill('SIGUSR2');
      });
    const phases: [string, LoopStats, { machine: number; ours: number; seconds: number }][] = [];
    const ownCpu = async () =>
      (await Promise.all(children.map((c) => cpuSecondsOf(c.pid!).catch(() => 0)))).reduce(
        (a, b) => a + b,
        (process.cpuUsage().user + process.cpuUsage().system) / 1e6,
      );
    let mark = { at: performance.now(), machine: 0, ours: 0 };
    /** Starts a phase: the server's loop stats and the CPU counters start from now. */
    const startPhase = async () => {
      await loop();
      mark = { at: performance.now(), machine: await machineBusySeconds(), ours: await ownCpu() };
    };
    const endPhase = async (name: string) => {
      const stats = await loop();
      const seconds = (performance.now() - mark.at) / 1000;
      phases.push([
        name,
        stats,
        {
          machine: ((await machineBusySeconds()) - mark.machine) / seconds,
          ours: ((await ownCpu()) - mark.ours) / seconds,
          seconds,
        },
      ]);
      await startPhase();
    };

    // -- the second base: a bare Fastify process
    const bare = spawnNode([self, '--bare-server'], 256, limits.soft, ['ignore', 'pipe', 'pipe']);
    children.push(bare);
    const bareUrl = (await waitForLine(bare, 'stdout', /BARE (http:\/\/\S+)/))[1]!;

    // -- a tenant: subscription, Contributor and Reader tokens, an enrollment token
    const sub = await expectJson<{ subscriptionId: string }>(
      call(url, 'POST', '/api/v1/subscriptions', adminToken, { displayName: 'bench' }),
      201,
      'create subscription',
    );
    const subscriptionId = sub.subscriptionId;
    const token = async (role: string) =>
      (
        await expectJson<{ token: string }>(
          call(url, 'POST', `/api/v1/subscriptions/${subscriptionId}/tokens`, adminToken, {
            role,
          }),
          201,
          'create token',
        )
      ).token;
    const contributor = await token('Contributor');
    const reader = await token('Reader');
    const enrollToken = (
      await expectJson<{ token: string }>(
        call(
          url,
          'POST',
          `/api/v1/subscriptions/${subscriptionId}/enrollmentTokens`,
          adminToken,
          {},
        ),
        201,
        'create enrollment token',
      )
    ).token;

    // -- the agents
    const t0 = performance.now();
    const workers: ChildProcess[] = [];
    const ready: Promise<RegExpExecArray>[] = [];
    for (let w = 0; w < o.agentProcesses; w++) {
      const from = w * perWorker + 1;
      const count = Math.min(perWorker, o.agents - w * perWorker);
      if (count <= 0) break;
      const worker = spawnNode(
        [
          self,
          '--agent-worker',
          '--server',
          url,
          '--enroll-token',
          enrollToken,
          '--subscription',
          subscriptionId,
          '--from',
          String(from),
          '--count',
          String(count),
          '--progress-ms',
          String(o.progressMs),
        ],
        workerFiles,
        limits.soft,
        ['ignore', 'pipe', 'inherit'],
      );
      children.push(worker);
      workers.push(worker);
      ready.push(waitForLine(worker, 'stdout', /READY /));
    }
    await Promise.all(ready);
    const connectS = (performance.now() - t0) / 1000;
    const before = await memoryOf(server.pid!);
    console.log(
      `\n${o.agents} agents enrolled and connected in ${connectS.toFixed(1)} s; server RSS ${(before.rss / 2 ** 20).toFixed(0)} MiB`,
    );

    // -- creates
    await startPhase();
    const created: Created[] = new Array<Created>(total);
    const createLatency: number[] = [];
    let failures = 0;
    const c0 = performance.now();
    await pool(total, o.createConcurrency, async (i) => {
      const agent = Math.floor(i / o.sessionsPerAgent) + 1;
      const name = `pc-${agent}-${i % o.sessionsPerAgent}`;
      const body = {
        properties: {
          target: vmId(subscriptionId, RG, vmName(agent)),
          storageLocation: { filePath: `/var/captures/${name}.cap` },
          timeLimitInSeconds: 18000,
        },
      };
      const sentAt = Date.now();
      const h0 = performance.now();
      const r = await call(
        url,
        'PUT',
        `${capturePath(subscriptionId, NW_RG, NW, name)}?api-version=${API}`,
        contributor,
        body,
      );
      createLatency.push(performance.now() - h0);
      if (r.status !== 201) {
        if (failures++ < 5) console.error(`PUT ${name}: ${r.status} ${r.text.slice(0, 300)}`);
        return;
      }
      const op = String(r.headers['azure-asyncoperation']);
      created[i] = { name, sentAt, operationPath: op.slice(url.length) };
    });
    const createS = (performance.now() - c0) / 1000;
    if (failures > 0) throw new Error(`${failures} of ${total} creates failed`);
    const putLatency = ascending(createLatency);
    console.log(
      `${total} creates in ${createS.toFixed(1)} s (${o.createConcurrency} in flight): PUT answered p50 ${ms(pct(putLatency, 50))}, p99 ${ms(pct(putLatency, 99))}`,
    );

    // -- wait until every session is Running
    const metricsOf = async () => {
      const r = await call(url, 'GET', '/metrics', adminToken);
      const n = (re: RegExp) => Number(re.exec(r.text)?.[1] ?? 0);
      return {
        running: n(/^wirewatch_sessions\{status="Running"\} (\d+)/m),
        agents: n(/^wirewatch_agents_connected (\d+)/m),
      };
    };
    const w0 = performance.now();
    let m = await metricsOf();
    while (m.running < total && performance.now() - w0 < 120_000) {
      await sleep(250);
      m = await metricsOf();
    }
    console.log(
      `Running: ${m.running}/${total} ${((performance.now() - w0) / 1000).toFixed(1)} s after the last create answered`,
    );
    const afterCreates = await memoryOf(server.pid!);
    await endPhase('creates (until all Running)');

    // -- steady state: the server's and agents' CPU while holding every session
    const window = 10;
    const cpu0 = await Promise.all(
      [server, ...workers].map((c) => cpuSecondsOf(c.pid!).catch(() => 0)),
    );
    await sleep(window * 1000);
    const cpu1 = await Promise.all(
      [server, ...workers].map((c) => cpuSecondsOf(c.pid!).catch(() => 0)),
    );
    await endPhase(`steady state`);
    const serverCpu = (cpu1[0]! - cpu0[0]!) / window;
    const agentsCpu = cpu1.slice(1).reduce((s, x, k) => s + x - cpu0[k + 1]!, 0) / window;
    const expectedProgress = (total * 1000) / o.progressMs;
    console.log(
      `steady state (${window} s, ~${expectedProgress.toFixed(0)} progress messages/s): server CPU ${(serverCpu * 100).toFixed(0)} % of one core (${((serverCpu * 1e6) / expectedProgress).toFixed(0)} µs per message), agent process(es) ${(agentsCpu * 100).toFixed(0)} % of one core`,
    );

    // -- queryStatus against the two bare routes, interleaved blocks
    type Kind = 'queryStatus' | 'healthz' | 'bare';
    const latency: Record<Kind, number[]> = { queryStatus: [], healthz: [], bare: [] };
    const request = (kind: Kind): Promise<Reply> => {
      switch (kind) {
        case 'queryStatus': {
          const c = created[Math.floor(Math.random() * total)]!;
          return call(
            url,
            'POST',
            `${capturePath(subscriptionId, NW_RG, NW, c.name)}/queryStatus?api-version=${API}`,
            reader,
          );
        }
        case 'healthz':
          return call(url, 'GET', '/healthz');
        case 'bare':
          return call(bareUrl, 'GET', '/healthz');
      }
    };
    const block = async (kind: Kind, n: number, record: boolean) => {
      await pool(n, o.statusConcurrency, async () => {
        const h0 = performance.now();
        const r = await request(kind);
        const t = performance.now() - h0;
        if (r.status !== 200) throw new Error(`${kind}: ${r.status} ${r.text.slice(0, 300)}`);
        if (kind === 'queryStatus' && !r.text.includes('"packetCaptureStatus":"Running"')) {
          throw new Error(`queryStatus: not Running: ${r.text.slice(0, 300)}`);
        }
        if (record) latency[kind].push(t);
      });
    };
    const kinds: Kind[] = ['queryStatus', 'healthz', 'bare'];
    for (const kind of kinds) await block(kind, 200, false); // warm-up
    await startPhase();
    const blocks = Math.ceil(o.statusRequests / o.blockSize);
    const until = performance.now() + o.statusSeconds * 1000;
    const s0 = performance.now();
    for (let b = 0; b < blocks || performance.now() < until; b++) {
      // ABC, BCA, CAB …: no kind always runs first or right after another.
      for (let k = 0; k < kinds.length; k++) {
        await block(kinds[(b + k) % kinds.length]!, o.blockSize, true);
      }
    }
    const statusS = (performance.now() - s0) / 1000;
    await endPhase('queryStatus / healthz blocks');
    const afterStatus = await memoryOf(server.pid!);

    // -- create→Running from the create operations (after the timed part: 1 GET per session)
    const toRunning: number[] = [];
    const toOpened: number[] = [];
    const openedToRunning: number[] = [];
    let notDone = 0;
    await pool(total, o.statusConcurrency, async (i) => {
      const c = created[i]!;
      const op = await expectJson<{ status: string; startTime: string; endTime?: string }>(
        call(url, 'GET', c.operationPath, reader),
        200,
        'GET operation',
      );
      if (op.status !== 'Succeeded' || !op.endTime) {
        notDone++;
        return;
      }
      const opened = Date.parse(op.startTime);
      const ended = Date.parse(op.endTime);
      toRunning.push(ended - c.sentAt);
      toOpened.push(opened - c.sentAt);
      openedToRunning.push(ended - opened);
    });

    // -- held to the end?
    const final = await metricsOf();
    const end = await memoryOf(server.pid!);
    const stats = await Promise.all(
      workers.map(async (w) => {
        const line = waitForLine(w, 'stdout', /STATS (\{.*\})/);
        w.kill('SIGTERM');
        return JSON.parse((await line)[1]!) as { running: number };
      }),
    );
    const agentRunning = stats.reduce((s, x) => s + x.running, 0);

    // -- report
    const run = ascending(toRunning);
    const qs = ascending(latency.queryStatus);
    const hz = ascending(latency.healthz);
    const br = ascending(latency.bare);
    const peak = Math.max(end.hwm, afterStatus.hwm);
    const ratio = pct(qs, 99) / pct(hz, 99);
    const ratioBare = pct(qs, 99) / pct(br, 99);
    const yes = (ok: boolean) => (ok ? 'yes' : '**NO**');
    const rows: [string, string, string, string][] = [
      [
        'sessions held (Running, server / agents)',
        `${final.running} / ${agentRunning} of ${total}`,
        `${total}`,
        yes(final.running === total && agentRunning === total && notDone === 0),
      ],
      ['agents connected at the end', `${final.agents} of ${o.agents}`, '', ''],
      ['create throughput', `${(total / createS).toFixed(0)} creates/s`, '', ''],
      ['create→Running p50', ms(pct(run, 50)), '', ''],
      ['create→Running p99', ms(pct(run, 99)), '≤ 1000 ms', yes(pct(run, 99) <= 1000)],
      ['  of which PUT sent → operation opened, p99', ms(pct(ascending(toOpened), 99)), '', ''],
      [
        '  of which operation opened → Running, p99',
        ms(pct(ascending(openedToRunning), 99)),
        '',
        '',
      ],
      ['queryStatus p50 / p99', `${ms(pct(qs, 50))} / ${ms(pct(qs, 99))}`, '', ''],
      ['GET /healthz, same process, p50 / p99', `${ms(pct(hz, 50))} / ${ms(pct(hz, 99))}`, '', ''],
      [
        'GET /healthz, bare Fastify process, p50 / p99',
        `${ms(pct(br, 50))} / ${ms(pct(br, 99))}`,
        '',
        '',
      ],
      ['queryStatus p99 / same-process /healthz p99', ratio.toFixed(2), '≤ 3', yes(ratio <= 3)],
      ['queryStatus p99 / bare-process /healthz p99', ratioBare.toFixed(2), '(info)', ''],
      [
        'server RSS after creates / at the end',
        `${(afterCreates.rss / 2 ** 20).toFixed(0)} / ${(end.rss / 2 ** 20).toFixed(0)} MiB`,
        '',
        '',
      ],
      [
        'server peak RSS (VmHWM)',
        `${(peak / 2 ** 20).toFixed(0)} MiB`,
        '≤ 1024 MiB',
        yes(peak <= GIB),
      ],
    ];
    const widths = [0, 1, 2].map((k) => Math.max(...rows.map((r) => r[k]!.length), 6));
    console.log(
      `\nqueryStatus: ${qs.length} requests, GET /healthz: ${hz.length} + ${br.length}, concurrency ${o.statusConcurrency}, blocks of ${o.blockSize} interleaved (ABC, BCA, CAB …), ${statusS.toFixed(1)} s`,
    );
    console.log(
      `${'metric'.padEnd(widths[0]!)}  ${'value'.padEnd(widths[1]!)}  ${'goal'.padEnd(widths[2]!)}  met?`,
    );
    for (const r of rows) {
      console.log(
        `${r[0].padEnd(widths[0]!)}  ${r[1].padEnd(widths[1]!)}  ${r[2].padEnd(widths[2]!)}  ${r[3]}`,
      );
    }
    console.log(
      '\ncreate→Running = the create operation\'s endTime (stamped when the server handles the agent\'s "started" and marks the session Running) − when this bench sent the PUT.',
    );
    if (notDone > 0) console.log(`${notDone} create operations were not Succeeded at the end`);
    console.log(
      '\nserver event loop by phase (diagnostics): utilisation, lag p50/p99/max, GC pauses total/longest',
    );
    // monitorEventLoopDelay's samples include its own 10 ms timer.
    const lag = (x: number) => ms(Math.max(0, x - 10));
    for (const [name, l] of phases) {
      console.log(
        `  ${name.padEnd(30)} ELU ${(l.elu * 100).toFixed(0).padStart(3)} %  lag ${lag(l.p50)} / ${lag(l.p99)} / ${lag(l.max)}  GC ${ms(l.gcMs)} in ${l.gcN} / ${ms(l.gcMax)}`,
      );
    }
    console.log(
      `\nmachine load by phase (${cpus} cores): busy cores on average, of which this bench's processes, and the rest (other work on the machine)`,
    );
    for (const [name, , c] of phases) {
      console.log(
        `  ${name.padEnd(30)} ${c.seconds.toFixed(1).padStart(5)} s  busy ${c.machine.toFixed(2)}  bench ${c.ours.toFixed(2)}  other ${Math.max(0, c.machine - c.ours).toFixed(2)}`,
      );
    }
  } finally {
    await cleanup();
  }
}

const argv = process.argv.slice(2);
if (argv[0] === '--bare-server') await bareServer();
else if (argv[0] === '--agent-worker') await agentWorker(argv.slice(1));
else await bench(parseOptions(argv));
