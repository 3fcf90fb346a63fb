/**
 * How a capture stops: why (the first reason wins, except that an error wins over any other),
 * and the order of signals that makes tcpdump write every packet it captured before it exits —
 * the drain that lets the kernel hand over its last block, SIGINT (for a ring only between
 * tcpdump's writes to the pipe), SIGKILL if it hangs.
 */
import type { ChildProcess } from 'node:child_process';
import type { WirewatchError } from '../model/errors.js';
import type { Clock, StopReason } from './capture-options.js';
import { KILL_AFTER_MS } from './tcpdump-process.js';
import { outputWriteState, type OutputWriteState } from './tcpdump.js';

/** Ring mode: how long a stop waits for tcpdump to be between writes before it interrupts anyway. */
const BETWEEN_WRITES_WAIT_MS = 5_000;

/** Ring mode: how often a stop looks again whether tcpdump is between writes. */
const BETWEEN_WRITES_RETRY_MS = 10;

/** Options of {@link StopSequence}. */
export interface StopSequenceOptions {
  readonly clock: Clock;
  /** How long a stop request or time limit waits before SIGINT (the kernel's block timeout). */
  readonly drainMs: number;
  /** The tcpdump process, once it runs. */
  readonly child: () => ChildProcess | undefined;
  /**
   * tcpdump writes into a pipe this process reads (a ring): SIGINT only between its writes.
   * Asked when the stop signals, as the runner learns its mode as it starts.
   */
  readonly throughPipe: () => boolean;
}

/** The reason a capture stops and the signals that stop its tcpdump. */
export class StopSequence {
  readonly #options: StopSequenceOptions;
  #reason: StopReason | undefined;
  #error: WirewatchError | undefined;
  /** Whether tcpdump's output is still written (false once an error or the byte limit stops it). */
  #writing = true;
  /** tcpdump listens: stop signals can be sent. */
  #listening = false;
  #interrupted = false;
  /** tcpdump has exited: nothing more is sent and no timer re-arms. */
  #done = false;
  /** The drain before SIGINT, the retries between writes, the SIGKILL fallback. */
  #timers: unknown[] = [];

  constructor(options: StopSequenceOptions) {
    this.#options = options;
  }

  /** Why the capture stops; undefined while nothing asked it to. */
  get reason(): StopReason | undefined {
    return this.#reason;
  }

  get error(): WirewatchError | undefined {
    return this.#error;
  }

  /** Whether tcpdump's output is still written: false once an error or the byte limit stopped it. */
  get writing(): boolean {
    return this.#writing;
  }

  /** tcpdump listens: a stop asked for while it was starting is acted on now. */
  listening(): void {
    this.#listening = true;
    if (this.#reason !== undefined) this.#signal(this.#reason);
  }

  /** Asks tcpdump to stop for `reason`; an error wins over the reason a stop was under way for. */
  request(reason: StopReason, error?: WirewatchError): void {
    if (this.#reason !== undefined) {
      if (reason !== 'Error' || this.#reason === 'Error') return;
      this.#reason = reason;
      this.#error = error;
      this.#writing = false;
      this.#interrupt();
      return;
    }
    this.#reason = reason;
    this.#error = error;
    if (this.#listening) this.#signal(reason);
  }

  /** tcpdump has exited: the pending signals are dropped. */
  exited(): void {
    this.#done = true;
    for (const timer of this.#timers) this.#options.clock.clearTimeout(timer);
  }

  /** The capture failed after tcpdump exited: an error the first one found stays. */
  fail(error: WirewatchError): void {
    this.#reason = 'Error';
    this.#error ??= error;
  }

  /**
   * The byte limit showed only in the final file (tcpdump's output trails the size check by its
   * buffer): it names the stop unless someone stopped the capture by hand first.
   */
  cutByLimit(): void {
    if (this.#reason === 'TimeExceeded') this.#reason = 'SessionBytesExceeded';
  }

  #signal(reason: StopReason): void {
    if (reason === 'SessionBytesExceeded' || reason === 'Error') {
      this.#writing = false;
      this.#interrupt();
    } else {
      // Let the kernel hand over the packets captured before the stop first.
      this.#later(() => this.#interrupt(), this.#options.drainMs);
    }
  }

  /** SIGINT: tcpdump flushes what it captured, prints its counters and exits; SIGKILL if it hangs. */
  #interrupt(): void {
    if (this.#done || this.#interrupted) return;
    this.#interrupted = true;
    if (this.#options.throughPipe()) {
      this.#interruptBetweenWrites(this.#monotonicNow() + BETWEEN_WRITES_WAIT_MS);
    } else {
      this.#sendInterrupt();
    }
  }

  #monotonicNow(): number {
    const clock = this.#options.clock;
    return clock.monotonicNow?.() ?? clock.now();
  }

  /**
   * Ring mode: tcpdump writes into a pipe this process reads, and its SIGINT handler does not
   * restart an interrupted write (only SIGUSR1/SIGUSR2 have SA_RESTART). A SIGINT that lands
   * while the pipe is full (this process reading behind) fails the write with EINTR, and stdio
   * throws away the 4 KiB it held: packets tcpdump counted as captured but never wrote. So
   * tcpdump is frozen (SIGSTOP) and interrupted only when it is not inside a write to its
   * output; otherwise it goes on, this process reads on, and the stop looks again shortly.
   */
  #interruptBetweenWrites(untilMono: number): void {
    const child = this.#options.child();
    if (this.#done || child?.pid === undefined) return;
    const waitOn = this.#monotonicNow() < untilMono;
    let state: OutputWriteState = 'unknown';
    try {
      if (child.kill('SIGSTOP')) state = outputWriteState(child.pid);
      // A pending SIGINT is handled as tcpdump resumes, before it can start another write.
      if (state === 'waiting' || state === 'running' || state === 'unknown' || !waitOn) {
        this.#sendInterrupt();
      }
    } finally {
      child.kill('SIGCONT');
    }
    if ((state === 'writing' || state === 'not-stopped') && waitOn) {
      this.#later(() => this.#interruptBetweenWrites(untilMono), BETWEEN_WRITES_RETRY_MS);
    }
  }

  #sendInterrupt(): void {
    this.#options.child()?.kill('SIGINT');
    this.#later(() => {
      if (!this.#done) this.#options.child()?.kill('SIGKILL');
    }, KILL_AFTER_MS);
  }

  #later(fn: () => void, ms: number): void {
    this.#timers.push(this.#options.clock.setTimeout(fn, ms));
  }
}
