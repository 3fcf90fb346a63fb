import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createControlFixture, type ControlFixture } from '../../test/support/control-context.js';
import { subA } from '../../test/support/store-conformance/fixtures.js';
import { CaptureOperations } from './operations.js';
import { NetworkWatchers } from './watchers.js';

const caller = { actor: 'token:t1', sourceIp: '192.0.2.10' };

describe('NetworkWatchers', () => {
  let f: ControlFixture;
  let watchers: NetworkWatchers;
  beforeEach(async () => {
    f = await createControlFixture();
    const memory = f.memory();
    watchers = new NetworkWatchers(f.ctx, memory, new CaptureOperations(f.ctx, memory, 60_000));
  });
  afterEach(async () => {
    await f.close();
  });

  const put = (name: string, location: string, tags?: Record<string, string>) =>
    watchers.put({ subscriptionId: subA, resourceGroup: 'rg', name, location, tags });

  it('one per location; a location never changes; tags kept unless given', async () => {
    expect((await put('w1', 'eastus', { a: '1' })).created).toBe(true);
    const again = await put('w1', 'eastus');
    expect(again).toMatchObject({ created: false, record: { tags: { a: '1' } } });
    await expect(put('w1', 'westeurope')).rejects.toMatchObject({ code: 'InvalidLocation' });
    await expect(put('w2', 'eastus')).rejects.toMatchObject({
      code: 'NetworkWatcherCountLimitReached',
    });
  });

  it('require names the missing watcher', async () => {
    await expect(watchers.require(subA, 'rg', 'nope')).rejects.toMatchObject({
      code: 'ParentResourceNotFound',
      target: 'networkWatcherName',
    });
  });

  it('delete ends its running captures, tells the agents, and is audited', async () => {
    f.agents.connected.add(f.vmId);
    const running = await f.addSession({ status: 'Running' });
    const ended = await f.addSession({ status: 'Stopped', stopReason: 'TimeExceeded' });
    const op = await watchers.delete(subA, 'NetworkWatcherRG', 'NetworkWatcher_westus', caller);
    expect(op).toMatchObject({ kind: 'delete', status: 'Succeeded', location: 'westus' });
    expect(f.agents.sent.map((m) => m.message)).toEqual([
      { type: 'stop', sessionId: running.id, reason: 'ManualIntervention' },
    ]);
    expect(await f.store.getSessionById(running.id)).toBeUndefined();
    expect(await f.store.getSessionById(ended.id)).toBeUndefined();
    const audit = await f.store.listAudit(subA, { limit: 10 });
    expect(audit.items).toEqual([
      expect.objectContaining({
        actor: 'token:t1',
        sourceIp: '192.0.2.10',
        action: 'networkWatcher.delete',
        resourceId: `/subscriptions/${subA}/resourceGroups/NetworkWatcherRG/providers/Microsoft.Network/networkWatchers/NetworkWatcher_westus`,
        detail: { location: 'westus', stoppedCaptures: 1 },
      }),
    ]);
    expect(await watchers.delete(subA, 'NetworkWatcherRG', 'NetworkWatcher_westus', caller)).toBe(
      undefined,
    );
  });

  it('ensureFor makes NetworkWatcher_{location} only where the location has none', async () => {
    await watchers.ensureFor(subA, 'westus');
    expect(await f.store.listWatchers(subA)).toHaveLength(1);
    await watchers.ensureFor(subA, 'northeurope');
    expect(
      await f.store.getWatcher(subA, 'NetworkWatcherRG', 'NetworkWatcher_northeurope'),
    ).toMatchObject({ location: 'northeurope', tags: {} });
  });
});
