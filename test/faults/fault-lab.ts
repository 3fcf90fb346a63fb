/**
 * The fault tests' lab: the `wirewatch server` binary on loopback, a `wirewatch agent` binary per
 * lab host (its interface in the host's namespace, --netns), numbered UDP traffic between the
 * hosts (seq-traffic.mjs), and tshark reading which numbered datagrams a capture file holds.
 * Everything it starts is stopped by close(), also when a test failed.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import {
  startServer,
  type RunningServer,
  type StartServerOptions,
} from '../../src/server/start-server.js';
import { cli, launch, stopProcess, freePort, type CliProcess } from '../lab/cli-process.js';
import {
  API,
  apiClient,
  capturePath,
  createTenant,
  vmId,
  waitFor,
  type ApiClient,
  type Tenant,
} from '../lab/control-plane.js';
import { createLab, tcpdumpsIn, type Lab, type LabHost } from '../lab/lab.js';
import { seqPackets, startSeqStream, type SeqPacket, type SeqStream } from '../lab/seq-stream.js';
import { serve, type Server } from '../lab/traffic.js';

export { seqPackets, type SeqPacket, type SeqStream };

/** The queryStatus fields the fault tests read. */
export interface CaptureStatus {
  packetCaptureStatus: string;
  stopReason?: string;
  packetCaptureError: string[];
  packetCaptureErrorDetails: { code: string; message: string }[];
  packetsCaptured: number;
  bytesCaptured: number;
  uploadState?: string;
  blobs?: { url: string; size: number }[];
  agentConnectionState: string;
  files: string[];
}

export interface FaultLabOptions {
  /** Agents to run: name → lab host (a or b). */
  readonly agents: Record<string, 'a' | 'b'>;
  /** Extra agent arguments per agent (e.g. --capture-root on a tmpfs). */
  readonly agentArgs?: (root: string) => Record<string, string[]>;
  /**
   * Runs before the server and the agents start (mounts, more namespaces, say); returns its
   * clean-up, run by close().
   */
  readonly prepare?: (faults: FaultLab) => Promise<() => Promise<void>>;
  /** Runs the server in this process (real code, options a binary has no flag for). */
  readonly inProcessServer?: Partial<StartServerOptions>;
}

export class FaultLab {
  readonly lab: Lab;
  readonly root: string;
  readonly port: number;
  readonly adminToken = `wwadmin_faults_${Math.random().toString(36).slice(2)}`;
  readonly api: ApiClient;
  tenant!: Tenant;
  server: CliProcess | undefined;
  readonly agents = new Map<string, CliProcess>();
  /**
   * Agents that run inside their host's namespace (not just their tcpdump), and the server URL
   * they reach from there; set by `prepare`.
   */
  readonly agentServerUrls = new Map<string, string>();
  #inProcess: RunningServer | undefined;
  readonly #options: FaultLabOptions;
  readonly #echo: Server[] = [];
  readonly #streams = new Set<ChildProcess>();
  readonly #cleanups: (() => Promise<void>)[] = [];
  #nextPort = 30000 + Math.floor(Math.random() * 5000);

  private constructor(lab: Lab, root: string, port: number, options: FaultLabOptions) {
    this.lab = lab;
    this.root = root;
    this.port = port;
    this.#options = options;
    this.api = apiClient(`http://127.0.0.1:${port}`, this.adminToken);
  }

