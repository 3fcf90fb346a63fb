/**
 * A clock that moves only when a test moves it (the `Clock` of src/capture/runner.ts), so that a
 * test drives timers instead of sleeping: `advance(ms)` runs every timer due on the way, in order.
 */
import type { Clock } from '../../src/capture/runner.js';

interface Timer {
  readonly at: number;
  readonly fn: () => void;
}

export class ManualClock implements Clock {
  #time: number;
  #nextId = 1;
  readonly #timers = new Map<number, Timer>();
  /** How many timers have been set so far (a callback that re-arms itself counts each time). */
  scheduled = 0;

  constructor(start = Date.UTC(2026, 0, 1)) {
    this.#time = start;
  }

  now(): number {
    return this.#time;
  }

  setTimeout(fn: () => void, ms: number): number {
    const id = this.#nextId++;
    this.#timers.set(id, { at: this.#time + Math.max(0, ms), fn });
    this.scheduled++;
    return id;
  }

  clearTimeout(handle: unknown): void {
    if (typeof handle === 'number') this.#timers.delete(handle);
  }

  /** Timers set and not yet run or cleared. */
  get pending(): number {
    return this.#timers.size;
  }

  /** Moves the time `ms` forward, running each timer due on the way at its time. */
  advance(ms: number): void {
    const end = this.#time + ms;
    for (;;) {
      let due: [number, Timer] | undefined;
      for (const entry of this.#timers) {
        if (entry[1].at <= end && (due === undefined || entry[1].at < due[1].at)) due = entry;
      }
      if (due === undefined) break;
      this.#timers.delete(due[0]);
      this.#time = Math.max(this.#time, due[1].at);
      due[1].fn();
    }
    this.#time = end;
  }
}
