import { describe, expect, it } from 'vitest';
import { ManualClock } from './manual-clock.js';

describe('ManualClock', () => {
  it('runs due timers in order at their time, and none that were cleared', () => {
    const clock = new ManualClock(1000);
    const ran: [string, number][] = [];
    clock.setTimeout(() => ran.push(['b', clock.now()]), 20);
    clock.setTimeout(() => {
      ran.push(['a', clock.now()]);
      // Re-armed from inside a timer: runs in the same advance when it falls due.
      clock.setTimeout(() => ran.push(['c', clock.now()]), 5);
    }, 10);
    const cleared = clock.setTimeout(() => ran.push(['x', clock.now()]), 15);
    clock.clearTimeout(cleared);
    clock.setTimeout(() => ran.push(['later', clock.now()]), 100);
    clock.advance(30);
    expect(ran).toEqual([
      ['a', 1010],
      ['c', 1015],
      ['b', 1020],
    ]);
    expect(clock.now()).toBe(1030);
    expect(clock.pending).toBe(1);
    expect(clock.scheduled).toBe(5);
  });
});
