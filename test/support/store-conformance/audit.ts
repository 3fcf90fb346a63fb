/** The store conformance suite for the audit log and its paging. */
import { describe, expect, it } from 'vitest';
import type { Store } from '../../../src/store/store.js';
import { at, subA, subB, audit, readAllPages } from './fixtures.js';

/** `store` is the store the suite opened for the running test (see describeStoreConformance). */
export function describeAuditConformance(store: Store): void {
  describe('audit', () => {
    it('lists a subscription newest first, with the detail', async () => {
      const old = audit(subA, { at: at(1), detail: { nested: { ok: true }, list: [1, 2] } });
      const recent = audit(subA, { at: at(2), action: 'packetCapture.stop' });
      await store.appendAudit(old);
      await store.appendAudit(recent);
      await store.appendAudit(audit(subB));
      expect(await store.listAudit(subA, { limit: 10 })).toEqual({
        items: [recent, old],
        next: null,
      });
    });

    it('pages newest first, each record once, including records of the same time', async () => {
      const seconds = [3, 1, 1, 2, 1, 3, 0, 2, 1];
      const records = seconds.map((s) => audit(subA, { at: at(s) }));
      for (const record of records) await store.appendAudit(record);
      await store.appendAudit(audit(subB, { at: at(2) }));

      const whole = await store.listAudit(subA, { limit: 100 });
      expect(whole.next).toBeNull();
      expect(whole.items.map((r) => r.id).sort()).toEqual(records.map((r) => r.id).sort());
      const times = whole.items.map((r) => r.at.getTime());
      expect(times).toEqual([...times].sort((a, b) => b - a));

      for (const limit of [1, 2, 4, 9]) {
        const all = await readAllPages(
          (after) => store.listAudit(subA, { limit, after }),
          Math.ceil(records.length / limit) + 1,
        );
        expect(all).toEqual(whole.items);
      }
    });
  });
}
