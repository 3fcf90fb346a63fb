import { describe, expect, it } from 'vitest';
import type { Clock } from './capture-options.js';
import { LiveFlush } from './live-flush.js';
import { LIVE_FLUSH_MS } from './tcpdump.js';

/** A clock whose timers run only when the test says so. */
function manualClock(): Clock & { timers: Map<number, { fn: () => void; ms: number }> } {
  const timers = new Map<number, { fn: () => void; ms: number }>();
  let next = 1;
  return {
    timers,
    now: () => 0,
    setTimeout(fn, ms) {
      const id = next++;
      timers.set(id, { fn, ms });
      return id;
    },
    clearTimeout(handle) {
      if (typeof handle === 'number') timers.delete(handle);
    },
  };
}

async function runTimers(clock: ReturnType<typeof manualClock>): Promise<number[]> {
  const due = [...clock.timers.entries()];
  clock.timers.clear();
  for (const [, timer] of due) timer.fn();
  await new Promise((resolve) => setImmediate(resolve));
  return due.map(([, timer]) => timer.ms);
}

describe('LiveFlush', () => {
  it('flushes at once for the first viewer, then every LIVE_FLUSH_MS until the last leaves', async () => {
    const clock = manualClock();
    let flushes = 0;
    const live = new LiveFlush({
      clock,
      flush: () => Promise.resolve(void flushes++),
      ended: () => false,
    });
    expect(live.watching).toBe(false);
    const release1 = live.watch();
    const release2 = live.watch();
    expect(live.watching).toBe(true);
    expect(await runTimers(clock)).toEqual([0]);
    expect(await runTimers(clock)).toEqual([LIVE_FLUSH_MS]);
    expect(flushes).toBe(2);
    release1();
    release1(); // twice is once
    expect(live.watching).toBe(true);
    release2();
    expect(live.watching).toBe(false);
    expect(clock.timers.size).toBe(0);
  });

  it('re-arms no timer once tcpdump has ended', async () => {
    const clock = manualClock();
    let ended = false;
    const live = new LiveFlush({
      clock,
      flush: () => Promise.resolve(void (ended = true)),
      ended: () => ended,
    });
    live.watch();
    await runTimers(clock);
    expect(clock.timers.size).toBe(0);
  });

  it('cancel stops the pending flush', () => {
    const clock = manualClock();
    const live = new LiveFlush({ clock, flush: () => Promise.resolve(), ended: () => false });
    live.watch();
    live.cancel();
    expect(clock.timers.size).toBe(0);
  });
});
