/**
 * The built `wirewatch` binary as a test runs it: in its own process group (as a shell runs a
 * job), its output collected, stopped with a signal to the whole group.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import { fileURLToPath } from 'node:url';
import { waitFor } from './control-plane.js';

export const cli = fileURLToPath(new URL('../../dist/src/cli/main.js', import.meta.url));

export interface CliProcess {
  readonly child: ChildProcess;
  /** stdout and stderr so far, interleaved. */
  output(): string;
  readonly exited: Promise<number | null>;
}

/** Where the binary runs: `netns` runs it inside that lab namespace (`ip netns exec`). */
export interface CliPlace {
  readonly netns?: string;
}

/** The command line that runs `wirewatch ARGS` (inside a namespace: `ip` execs into node). */
function command(args: readonly string[], place: CliPlace): [string, string[]] {
  return place.netns === undefined
    ? [process.execPath, [cli, ...args]]
    : ['ip', ['netns', 'exec', place.netns, process.execPath, cli, ...args]];
}

/** Starts `wirewatch ARGS`; `env` values of undefined remove the variable. */
export function launch(
  args: readonly string[],
  env: Record<string, string | undefined> = {},
  place: CliPlace = {},
): CliProcess {
  const child = spawn(...command(args, place), {
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

/** What `wirewatch agent` is started with on a lab host. */
export interface AgentLaunch {
  readonly server: string;
  readonly enrollToken: string;
  readonly subscription: string;
  readonly resourceGroup: string;
  /** The VM it is, or the scale set it is an instance of (`instanceId` to choose its id). */
  readonly host:
    { readonly name: string } | { readonly scaleSet: string; readonly instanceId?: string };
  readonly location: string;
  /** Where it captures: a lab host's interface in its namespace. */
  readonly on: { readonly iface: string; readonly netns: string };
  readonly dataDir: string;
  readonly captureRoot: string;
}

/** The arguments of `wirewatch agent …` for {@link launch}. */
export function agentArgs(a: AgentLaunch): string[] {
  const host =
    'name' in a.host
      ? ['--name', a.host.name]
      : [
          '--scale-set',
          a.host.scaleSet,
          ...(a.host.instanceId === undefined ? [] : ['--instance-id', a.host.instanceId]),
        ];
  return [
    'agent',
    ...['--server', a.server, '--enroll-token', a.enrollToken],
    ...['--subscription', a.subscription, '--resource-group', a.resourceGroup],
    ...host,
    ...['--location', a.location, '--interface', a.on.iface, '--netns', a.on.netns],
    ...['--data-dir', a.dataDir, '--capture-root', a.captureRoot],
  ];
}

/** Signals the process group and waits for the exit; SIGKILL after 15 s. */
export async function stopProcess(
  proc: CliProcess | undefined,
  signal: NodeJS.Signals = 'SIGTERM',
): Promise<number | null> {
  if (!proc) return null;
  if (proc.child.exitCode !== null || proc.child.signalCode !== null) return proc.exited;
  try {
    process.kill(-proc.child.pid!, signal);
  } catch {
    return proc.exited;
  }
  const timer = setTimeout(() => {
    try {
      process.kill(-proc.child.pid!, 'SIGKILL');
    } catch {
      // already gone
    }
  }, 15_000);
  const code = await proc.exited;
  clearTimeout(timer);
  return code;
}

/** A TCP port free on 127.0.0.1 right now. */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const address = s.address();
      s.close(() =>
        typeof address === 'object' && address
          ? resolve(address.port)
          : reject(new Error('no port')),
      );
    });
  });
}

/** What `wirewatch up` prints at its start. */
export interface UpPrinted {
  readonly url: string;
  readonly token: string;
  readonly subscriptionId: string;
  /** The three example commands, as printed. */
  readonly create: string;
  readonly status: string;
  readonly download: string;
}