  /** Namespaces, echo servers (UDP 5300 on b, 5400 on a), the server, a tenant and the agents. */
  static async create(options: FaultLabOptions): Promise<FaultLab> {
    const lab = await createLab();
    let root: string | undefined;
    let faults: FaultLab | undefined;
    try {
      root = await mkdtemp(path.join(tmpdir(), 'ww-faults-'));
      faults = new FaultLab(lab, root, await freePort(), options);
      faults.#echo.push(
        await serve(lab, lab.b, [{ proto: 'udp', host: lab.b.ipv4, port: 5300 }]),
        await serve(lab, lab.a, [{ proto: 'udp', host: lab.a.ipv4, port: 5400 }]),
      );
      if (options.prepare !== undefined) faults.#cleanups.push(await options.prepare(faults));
      await faults.startServer();
      faults.tenant = await createTenant(faults.api, 'faults');
      for (const name of Object.keys(options.agents)) faults.startAgent(name);
      for (const name of Object.keys(options.agents)) await faults.connected(name);
      return faults;
    } catch (err) {
      if (faults !== undefined) await faults.close();
      else {
        await lab.close();
        if (root !== undefined) await rm(root, { recursive: true, force: true });
      }
      throw err;
    }
  }

  host(name: string): LabHost {
    return this.#options.agents[name] === 'a' ? this.lab.a : this.lab.b;
  }

  captures(): string {
    return path.join(this.root, 'captures');
  }

  async startServer(): Promise<void> {
    if (this.#options.inProcessServer !== undefined) {
      this.#inProcess = await startServer({
        dataDir: path.join(this.root, 'server'),
        listen: `127.0.0.1:${this.port}`,
        logger: false,
        ...this.#options.inProcessServer,
        adminToken: this.adminToken,
      });
      return;
    }
    const proc = launch(
      [
        'server',
        '--data-dir',
        path.join(this.root, 'server'),
        '--listen',
        `127.0.0.1:${this.port}`,
      ],
      { WIREWATCH_ADMIN_TOKEN: this.adminToken },
    );
    this.server = proc;
    await waitFor(
      () => Promise.resolve(proc.output()),
      (o) => o.includes('listening on') || proc.child.exitCode !== null,
      30_000,
    );
    if (!proc.output().includes('listening on')) {
      throw new Error(`server did not start: ${proc.output()}`);
    }
  }

  startAgent(name: string): CliProcess {
    const host = this.host(name);
    const inside = this.agentServerUrls.get(name);
    const args = [
      'agent',
      '--server',
      inside ?? `http://127.0.0.1:${this.port}`,
      '--subscription',
      this.tenant.subscriptionId,
      '--resource-group',
      'lab',
      '--name',
      name,
      '--location',
      'westeurope',
      '--interface',
      host.iface,
      ...(inside === undefined ? ['--netns', host.netns] : []),
      '--data-dir',
      path.join(this.root, `agent-${name}`),
      '--capture-root',
      this.captures(),
      ...(this.#options.agentArgs?.(this.root)[name] ?? []),
    ];
    // TMPDIR keeps tcpdump's scratch folder inside the test's folder even after a kill -9.
    const env = { WIREWATCH_ENROLL_TOKEN: this.tenant.enrollToken, TMPDIR: this.root };
    const proc = inside === undefined ? launch(args, env) : launchInNetns(host.netns, args, env);
    this.agents.set(name, proc);
    return proc;
  }

  async connected(name: string, state = 'Connected'): Promise<void> {
    await waitFor(
      () =>
        this.api.call('GET', `/api/v1/subscriptions/${this.tenant.subscriptionId}/agents`, {
          token: this.tenant.reader,
        }),
      (r) =>
        (
          (r.body as { value?: { name: string; connectionState: string }[] } | undefined)?.value ??
          []
        ).some((a) => a.name === name && a.connectionState === state),
      30_000,
      200,
    );
  }

  url(name: string, suffix = ''): string {
    return `${capturePath(this.tenant.subscriptionId, 'NetworkWatcherRG', 'NetworkWatcher_westeurope', name)}${suffix}?api-version=${API}`;
  }

  /** Creates a capture on `vm`; with no storageLocation given, a file under the capture root. */
  async create(
    name: string,
    vm: string,
    properties: Record<string, unknown> = {},
  ): Promise<{ file: string; body: { properties: Record<string, unknown> } }> {
    const file = path.join(this.captures(), `${name}.cap`);
    const r = await this.api.call('PUT', this.url(name), {
      token: this.tenant.contributor,
      body: {
        properties: {
          target: vmId(this.tenant.subscriptionId, 'lab', vm),
          storageLocation: { filePath: file },
          ...properties,
        },
      },
    });
    if (r.status !== 201) throw new Error(`create ${name}: ${r.status} ${r.text}`);
    return { file, body: r.body as { properties: Record<string, unknown> } };
  }

  /** Registers storage account `name` (resource group `storage`) in the tenant. */
  async registerStorageAccount(name: string, connectionString: string): Promise<void> {
    const r = await this.api.call(
      'POST',
      `/api/v1/subscriptions/${this.tenant.subscriptionId}/storageAccounts`,
      {
        token: this.tenant.contributor,
        body: { name, resourceGroup: 'storage', connectionString },
      },
    );
    if (r.status !== 201) throw new Error(`register ${name}: ${r.status} ${r.text}`);
  }

  /**
   * Ends a capture that ran beside the faults: stops its traffic and the capture, waits for
   * Stopped, and says how its numbered stream landed in its file.
   */
  async finishBystander(
    name: string,
    stream: SeqStream,
    file: string,
  ): Promise<{ status: CaptureStatus; sent: number; found: StreamInFile }> {
    const { sent } = await stream.stop();
    await this.stop(name);
    const status = await this.until(name, (x) => x.packetCaptureStatus === 'Stopped');
    return { status, sent, found: streamInFile(await seqPackets(file), stream, sent) };
  }

  async stop(name: string): Promise<void> {
    const r = await this.api.call('POST', this.url(name, '/stop'), {
      token: this.tenant.contributor,
    });
    if (r.status !== 202 && r.status !== 200) throw new Error(`stop ${name}: ${r.status}`);
  }

  async status(name: string): Promise<CaptureStatus> {
    const r = await this.api.call('POST', this.url(name, '/queryStatus'), {
      token: this.tenant.reader,
    });
    if (r.status !== 200) throw new Error(`queryStatus ${name}: ${r.status} ${r.text}`);
    return r.body as CaptureStatus;
  }

  until(
    name: string,
    predicate: (s: CaptureStatus) => boolean,
    ms = 30_000,
  ): Promise<CaptureStatus> {
    return waitFor(() => this.status(name), predicate, ms, 250);
  }

  /**
   * Numbered datagrams from `from` to the echo server on the other host (UDP 5300 on b, 5400 on
   * a), one every `gapMs` or so.
   */
  stream(from: 'a' | 'b', options: { size?: number; gapMs?: number } = {}): SeqStream {
    const src = from === 'a' ? this.lab.a : this.lab.b;
    const dst = from === 'a' ? this.lab.b : this.lab.a;
    const dport = from === 'a' ? 5300 : 5400;
    const stream = startSeqStream(src, {
      src: src.ipv4,
      sport: this.#nextPort++,
      dst: dst.ipv4,
      dport,
      ...options,
    });
    this.#streams.add(stream.process);
    void stream.ended.then(() => this.#streams.delete(stream.process));
    return stream;
  }

  /** Process ids of the tcpdumps running in a host's namespace. */
  tcpdumps(host: LabHost): Promise<number[]> {
    return tcpdumpsIn(host);
  }

  /** Process ids of the guards (src/capture/tcpdump-guard.ts) still watching tcpdump `pid`. */
  async guardsOf(pid: number): Promise<number[]> {
    const found: number[] = [];
    for (const entry of await readdir('/proc')) {
      if (!/^\d+$/.test(entry)) continue;
      const args = (await readFile(`/proc/${entry}/cmdline`, 'utf8').catch(() => '')).split('\0');
      const at = args.indexOf('wirewatch-tcpdump-guard');
      if (at > 0 && args[at + 1] === String(pid)) found.push(Number(entry));
    }
    return found;
  }

  /** Every process this lab started is stopped, the namespaces and temp dir removed. */
  async close(): Promise<void> {
    const failures: unknown[] = [];
    const step = async (fn: () => Promise<unknown>) => {
      try {
        await fn();
      } catch (err) {
        failures.push(err);
      }
    };
    for (const child of this.#streams) {
      if (child.exitCode === null) child.kill('SIGKILL');
    }
    for (const proc of this.agents.values()) await step(() => stopProcess(proc));
    await step(() => stopProcess(this.server));
    await step(async () => this.#inProcess?.close());
    for (const e of this.#echo) await step(() => e.close());
    await step(() => this.lab.close());
    for (const cleanup of this.#cleanups.splice(0)) await step(cleanup);
    await step(() => rm(this.root, { recursive: true, force: true }));
    if (failures.length > 0) throw failures[0];
  }
}

/** What a file holds of one stream's datagrams (its requests, not their echoes). */
export interface StreamInFile {
  /** Distinct numbers found. */
  readonly count: number;
  /** Numbers found more than once. */
  readonly duplicates: number[];
  /** Numbers below `upTo` that are missing. */
  readonly missing: number[];
  /** The highest number found, -1 if none. */
  readonly highest: number;
}

export function streamInFile(
  packets: readonly SeqPacket[],
  stream: Pick<SeqStream, 'sport'>,
  upTo = 0,
): StreamInFile {
  const seen = new Map<number, number>();
  for (const p of packets) {
    if (p.sport !== stream.sport) continue;
    seen.set(p.seq, (seen.get(p.seq) ?? 0) + 1);
  }
  const missing: number[] = [];
  for (let n = 0; n < upTo; n++) if (!seen.has(n)) missing.push(n);
  return {
    count: seen.size,
    duplicates: [...seen].filter(([, c]) => c > 1).map(([n]) => n),
    missing,
    highest: seen.size === 0 ? -1 : Math.max(...seen.keys()),
  };
}

/** `wirewatch ARGS` run inside a network namespace, in its own process group (as launch()). */
function launchInNetns(
  netns: string,
  args: readonly string[],
  env: Record<string, string>,
): CliProcess {
  const child = spawn('ip', ['netns', 'exec', netns, process.execPath, cli, ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
    env: { ...process.env, ...env },
  });
  let output = '';
  child.stdout.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr.on('data', (d: Buffer) => (output += d.toString()));
  const exited = new Promise<number | null>((resolve) =>
    child.once('exit', (code) => resolve(code)),
  );
  return { child, output: () => output, exited };
}
