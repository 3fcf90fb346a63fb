/**
 * A capture's time window: its start (when tcpdump said it listens) and its deadline, on the
 * wall clock packets are stamped with and on the monotonic clock the time limit is measured on,
 * and where the window ends on the kernel's clock once the deadline has passed.
 */
import type { Clock } from './capture-options.js';

/**
 * A step of the wall clock smaller than this between the start and the deadline is not told
 * apart from the drift between the wall and the monotonic clock.
 */
const CLOCK_STEP_MS = 1000;

export class CaptureWindow {
  readonly #clock: Clock;
  startedAt = new Date(0);
  /** The start, whole ms since the epoch; 0 until {@link start}. */
  startedMs = 0;
  /** The start on the monotonic clock. */
  #startedMono = 0;
  /** The deadline: start + the time limit, on the wall clock (the stop time it gives) and the monotonic one. */
  deadlineMs = 0;
  #deadlineMono = 0;
  /**
   * Set once the deadline has passed: packets stamped after this (µs since the epoch, on the
   * clock the kernel stamps with) are left out.
   */
  endUs: number | undefined;

  constructor(clock: Clock) {
    this.#clock = clock;
  }

  monotonicNow(): number {
    return this.#clock.monotonicNow?.() ?? this.#clock.now();
  }

  /**
   * Sets the start: `readyAt` (ms since the epoch, e.g. the mtime of tcpdump's "listening on")
   * when it is known and not in the future, else now.
   */
  start(readyAt: number): void {
    const wallNow = this.#clock.now();
    const monoNow = this.monotonicNow();
    // Whole milliseconds, as the start is reported: the window is exactly what it says.
    this.startedMs = Math.floor(Math.min(wallNow, readyAt > 0 ? readyAt : wallNow));
    this.#startedMono = monoNow - (wallNow - this.startedMs);
    this.startedAt = new Date(this.startedMs);
  }

  /** Sets the deadline `seconds` after the start; returns the ms until it. */
  limit(seconds: number): number {
    this.deadlineMs = this.startedMs + seconds * 1000;
    this.#deadlineMono = this.#startedMono + seconds * 1000;
    return Math.max(0, this.#deadlineMono - this.monotonicNow());
  }

  beforeDeadline(): boolean {
    return this.monotonicNow() < this.#deadlineMono;
  }

  /**
   * The time limit is up. Packets stamped after the deadline are left out of what the drain
   * still brings: on the kernel's clock, the deadline is where the wall clock is now, less how
   * late this runs (a loaded host), and plus any step of the wall clock since the start.
   * Returns {@link endUs}.
   */
  end(): number {
    const late = this.monotonicNow() - this.#deadlineMono;
    const step = this.#clock.now() - late - this.deadlineMs;
    const endMs = Math.abs(step) < CLOCK_STEP_MS ? this.deadlineMs : this.deadlineMs + step;
    this.endUs = Math.round(endMs * 1000);
    return this.endUs;
  }
}
