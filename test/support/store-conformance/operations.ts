/** The store conformance suite for long-running operations. */
import { randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import type { Store } from '../../../src/store/store.js';
import { at, subA, subB, operation } from './fixtures.js';

/** `store` is the store the suite opened for the running test (see describeStoreConformance). */
export function describeOperationConformance(store: Store): void {
  describe('operations', () => {
    it('creates and gets within the subscription', async () => {
      const record = operation(subA, 's1');
      await store.createOperation(record);
      expect(await store.getOperation(subA, record.id)).toEqual(record);
      expect(await store.getOperation(subB, record.id)).toBeUndefined();
      expect(await store.getOperation(subA, randomUUID())).toBeUndefined();
    });

    it('lists the open operations of a session', async () => {
      const open = operation(subA, 's1', { kind: 'stop' });
      const done = operation(subA, 's1', { status: 'Succeeded' });
      const otherSession = operation(subA, 's2');
      for (const record of [open, done, otherSession]) await store.createOperation(record);
      expect(await store.listOpenOperations('s1')).toEqual([open]);
      expect(await store.listOpenOperations('s3')).toEqual([]);
    });

    it('lists every operation still in progress, oldest first', async () => {
      const newer = operation(subB, 's8', { createdAt: at(7), updatedAt: at(7) });
      const older = operation(subA, 's9', { kind: 'delete', createdAt: at(6), updatedAt: at(6) });
      const done = operation(subA, 's9', { status: 'Failed' });
      for (const record of [newer, older, done]) await store.createOperation(record);
      const open = await store.listInProgressOperations();
      const ids = open.map((o) => o.id);
      expect(ids).toEqual(expect.arrayContaining([newer.id, older.id]));
      expect(ids).not.toContain(done.id);
      expect(ids.indexOf(older.id)).toBeLessThan(ids.indexOf(newer.id));
      expect(open.find((o) => o.id === older.id)).toEqual(older);
    });

    it('updates status and error, renewing updatedAt', async () => {
      const record = operation(subA, 's1');
      await store.createOperation(record);
      const before = Date.now();
      const error = { code: 'CaptureFailed', message: 'no such interface' };
      await store.updateOperation(record.id, { status: 'Failed', error });
      const failed = await store.getOperation(subA, record.id);
      expect(failed).toMatchObject({ status: 'Failed', error, createdAt: record.createdAt });
      expect(failed?.updatedAt.getTime()).toBeGreaterThanOrEqual(before);
      expect(await store.listOpenOperations('s1')).toEqual([]);

      // error omitted: kept; null: cleared.
      await store.updateOperation(record.id, { status: 'Failed' });
      expect((await store.getOperation(subA, record.id))?.error).toEqual(error);
      await store.updateOperation(record.id, { status: 'Succeeded', error: null });
      expect(await store.getOperation(subA, record.id)).toMatchObject({
        status: 'Succeeded',
        error: null,
      });
    });
  });
}
