import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createControlFixture, type ControlFixture } from '../../test/support/control-context.js';
import { subA } from '../../test/support/store-conformance/fixtures.js';
import { CaptureOperations } from './operations.js';

describe('CaptureOperations', () => {
  let f: ControlFixture;
  let ops: CaptureOperations;
  beforeEach(async () => {
    f = await createControlFixture();
    ops = new CaptureOperations(f.ctx, f.memory(), 60_000);
  });
  afterEach(async () => {
    await f.close();
  });

  const statusOf = async (subscriptionId: string, id: string) =>
    (await f.store.getOperation(subscriptionId, id))?.status;

  it('settles a create once its session runs, a stop once it has ended', async () => {
    const s = await f.addSession();
    const create = await ops.open('create', s);
    await ops.settle(s.id);
    expect(await statusOf(s.subscriptionId, create.id)).toBe('InProgress');
    await f.store.updateSession(s.id, { status: 'Running' });
    await ops.settle(s.id);
    expect(await statusOf(s.subscriptionId, create.id)).toBe('Succeeded');
    const stop = await ops.open('stop', s);
    await ops.settle(s.id);
    expect(await statusOf(s.subscriptionId, stop.id)).toBe('InProgress');
    await f.store.updateSession(s.id, { status: 'Stopped', stopReason: 'ManualIntervention' });
    await ops.settle(s.id);
    expect(await statusOf(s.subscriptionId, stop.id)).toBe('Succeeded');
  });

  it('fails a create whose session errored before it started, with its error', async () => {
    const s = await f.addSession();
    const create = await ops.open('create', s);
    const error = { code: 'CaptureFailed', message: 'tcpdump: no such device' };
    await f.store.updateSession(s.id, { status: 'Error', stopReason: 'Error', errors: [error] });
    await ops.settle(s.id);
    expect(await f.store.getOperation(s.subscriptionId, create.id)).toMatchObject({
      status: 'Failed',
      error,
    });
  });

  it('a delete removes the ended session as it completes', async () => {
    const s = await f.addSession({ status: 'Running', deleteRequested: true });
    const del = await ops.open('delete', s);
    await f.store.updateSession(s.id, { status: 'Stopped', stopReason: 'ManualIntervention' });
    await ops.settle(s.id);
    expect(await statusOf(s.subscriptionId, del.id)).toBe('Succeeded');
    expect(await f.store.getSessionById(s.id)).toBeUndefined();
  });

  it('fails a start no agent acknowledged by the deadline, and undoes it', async () => {
    const s = await f.addSession();
    const create = await ops.open('create', s);
    f.advance(59_999);
    expect(await ops.sweep()).toBe(0);
    f.advance(1);
    expect(await ops.sweep()).toBe(1);
    expect(await f.store.getSessionById(s.id)).toMatchObject({
      status: 'Error',
      stopReason: 'Error',
      errors: [
        {
          code: 'AgentStopped',
          message: 'The agent of the target VM was not connected within 60 s',
        },
      ],
    });
    expect(await f.store.getOperation(s.subscriptionId, create.id)).toMatchObject({
      status: 'Failed',
      error: { code: 'AgentStopped' },
    });
    expect(f.logs).toContainEqual({
      level: 'warn',
      msg: 'an operation was not acknowledged in time',
    });
  });

  it('forces a stop a connected agent did not acknowledge, and tells it again', async () => {
    f.agents.connected.add(f.vmId);
    const s = await f.addSession({ status: 'Running', stopRequested: 'ManualIntervention' });
    const stop = await ops.open('stop', s);
    f.advance(60_000);
    expect(await ops.sweep()).toBe(1);
    expect(await f.store.getSessionById(s.id)).toMatchObject({
      status: 'Stopped',
      stopReason: 'ManualIntervention',
      errors: [
        {
          code: 'AgentStopped',
          message:
            'Stop forced: the agent did not acknowledge the stop within 60 s; it is told to stop whenever it reconnects',
        },
      ],
    });
    expect(await statusOf(s.subscriptionId, stop.id)).toBe('Succeeded');
    expect(f.agents.sent.map((m) => m.message)).toEqual([
      { type: 'stop', sessionId: s.id, reason: 'ManualIntervention' },
    ]);
  });

  it('picks up the operations a previous server process left open', async () => {
    const s = await f.addSession();
    const earlier = new CaptureOperations(f.ctx, f.memory(), 60_000);
    const create = await earlier.open('create', s);
    f.advance(60_000);
    expect(await ops.sweep()).toBe(1);
    expect(await statusOf(s.subscriptionId, create.id)).toBe('Failed');
  });

  it('a completed operation is Succeeded as it is made', async () => {
    const op = await ops.completed('delete', subA, 'westus', '/x');
    expect(op).toMatchObject({ status: 'Succeeded', sessionId: '', kind: 'delete' });
    expect(await statusOf(subA, op.id)).toBe('Succeeded');
  });
});
