import { describe, expect, it } from 'vitest';
import type { Clock } from './capture-options.js';
import { CaptureWindow } from './capture-window.js';

/** A clock whose wall and monotonic readings the test sets. */
function fakeClock(wall: number, mono: number): Clock & { wall: number; mono: number } {
  return {
    wall,
    mono,
    now() {
      return this.wall;
    },
    monotonicNow() {
      return this.mono;
    },
    setTimeout: () => undefined,
    clearTimeout: () => undefined,
  };
}

describe('CaptureWindow', () => {
  it('starts when tcpdump said it listens, in whole ms, never in the future', () => {
    const clock = fakeClock(1_000_500.7, 50);
    const window = new CaptureWindow(clock);
    window.start(1_000_400.9);
    expect(window.startedMs).toBe(1_000_400);
    expect(window.startedAt.getTime()).toBe(1_000_400);
    window.start(2_000_000);
    expect(window.startedMs).toBe(1_000_500);
    window.start(0);
    expect(window.startedMs).toBe(1_000_500);
  });

  it('measures the deadline on the monotonic clock, from the start', () => {
    const clock = fakeClock(1_000_000, 5_000);
    const window = new CaptureWindow(clock);
    window.start(999_900); // tcpdump listened 100 ms ago
    expect(window.limit(10)).toBe(9_900);
    expect(window.deadlineMs).toBe(1_009_900);
    expect(window.beforeDeadline()).toBe(true);
    clock.mono += 9_900;
    expect(window.beforeDeadline()).toBe(false);
  });

  it('ends at the deadline when the wall clock only drifted, however late the timer ran', () => {
    const clock = fakeClock(1_000_000, 0);
    const window = new CaptureWindow(clock);
    window.start(1_000_000);
    window.limit(60);
    clock.mono += 60_000 + 250; // the timer ran 250 ms late
    clock.wall += 60_000 + 250 + 400; // and the wall clock drifted 400 ms ahead
    expect(window.end()).toBe(1_060_000 * 1000);
    expect(window.endUs).toBe(1_060_000 * 1000);
  });

  it('moves the end by a step of the wall clock, on the clock packets are stamped with', () => {
    const clock = fakeClock(1_000_000, 0);
    const window = new CaptureWindow(clock);
    window.start(1_000_000);
    window.limit(60);
    clock.mono += 60_000;
    clock.wall += 60_000 - 3_600_000; // the wall clock stepped back an hour
    expect(window.end()).toBe((1_060_000 - 3_600_000) * 1000);
  });

  it('without a monotonic clock, measures on the wall clock', () => {
    const clock: Clock = {
      now: () => 5_000,
      setTimeout: () => undefined,
      clearTimeout: () => undefined,
    };
    const window = new CaptureWindow(clock);
    window.start(5_000);
    expect(window.limit(1)).toBe(1_000);
  });
});
