import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createControlFixture, type ControlFixture } from '../../test/support/control-context.js';

const figures = (packets: number) => ({
  packets,
  bytes: packets * 100,
  kernelDrops: 0,
  at: '2030-01-01T00:00:01.000Z',
});

describe('LiveProgress', () => {
  let f: ControlFixture;
  beforeEach(async () => {
    f = await createControlFixture();
  });
  afterEach(async () => {
    await f.close();
  });

  it('serves the latest figures from memory and writes them at most every persistMs', async () => {
    const { progress } = f.memory({ persistMs: 30_000 });
    const s = await f.addSession({ status: 'Running' });
    await progress.record(s.id, f.vmId, figures(1));
    expect((await f.store.getSessionById(s.id))?.progress?.packets).toBe(1);
    f.advance(10_000);
    await progress.record(s.id, f.vmId, figures(2));
    const stored = (await f.store.getSessionById(s.id))!;
    expect(stored.progress?.packets).toBe(1);
    expect(progress.withLive(stored).progress?.packets).toBe(2);
    f.advance(20_000);
    await progress.record(s.id, f.vmId, figures(3));
    expect((await f.store.getSessionById(s.id))?.progress?.packets).toBe(3);
  });

  it('knows which agent reported it, and take() hands over and forgets', async () => {
    const { progress } = f.memory();
    const s = await f.addSession({ status: 'Running' });
    progress.note(s.id, f.vmId, figures(5));
    expect(progress.isHeldFor(s.id, f.vmId)).toBe(true);
    expect(progress.isHeldFor(s.id, 'another-vm')).toBe(false);
    expect(progress.take(s.id)).toEqual({
      packets: 5,
      bytes: 500,
      kernelDrops: 0,
      at: new Date('2030-01-01T00:00:01.000Z'),
    });
    expect(progress.take(s.id)).toBeUndefined();
    expect(progress.isHeldFor(s.id, f.vmId)).toBe(false);
  });

  it('forgets a session gone from the store', async () => {
    const { progress } = f.memory({ persistMs: 0 });
    const s = await f.addSession({ status: 'Running' });
    await f.store.deleteSession(s.id);
    await progress.record(s.id, f.vmId, figures(1));
    expect(progress.isHeldFor(s.id, f.vmId)).toBe(false);
  });
});
