/**
 * Live viewers of a capture: while any watch, tcpdump's buffered output is flushed every
 * LIVE_FLUSH_MS, so each packet reaches the file (or the ring's pipe) soon after the kernel
 * hands it over, however quiet the capture.
 */
import type { Clock } from './capture-options.js';
import { LIVE_FLUSH_MS } from './tcpdump.js';

export interface LiveFlushOptions {
  readonly clock: Clock;
  /** Between flushes (default LIVE_FLUSH_MS). */
  readonly intervalMs?: number;
  /** Has tcpdump write out what it holds. */
  readonly flush: () => Promise<void>;
  /** tcpdump has exited: no timer may re-arm. */
  readonly ended: () => boolean;
}

export class LiveFlush {
  readonly #options: LiveFlushOptions;
  #watchers = 0;
  #timer: unknown;

  constructor(options: LiveFlushOptions) {
    this.#options = options;
  }

  /** Whether any viewer is watching. */
  get watching(): boolean {
    return this.#watchers > 0;
  }

  /** A viewer is watching until the returned function is called (safe to call twice). */
  watch(): () => void {
    this.#watchers += 1;
    if (this.#watchers === 1) this.#schedule(0);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.#watchers -= 1;
      if (this.#watchers === 0) this.#options.clock.clearTimeout(this.#timer);
    };
  }

  /** Stops the flushes (tcpdump has exited). */
  cancel(): void {
    this.#options.clock.clearTimeout(this.#timer);
  }

  #schedule(ms: number): void {
    this.#timer = this.#options.clock.setTimeout(() => {
      void this.#options.flush().then(() => {
        if (this.#watchers > 0 && !this.#options.ended())
          this.#schedule(this.#options.intervalMs ?? LIVE_FLUSH_MS);
      });
    }, ms);
  }
}
