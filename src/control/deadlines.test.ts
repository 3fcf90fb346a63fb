import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createControlFixture, type ControlFixture } from '../../test/support/control-context.js';
import { session, subA } from '../../test/support/store-conformance/fixtures.js';
import { stopTimeOf } from './deadlines.js';

describe('stopTimeOf', () => {
  const start = new Date('2030-01-01T00:00:00.000Z');
  const s = session(subA, { properties: { timeLimitInSeconds: 60 }, captureStartTime: start });

  it('a time-limit stop ends at the deadline when reported later', () => {
    const late = new Date(start.getTime() + 90_000);
    expect(stopTimeOf(s, 'TimeExceeded', late)).toEqual(new Date(start.getTime() + 60_000));
  });

  it('any other stop, or one before the deadline, keeps its time', () => {
    const late = new Date(start.getTime() + 90_000);
    const early = new Date(start.getTime() + 30_000);
    expect(stopTimeOf(s, 'ManualIntervention', late)).toEqual(late);
    expect(stopTimeOf(s, 'TimeExceeded', early)).toEqual(early);
    expect(stopTimeOf({ ...s, captureStartTime: null }, 'TimeExceeded', late)).toEqual(late);
  });
});

describe('DeadlineBackstop', () => {
  let f: ControlFixture;
  beforeEach(async () => {
    f = await createControlFixture();
  });
  afterEach(async () => {
    await f.close();
  });

  it('tells a connected agent to stop a capture running past its limit and the grace', async () => {
    const { deadlines } = f.memory({ graceMs: 5_000 });
    const s = await f.addSession({ status: 'Running', properties: { timeLimitInSeconds: 60 } });
    f.agents.connected.add(f.vmId);
    deadlines.note(s, f.ctx.now());
    f.advance(64_000);
    expect(await deadlines.sweep()).toBe(0);
    f.advance(2_000);
    expect(await deadlines.sweep()).toBe(1);
    expect(f.agents.sent).toEqual([
      { vmId: f.vmId, message: { type: 'stop', sessionId: s.id, reason: 'TimeExceeded' } },
    ]);
    expect((await f.store.getSessionById(s.id))?.stopRequested).toBe('TimeExceeded');
    // Once only.
    expect(await deadlines.sweep()).toBe(0);
  });

  it("leaves a disconnected agent's capture, and one already asked to stop or forgotten", async () => {
    const { deadlines } = f.memory({ graceMs: 0 });
    const a = await f.addSession({ status: 'Running', properties: { timeLimitInSeconds: 1 } });
    deadlines.note(a, f.ctx.now());
    f.advance(10_000);
    expect(await deadlines.sweep()).toBe(0);
    f.agents.connected.add(f.vmId);
    const b = await f.addSession({
      status: 'Running',
      stopRequested: 'ManualIntervention',
      properties: { timeLimitInSeconds: 1 },
    });
    deadlines.note(b, f.ctx.now());
    const c = await f.addSession({ status: 'Running', properties: { timeLimitInSeconds: 1 } });
    deadlines.note(c, f.ctx.now());
    deadlines.forget(c.id);
    f.advance(10_000);
    expect(await deadlines.sweep()).toBe(1);
    expect(f.agents.sent.map((m) => m.message)).toEqual([
      { type: 'stop', sessionId: a.id, reason: 'TimeExceeded' },
    ]);
  });
});
