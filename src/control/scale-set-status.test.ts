import { describe, expect, it } from 'vitest';
import { at, session, subA } from '../../test/support/store-conformance/fixtures.js';
import type { SessionStopReason } from '../model/stop-reason.js';
import type { SessionRecord } from '../store/store.js';
import { aggregateOf, summedProgress } from './scale-set-status.js';

let next = 0;
/** A child for instance `n` with the given state. */
function child(overrides: Partial<SessionRecord> = {}): SessionRecord {
  const n = String(next++);
  return session(subA, { name: `Fleet/${n}`, parentId: 'p', instanceId: n, ...overrides });
}
const running = (start: number) => child({ status: 'Running', captureStartTime: at(start) });
const stopped = (start: number | null, stop: number, reason: SessionStopReason = 'TimeExceeded') =>
  child({
    status: 'Stopped',
    stopReason: reason,
    captureStartTime: start === null ? null : at(start),
    stopTime: at(stop),
  });
const failed = (stop: number) =>
  child({
    status: 'Error',
    stopReason: 'Error',
    errors: [{ code: 'AgentStopped', message: 'not connected' }],
    stopTime: at(stop),
  });

describe('aggregateOf', () => {
  it('is NotStarted with no child, or while none has started', () => {
    expect(aggregateOf([]).status).toBe('NotStarted');
    expect(aggregateOf([child(), child()])).toMatchObject({
      status: 'NotStarted',
      captureStartTime: null,
      stopTime: null,
      stopReason: null,
    });
  });

  it('is Running while any child runs, with the earliest start', () => {
    const a = aggregateOf([child(), running(20), running(10), failed(12)]);
    expect(a).toMatchObject({ status: 'Running', captureStartTime: at(10), stopTime: null });
  });

  it('stays Running while one has run and another may still start; a failed one never ran', () => {
    expect(aggregateOf([stopped(10, 20), child()]).status).toBe('Running');
    const failedAfterStart = { ...failed(12), captureStartTime: at(11) };
    expect(aggregateOf([failedAfterStart, child()]).status).toBe('NotStarted');
  });

  it('is Stopped when all ended and one did not fail, with the last stop', () => {
    const a = aggregateOf([failed(15), stopped(10, 30), stopped(12, 25)]);
    expect(a).toMatchObject({ status: 'Stopped', captureStartTime: at(10), stopTime: at(30) });
  });

  it('is Error only when every child failed', () => {
    expect(aggregateOf([failed(5), failed(6)])).toMatchObject({
      status: 'Error',
      stopReason: 'Error',
    });
  });

  it("takes the parent's own stop reason, else the children's common one, else the first to end", () => {
    const mixed = [stopped(1, 30, 'TimeExceeded'), stopped(1, 20, 'TargetDeleted')];
    expect(aggregateOf(mixed, 'ManualIntervention').stopReason).toBe('ManualIntervention');
    expect(aggregateOf([stopped(1, 9), stopped(1, 8)]).stopReason).toBe('TimeExceeded');
    expect(aggregateOf(mixed).stopReason).toBe('TargetDeleted');
  });

  it("lists every child's errors, each led by its instance", () => {
    const bad = failed(5);
    const a = aggregateOf([running(1), bad]);
    expect(a.errors).toEqual([
      { code: 'AgentStopped', message: `instance ${bad.instanceId}: not connected` },
    ]);
  });
});

describe('summedProgress', () => {
  it('sums packets, bytes and drops, at the latest report; null when none reported', () => {
    expect(summedProgress([child(), child()])).toBeNull();
    const p = summedProgress([
      child({ progress: { packets: 1, bytes: 100, kernelDrops: 2, at: at(5) } }),
      child(),
      child({ progress: { packets: 3, bytes: 300, kernelDrops: 0, at: at(9) } }),
    ]);
    expect(p).toEqual({ packets: 4, bytes: 400, kernelDrops: 2, at: at(9) });
  });
});
