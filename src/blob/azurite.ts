/**
 * Azurite's blob service as a child process: the embedded blob store of `wirewatch up` and the
 * real Azure Blob protocol (SAS included) for tests. Always started with --disableTelemetry,
 * which otherwise sends usage data out.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdir, readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import path from 'node:path';
import { findExecutable } from '../capture/tcpdump.js';

/** Azurite's well-known development account; public, in Azure's and Azurite's docs. */
export const AZURITE_ACCOUNT_NAME = 'devstoreaccount1';
export const AZURITE_ACCOUNT_KEY =
  'Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==';

export interface AzuriteOptions {
  /** Where Azurite keeps its blobs and metadata; created if missing, kept across restarts. */
  readonly dataDir: string;
  /** Default 127.0.0.1. */
  readonly host?: string;
  /** Default 0: a free port, chosen once and kept by start() after a stop(). */
  readonly port?: number;
  /** How long Azurite may take to listen (default 30 s). */
  readonly startTimeoutMs?: number;
}

export interface Azurite {
  /** `http://HOST:PORT/devstoreaccount1` */
  readonly blobEndpoint: string;
  /** For the development account, with `BlobEndpoint=` this instance. */
  readonly connectionString: string;
  readonly port: number;
  readonly running: boolean;
  /** SIGTERM and wait for the exit (SIGKILL after 10 s); safe to call twice. */
  stop(): Promise<void>;
  /** Starts it again on the same port and data dir (after stop()); a no-op while running. */
  start(): Promise<void>;
  /** stop(), for good: start() is refused afterwards. Safe to call twice. */
  close(): Promise<void>;
}

/** Starts Azurite's blob service; resolves once it listens, rejects with its output if it exits. */
export async function startAzurite(options: AzuriteOptions): Promise<Azurite> {
  const instance = new AzuriteProcess(options);
  await instance.start();
  return instance;
}

const KILL_AFTER_MS = 10_000;

class AzuriteProcess implements Azurite {
  readonly #options: AzuriteOptions;
  readonly #host: string;
  #port: number;
  #child: ChildProcess | undefined;
  #exited: Promise<void> | undefined;
  #stopping: Promise<void> | undefined;
  #starting: Promise<void> | undefined;
  #closed = false;

  constructor(options: AzuriteOptions) {
    this.#options = options;
    this.#host = options.host ?? '127.0.0.1';
    this.#port = options.port ?? 0;
  }

  get port(): number {
    return this.#port;
  }

  get running(): boolean {
    return this.#child !== undefined;
  }

  get blobEndpoint(): string {
    const host = this.#host.includes(':') ? `[${this.#host}]` : this.#host;
    return `http://${host}:${this.#port}/${AZURITE_ACCOUNT_NAME}`;
  }

  get connectionString(): string {
    return (
      `DefaultEndpointsProtocol=http;AccountName=${AZURITE_ACCOUNT_NAME};` +
      `AccountKey=${AZURITE_ACCOUNT_KEY};BlobEndpoint=${this.blobEndpoint};`
    );
  }

  start(): Promise<void> {
    if (this.#closed) return Promise.reject(new Error('Azurite was closed'));
    if (this.#child !== undefined) return this.#starting ?? Promise.resolve();
    this.#starting = this.#spawn().finally(() => (this.#starting = undefined));
    return this.#starting;
  }

  stop(): Promise<void> {
    this.#stopping ??= this.#stop().finally(() => (this.#stopping = undefined));
    return this.#stopping;
  }

  async close(): Promise<void> {
    this.#closed = true;
    await this.#starting?.catch(() => undefined);
    await this.stop();
  }

  async #spawn(): Promise<void> {
    await mkdir(this.#options.dataDir, { recursive: true });
    const script = await azuriteBlobScript();
    const args = [
      script,
      '--blobHost',
      this.#host,
      '--blobPort',
      String(this.#port),
      '--location',
      this.#options.dataDir,
      '--disableTelemetry',
      '--skipApiVersionCheck',
      '--silent',
    ];
    // setpriv --pdeathsig: Azurite ends with its parent, even when the parent is killed, instead
    // of holding the port with nobody to stop it.
    const setpriv = await findExecutable('setpriv');
    const [command, ...commandArgs] =
      setpriv === undefined
        ? [process.execPath, ...args]
        : [setpriv, '--pdeathsig', 'TERM', process.execPath, ...args];
    // Its own process group: a Ctrl-C at the terminal reaches wirewatch, which stops Azurite
    // last (after the agent's final uploads), not Azurite directly.
    const child = spawn(command, commandArgs, {
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
    });
    let output = '';
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
      child.once('exit', (code, signal) => resolve({ code, signal })),
    );
    this.#child = child;
    this.#exited = exited.then(() => {
      if (this.#child === child) this.#child = undefined;
    });
    try {
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => {
          reject(
            new Error(
              `Azurite did not listen within ${this.#options.startTimeoutMs ?? 30_000} ms: ${output.trim()}`,
            ),
          );
        }, this.#options.startTimeoutMs ?? 30_000);
        const onData = (chunk: Buffer) => {
          // Kept short: only the start-up lines matter, and a long-lived process must not grow.
          if (output.length < 64 * 1024) output += chunk.toString('utf8');
          const listening = /successfully listens on \S+:(\d+)/.exec(output);
          if (listening !== null) {
            clearTimeout(timer);
            this.#port = Number(listening[1]);
            resolve();
          }
        };
        child.stdout.on('data', onData);
        child.stderr.on('data', onData);
        child.once('error', (err) => {
          clearTimeout(timer);
          reject(new Error(`cannot run Azurite: ${err.message}`));
        });
        void exited.then(({ code, signal }) => {
          clearTimeout(timer);
          reject(
            new Error(
              `Azurite exited (${code === null ? `signal ${signal}` : `code ${code}`}) before it listened: ${output.trim()}`,
            ),
          );
        });
      });
    } catch (err) {
      await this.#stop();
      throw err;
    }
    // Past start-up its log is not needed, but the pipes must still be read or Azurite blocks.
    child.stdout.resume();
    child.stderr.resume();
  }

  async #stop(): Promise<void> {
    const child = this.#child;
    const exited = this.#exited;
    if (child === undefined || exited === undefined) return;
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), KILL_AFTER_MS);
    try {
      await exited;
    } finally {
      clearTimeout(timer);
    }
  }
}

/** The azurite-blob entry point of the installed azurite package (its `bin`), run with node. */
async function azuriteBlobScript(): Promise<string> {
  const require = createRequire(import.meta.url);
  const manifest = require.resolve('azurite/package.json');
  const { bin } = JSON.parse(await readFile(manifest, 'utf8')) as {
    bin?: Record<string, string>;
  };
  const entry = bin?.['azurite-blob'];
  if (entry === undefined) throw new Error('the azurite package has no azurite-blob binary');
  return path.join(path.dirname(manifest), entry);
}