/** Waits for `wirewatch up` to print its banner and reads it; throws if it did not. */
export async function upPrinted(proc: CliProcess): Promise<UpPrinted> {
  const out = await waitFor(
    () => Promise.resolve(proc.output()),
    (o) => o.includes('Ctrl-C stops everything') || proc.child.exitCode !== null,
    45_000,
  );
  const field = (re: RegExp) => {
    const m = re.exec(out);
    if (!m?.[1]) throw new Error(`wirewatch up did not print ${re}: ${out}`);
    return m[1];
  };
  const command = (heading: string) => {
    const start = out.indexOf(heading);
    if (start < 0) throw new Error(`no "${heading}" command in: ${out}`);
    const lines = out.slice(start).split('\n').slice(1);
    const end = lines.findIndex((l) => l.trim() === '');
    return lines.slice(0, end).join('\n');
  };
  return {
    url: field(/portal:\s+(http:\/\/\S+?)\/?\s/),
    token: field(/access token:\s+(\S+)/),
    subscriptionId: field(/subscription:\s+([0-9a-f-]{36})/),
    create: command('# 1. create'),
    status: command('# 2. status'),
    download: command('# 3. download'),
  };
}

/** Waits for `wirewatch server` to print its URL; throws with its output if it exits first. */
export async function serverUrl(proc: CliProcess): Promise<string> {
  const out = await waitFor(
    () => Promise.resolve(proc.output()),
    (o) => /listening on \S+/.test(o) || proc.child.exitCode !== null,
  );
  const m = /listening on (\S+)/.exec(out);
  if (!m) throw new Error(`server did not start: ${out}`);
  return m[1]!;
}

export interface CliResult {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** A finished run of the binary: its result, and stdout as bytes (binary output, `--file -`). */
export interface CliRun extends CliResult {
  readonly stdoutBytes: Buffer;
}

/**
 * Runs `wirewatch ARGS` to its end with stdout and stderr apart (pipes, not a terminal);
 * `env` values of undefined remove the variable. SIGKILL after `timeoutMs`.
 */
export function runCli(
  args: readonly string[],
  env: Record<string, string | undefined> = {},
  timeoutMs = 60_000,
  place: CliPlace = {},
): Promise<CliRun> {
  const child = spawn(...command(args, place), {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, ...env },
  });
  const out: Buffer[] = [];
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => out.push(d));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
  return new Promise((resolve, reject) => {
    child.once('error', reject);
    child.once('close', (code) => {
      clearTimeout(timer);
      const stdoutBytes = Buffer.concat(out);
      resolve({ code, stdout: stdoutBytes.toString('utf8'), stdoutBytes, stderr });
    });
  });
}

/**
 * A regex matching how a table shows the time `iso` when the CLI runs with TZ=UTC:
 * `2026-12-07 22:20:01`, and how long ago (or how soon) when within the hour.
 */
export function tableTimeUtc(iso: string): RegExp {
  const local = new Date(iso).toISOString().slice(0, 19).replace('T', ' ');
  return new RegExp(`^${local}( \\((now|\\d+ (s|min) ago|in \\d+ (s|min))\\))?$`);
}

/** A table row whose first column is a time: that time, and the other cells. */
export function timeFirst(row: string): [time: string, ...rest: string[]] {
  const m = /^(\S+ \S+(?: \([^)]*\))?) {2,}(.*)$/.exec(row);
  if (!m) throw new Error(`no time in the first column of: ${row}`);
  return [m[1]!, ...m[2]!.split(/ +/)];
}

/**
 * `wirewatch ARGS` under `script`, which gives it a terminal on stdin, stdout and stderr; with
 * stdin 'pipe', what is written to it is typed. `env` values of undefined remove the variable.
 */
export function spawnInTerminal(
  args: readonly string[],
  env: Record<string, string | undefined> = {},
  stdin: 'ignore' | 'pipe' = 'ignore',
): ChildProcess {
  const quote = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;
  const command = [process.execPath, cli, ...args].map(quote).join(' ');
  return spawn('script', ['-q', '-e', '-c', command, '/dev/null'], {
    stdio: [stdin, 'pipe', 'pipe'],
    env: Object.fromEntries(
      Object.entries({ ...process.env, ...env }).filter(([, v]) => v !== undefined),
    ),
  });
}

/**
 * Runs `wirewatch ARGS` in a terminal ({@link spawnInTerminal}) to its end: its exit code and what
 * the terminal showed (stdout and stderr together, `\r\n` line ends).
 */
export function runInTerminal(
  args: readonly string[],
  env: Record<string, string | undefined> = {},
): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve, reject) => {
    const child = spawnInTerminal(args, env);
    let output = '';
    child.stdout!.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (output += d.toString()));
    child.once('error', reject);
    child.once('close', (code) => resolve({ code, output }));
  });
}
