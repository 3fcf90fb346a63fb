/**
 * One tcpdump process: its work directory and stderr log, the spawn, the guard that stops it if
 * this process dies, the wait until it listens, and the record of how it exited.
 */
import { spawn as nodeSpawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { WirewatchError } from '../model/errors.js';
import type { SpawnFunction } from './capture-options.js';
import { startTcpdumpGuard, type TcpdumpGuard } from './tcpdump-guard.js';
import { TcpdumpLog } from './tcpdump-log.js';
import {
  catchesSignal,
  explainTcpdumpFailure,
  outputWriteState,
  processState,
  type OutputWriteState,
} from './tcpdump.js';

/** How long tcpdump may take to exit after SIGINT before it is killed (a hung disk, say). */
export const KILL_AFTER_MS = 10_000;

/** How tcpdump exited, as a value (zx's ProcessOutput). */
export interface TcpdumpExit {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  /** The end of what tcpdump wrote to stderr (at most 16 KiB), as last read. */
  readonly stderrTail: string;
  /** From the spawn to the exit, ms. */
  readonly durationMs: number;
}

export interface TcpdumpStartOptions {
  readonly command: string;
  readonly args: readonly string[];
  /** tcpdump's stdout: the capture file's descriptor, or a pipe for Node to read. */
  readonly stdout: number | 'pipe';
  readonly spawn?: SpawnFunction;
  /** Start a guard that stops tcpdump after `delayMs` if this process dies (tcpdump-guard.ts). */
  readonly guard?: { readonly shell: string; readonly delayMs: number };
  readonly startTimeoutMs: number;
  /** For the explanation of a failure to start. */
  readonly interface: string;
  readonly netns: string | undefined;
}

export class TcpdumpProcess {
  readonly #workDir: string;
  readonly #log: TcpdumpLog;
  #child: ChildProcess | undefined;
  #guard: TcpdumpGuard | undefined;
  #exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }> | undefined;
  /** Whether this tcpdump flushes on SIGUSR2 (asked once, at the first flush). */
  #flushes: Promise<boolean> | undefined;
  #spawnedAt = 0;
  #exitedAt = 0;

  private constructor(workDir: string, log: TcpdumpLog) {
    this.#workDir = workDir;
    this.#log = log;
  }

  /** Makes the work directory and the stderr log; nothing runs yet. */
  static async create(): Promise<TcpdumpProcess> {
    const workDir = await mkdtemp(path.join(tmpdir(), 'wirewatch-tcpdump-'));
    try {
      return new TcpdumpProcess(workDir, await TcpdumpLog.create(path.join(workDir, 'stderr')));
    } catch (err) {
      await rm(workDir, { recursive: true, force: true });
      throw err;
    }
  }

  get log(): TcpdumpLog {
    return this.#log;
  }

  get child(): ChildProcess | undefined {
    return this.#child;
  }

  /**
   * Spawns tcpdump in its own process group (so a Ctrl-C on the terminal reaches only wirewatch,
   * which stops tcpdump after the kernel has handed over its last packets) and resolves once it
   * says it listens.
   */
  async start(o: TcpdumpStartOptions): Promise<void> {
    const spawn = o.spawn ?? nodeSpawn;
    const child = spawn(o.command, o.args, {
      stdio: ['ignore', o.stdout, this.#log.fd],
      detached: true,
    });
    this.#spawnedAt = performance.now();
    this.#child = child;
    this.#exit = new Promise((resolve) => {
      if (child.exitCode !== null || child.signalCode !== null) {
        this.#exitedAt = this.#spawnedAt;
        resolve({ code: child.exitCode, signal: child.signalCode });
        return;
      }
      child.once('exit', (code, signal) => {
        this.#exitedAt = performance.now();
        resolve({ code, signal });
      });
    });
    if (o.guard !== undefined && child.pid !== undefined) {
      // `ip netns exec` execs tcpdump: the child's pid is tcpdump's.
      this.#guard = startTcpdumpGuard(child.pid, o.guard);
    }
    await this.#waitUntilListening(child, o);
  }

  /** Resolves once tcpdump has exited, with its exit code or signal. */
  exited(): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    if (this.#exit === undefined) throw new Error('tcpdump was not started');
    return this.#exit;
  }

  /** The exit record, once {@link exited} has resolved. */
  async exitRecord(): Promise<TcpdumpExit> {
    const { code, signal } = await this.exited();
    return {
      code,
      signal,
      stderrTail: this.#log.text,
      durationMs: this.#exitedAt - this.#spawnedAt,
    };
  }

  /**
   * Has tcpdump write out the packets it holds (SIGUSR2), if this tcpdump does that (asked once)
   * and only while it waits for packets; `running` is asked again before the signal is sent.
   * Returns whether it was sent.
   *
   * tcpdump 4.99's SIGUSR2 handler calls fflush on its output at once, whatever the program was
   * doing: a signal that lands while tcpdump is inside fwrite, copying a packet into its stdio
   * buffer, writes out the buffer under the copy and leaves stdio's pointers inconsistent, so
   * bytes are written twice and a record is torn. The file's next record header is garbage and
   * the repair must cut everything after it (docs/reliability.md, "Flushing tcpdump"). So tcpdump
   * is frozen (SIGSTOP) and sent SIGUSR2 only when it is inside a system call other than a write
   * to its output: waiting for the kernel's next block of packets, outside any stdio call. The
   * pending signal runs as it resumes (SIGCONT), before it returns to its own code.
   *
   * Anywhere else, or busy (running), it is left alone until the next flush: the flush is for a
   * quiet capture, whose tcpdump waits for packets nearly all the time; a busy one fills its
   * buffer and writes it out by itself, and freezing it would only cost kernel drops.
   */
  async flush(running: () => boolean): Promise<boolean> {
    const child = this.#child;
    const pid = child?.pid;
    if (child === undefined || pid === undefined) return false;
    this.#flushes ??= catchesSignal(pid, 'SIGUSR2');
    if (!(await this.#flushes) || !running()) return false;
    try {
      if (processState(pid) === 'R') return false;
    } catch {
      return false; // gone
    }
    // Unknown (no way to tell a safe moment): no flush; a packet that shows late beats a torn file.
    let state: OutputWriteState = 'unknown';
    try {
      if (child.kill('SIGSTOP')) state = outputWriteState(pid);
      if (state === 'waiting') child.kill('SIGUSR2');
    } finally {
      child.kill('SIGCONT');
    }
    return state === 'waiting';
  }

  /** The guard is no longer needed: tcpdump has exited or is being cleaned up. */
  releaseGuard(): void {
    this.#guard?.release();
  }

  /** Releases the guard, closes the log and removes the work directory. */
  async close(): Promise<void> {
    this.#guard?.release();
    await this.#log.close().catch(() => undefined);
    await rm(this.#workDir, { recursive: true, force: true });
  }

  async #waitUntilListening(child: ChildProcess, o: TcpdumpStartOptions): Promise<void> {
    const timeoutMs = o.startTimeoutMs;
    let exited = false;
    let spawnError: Error | undefined;
    child.once('exit', () => (exited = true));
    child.once('error', (err) => (spawnError = err));
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const text = await this.#log.refresh();
      if (text.includes('listening on')) {
        // Once more, for the mtime of the write that said so.
        await this.#log.refresh();
        return;
      }
      if (spawnError !== undefined) {
        throw new WirewatchError('CaptureFailed', `cannot run tcpdump: ${spawnError.message}`, {
          cause: spawnError,
        });
      }
      if (exited) {
        await this.#log.refresh();
        throw new WirewatchError(
          'CaptureFailed',
          explainTcpdumpFailure(this.#log.text, o.interface, o.netns),
        );
      }
      if (Date.now() > deadline) {
        child.kill('SIGKILL');
        throw new WirewatchError('CaptureFailed', `tcpdump did not start within ${timeoutMs} ms`);
      }
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }
}
