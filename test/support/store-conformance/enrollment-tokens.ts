/** The store conformance suite for enrollment tokens. */
import { randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import type { Store } from '../../../src/store/store.js';
import { at, enrollmentToken, subA, subB } from './fixtures.js';

/** `store` is the store the suite opened for the running test (see describeStoreConformance). */
export function describeEnrollmentTokenConformance(store: Store): void {
  describe('enrollment tokens', () => {
    it('finds a token by hash', async () => {
      const record = enrollmentToken(subA, { hash: 'e'.repeat(64) });
      const takeover = enrollmentToken(subA, {
        takeover: { resourceGroup: 'Fleet-RG', name: 'Web-01' },
      });
      await store.createEnrollmentToken(record);
      await store.createEnrollmentToken(takeover);
      expect(await store.findEnrollmentTokenByHash(record.hash)).toEqual(record);
      expect(await store.findEnrollmentTokenByHash(takeover.hash)).toEqual(takeover);
      expect(await store.findEnrollmentTokenByHash('f'.repeat(64))).toBeUndefined();
    });

    it("lists a subscription's tokens oldest first, and revokes within the subscription only", async () => {
      const second = enrollmentToken(subA, { createdAt: at(20) });
      const first = enrollmentToken(subA, { createdAt: at(10) });
      const other = enrollmentToken(subB);
      for (const record of [second, first, other]) await store.createEnrollmentToken(record);
      expect(await store.listEnrollmentTokens(subA)).toEqual([first, second]);

      expect(await store.revokeEnrollmentToken(subA, other.id, at(30))).toBe(false);
      expect((await store.findEnrollmentTokenByHash(other.hash))?.revokedAt).toBeNull();
      expect(await store.revokeEnrollmentToken(subA, first.id, at(30))).toBe(true);
      // A second revocation succeeds and keeps the first time.
      expect(await store.revokeEnrollmentToken(subA, first.id, at(40))).toBe(true);
      expect((await store.findEnrollmentTokenByHash(first.hash))?.revokedAt).toEqual(at(30));
      expect(await store.revokeEnrollmentToken(subA, randomUUID(), at(30))).toBe(false);
    });

    it('uses a token once, even when calls race; never a revoked one', async () => {
      const record = enrollmentToken(subA, {
        takeover: { resourceGroup: 'rg', name: 'vm' },
      });
      const revoked = enrollmentToken(subA, { revokedAt: at(2) });
      await store.createEnrollmentToken(record);
      await store.createEnrollmentToken(revoked);
      const results = await Promise.all(
        [1, 2, 3, 4, 5].map(() => store.useEnrollmentToken(record.id, at(50))),
      );
      expect(results.filter(Boolean)).toHaveLength(1);
      expect((await store.findEnrollmentTokenByHash(record.hash))?.usedAt).toEqual(at(50));
      expect(await store.useEnrollmentToken(revoked.id, at(50))).toBe(false);
      expect(await store.useEnrollmentToken(randomUUID(), at(50))).toBe(false);
    });
  });
}
