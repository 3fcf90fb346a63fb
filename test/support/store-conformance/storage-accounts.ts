/** The store conformance suite for storage accounts: their records and sealed connection strings. */
import { describe, expect, it } from 'vitest';
import type { StorageAccountRecord, Store } from '../../../src/store/store.js';
import { at, subA, subB } from './fixtures.js';

/** `store` is the store the suite opened for the running test (see describeStoreConformance). */
export function describeStorageAccountConformance(store: Store): void {
  describe('storage accounts', () => {
    const account = (subscriptionId: string, overrides: Partial<StorageAccountRecord> = {}) => ({
      subscriptionId,
      resourceGroup: 'Storage-RG',
      name: 'CaptureStore',
      accountName: 'devstoreaccount1',
      blobEndpoint: 'http://127.0.0.1:10000/devstoreaccount1',
      connectionString:
        'DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=a2V5;',
      createdAt: at(7),
      ...overrides,
    });

    it('creates, replaces, gets case-insensitively keeping the casing, lists and deletes', async () => {
      const first = await store.putStorageAccount(account(subA));
      expect(first.created).toBe(true);
      expect(first.record).toEqual(account(subA));
      const replaced = await store.putStorageAccount(
        account(subA, {
          name: 'capturestore',
          blobEndpoint: 'http://127.0.0.1:10001/devstoreaccount1',
        }),
      );
      expect(replaced.created).toBe(false);
      expect(replaced.record.name).toBe('CaptureStore');
      expect(replaced.record.blobEndpoint).toBe('http://127.0.0.1:10001/devstoreaccount1');
      expect(await store.getStorageAccount(subA, 'storage-rg', 'CAPTURESTORE')).toEqual(
        replaced.record,
      );
      expect(await store.getStorageAccount(subB, 'Storage-RG', 'CaptureStore')).toBeUndefined();
      await store.putStorageAccount(account(subA, { resourceGroup: 'a-rg', name: 'second' }));
      await store.putStorageAccount(account(subB));
      expect((await store.listStorageAccounts(subA)).map((a) => a.name)).toEqual([
        'second',
        'CaptureStore',
      ]);
      expect(await store.deleteStorageAccount(subA, 'STORAGE-rg', 'capturestore')).toBe(true);
      expect(await store.deleteStorageAccount(subA, 'Storage-RG', 'CaptureStore')).toBe(false);
      expect((await store.listStorageAccounts(subB)).length).toBe(1);
    });

    it('keeps connection strings sealed with the current key: nothing to re-seal, all readable', async () => {
      await store.putStorageAccount(account(subA));
      await store.putStorageAccount(account(subB, { name: 'other' }));
      expect(await store.resealSecrets()).toBe(0);
      expect((await store.getStorageAccount(subB, 'storage-rg', 'other'))?.connectionString).toBe(
        account(subB).connectionString,
      );
    });
  });
}
