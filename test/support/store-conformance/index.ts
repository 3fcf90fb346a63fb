/**
 * The behaviour every Store implementation must have, as a vitest suite, one file per concern of
 * the Store interface. Each backend's test file calls describeStoreConformance with a way to open
 * an empty store of its kind.
 *
 * Not named *.test.ts: vitest collects only those, and this suite is imported by them.
 */
import { randomUUID } from 'node:crypto';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Store } from '../../../src/store/store.js';
import { describeAuditConformance } from './audit.js';
import { describeChildSessionConformance } from './child-sessions.js';
import { describeEnrollmentTokenConformance } from './enrollment-tokens.js';
import { subA, subB, subscription } from './fixtures.js';
import { describeNetworkWatcherConformance } from './network-watchers.js';
import { describeOperationConformance } from './operations.js';
import { describeSessionConformance } from './sessions.js';
import { describeStorageAccountConformance } from './storage-accounts.js';
import { describeTokenConformance } from './tokens.js';
import { describeVmConformance } from './vms.js';

/**
 * Declares the conformance suite for one Store implementation. `open` must return a new, empty
 * store each time; the suite closes it after each test.
 */
export function describeStoreConformance(name: string, open: () => Promise<Store>): void {
  describe(`Store conformance: ${name}`, () => {
    let store: Store;

    beforeEach(async () => {
      store = await open();
      await store.createSubscription(subscription(subA, 'Contoso'));
      await store.createSubscription(subscription(subB, 'Fabrikam'));
    });

    afterEach(async () => {
      await store.close();
    });

    describe('subscriptions', () => {
      it('creates, gets and lists', async () => {
        expect(await store.getSubscription(subA)).toEqual(subscription(subA, 'Contoso'));
        expect(await store.getSubscription(randomUUID())).toBeUndefined();
        const all = await store.listSubscriptions();
        expect(all.map((s) => s.id).sort()).toEqual([subA, subB]);
      });
    });

    const current = runningTestStore(() => store);
    describeStorageAccountConformance(current);
    describeTokenConformance(current);
    describeEnrollmentTokenConformance(current);
    describeVmConformance(current);
    describeNetworkWatcherConformance(current);
    describeSessionConformance(current);
    describeChildSessionConformance(current);
    describeOperationConformance(current);
    describeAuditConformance(current);

    it('closes twice without error', async () => {
      await store.close();
      await expect(store.close()).resolves.toBeUndefined();
    });
  });
}

/**
 * A Store that forwards each call to the store `current` returns at the time of the call: the one
 * beforeEach opened for the running test. The concern files declare their tests with it before
 * any store exists.
 */
function runningTestStore(current: () => Store): Store {
  return new Proxy({} as Store, {
    get(_, key) {
      const target = current();
      const value: unknown = Reflect.get(target, key);
      return typeof value === 'function'
        ? (value as (...args: unknown[]) => unknown).bind(target)
        : value;
    },
  });
}
