/** The store conformance suite for network watchers. */
import { randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import type { NetworkWatcherRecord, Store } from '../../../src/store/store.js';
import { at, subA, subB, watcher, session } from './fixtures.js';

/** `store` is the store the suite opened for the running test (see describeStoreConformance). */
export function describeNetworkWatcherConformance(store: Store): void {
  describe('network watchers', () => {
    it('creates, then updates location and tags keeping the casing and creation time', async () => {
      const record = watcher(subA);
      expect(await store.putWatcher(record)).toEqual({ record, created: true });

      const update = watcher(subA, {
        resourceGroup: 'networkwatcherrg',
        name: 'NETWORKWATCHER_WESTUS',
        location: 'eastus',
        tags: { team: 'sre', cost: '42' },
        createdAt: at(200),
      });
      const result = await store.putWatcher(update);
      expect(result.created).toBe(false);
      expect(result.record).toMatchObject({
        subscriptionId: subA,
        resourceGroup: 'NetworkWatcherRG',
        name: 'NetworkWatcher_westus',
        location: 'eastus',
        tags: { team: 'sre', cost: '42' },
        createdAt: at(3),
      });
      expect(await store.getWatcher(subA, 'NETWORKWATCHERRG', 'networkwatcher_westus')).toEqual(
        result.record,
      );
      expect(await store.findWatcherByLocation(subA, 'eastus')).toEqual(result.record);
      expect(await store.findWatcherByLocation(subA, 'westus')).toBeUndefined();
      expect(await store.findWatcherByLocation(subB, 'eastus')).toBeUndefined();
      expect(await store.listWatchers(subA)).toEqual([result.record]);
    });

    it('createWatcherIfAbsent creates only when neither the name nor the location is taken', async () => {
      const first = watcher(subA, { location: 'eastus', tags: { owner: 'net-team' } });
      expect(await store.createWatcherIfAbsent(first)).toEqual(first);
      // Same name, other location: nothing changes (not the location, not the tags).
      expect(
        await store.createWatcherIfAbsent(
          watcher(subA, { location: 'westus', tags: {}, etag: randomUUID() }),
        ),
      ).toBeUndefined();
      // Same location, other name: nothing is created.
      expect(
        await store.createWatcherIfAbsent(watcher(subA, { name: 'other', location: 'eastus' })),
      ).toBeUndefined();
      expect(await store.listWatchers(subA)).toEqual([first]);
      // Concurrent creates of one watcher: exactly one wins.
      const racers = await Promise.all(
        [1, 2, 3, 4].map((i) =>
          store.createWatcherIfAbsent(
            watcher(subB, { location: 'l9', tags: { n: String(i) }, etag: randomUUID() }),
          ),
        ),
      );
      expect(racers.filter((r) => r !== undefined)).toHaveLength(1);
      expect(await store.listWatchers(subB)).toEqual(racers.filter((r) => r !== undefined));
    });

    it('keeps one watcher per subscription and location', async () => {
      await store.putWatcher(watcher(subA));
      await expect(store.putWatcher(watcher(subA, { name: 'second' }))).rejects.toThrow();
      // Another subscription has its own.
      expect((await store.putWatcher(watcher(subB))).created).toBe(true);
    });

    it('lists by resource group and name, optionally in one resource group', async () => {
      await store.putWatcher(watcher(subA, { resourceGroup: 'rg-b', name: 'w1', location: 'l1' }));
      await store.putWatcher(watcher(subA, { resourceGroup: 'RG-A', name: 'W2', location: 'l2' }));
      await store.putWatcher(watcher(subA, { resourceGroup: 'rg-a', name: 'w1', location: 'l3' }));
      await store.putWatcher(watcher(subB, { resourceGroup: 'rg-a', name: 'w0', location: 'l1' }));
      const names = (list: NetworkWatcherRecord[]): string[] =>
        list.map((w) => `${w.resourceGroup}/${w.name}`);
      expect(names(await store.listWatchers(subA))).toEqual(['rg-a/w1', 'RG-A/W2', 'rg-b/w1']);
      expect(names(await store.listWatchers(subA, 'Rg-A'))).toEqual(['rg-a/w1', 'RG-A/W2']);
    });

    it('deleting a watcher deletes its sessions and no others', async () => {
      await store.putWatcher(watcher(subA));
      await store.putWatcher(watcher(subA, { name: 'NetworkWatcher_eastus', location: 'eastus' }));
      const doomed = [session(subA, { name: 'a' }), session(subA, { name: 'b' })];
      const kept = session(subA, {
        name: 'a',
        watcherName: 'NetworkWatcher_eastus',
        location: 'eastus',
      });
      for (const record of [...doomed, kept]) await store.createSession(record, 10);

      expect(await store.deleteWatcher(subA, 'networkwatcherrg', 'NETWORKWATCHER_WESTUS')).toBe(
        true,
      );
      expect(await store.getWatcher(subA, 'NetworkWatcherRG', 'NetworkWatcher_westus')).toBe(
        undefined,
      );
      for (const record of doomed) expect(await store.getSessionById(record.id)).toBeUndefined();
      expect(await store.getSessionById(kept.id)).toEqual(kept);
      expect(await store.deleteWatcher(subA, 'NetworkWatcherRG', 'NetworkWatcher_westus')).toBe(
        false,
      );
    });
  });
}
