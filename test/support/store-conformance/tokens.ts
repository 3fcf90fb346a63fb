/** The store conformance suite for API tokens. */
import { randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import type { Store } from '../../../src/store/store.js';
import { at, subA, subB, token } from './fixtures.js';

/** `store` is the store the suite opened for the running test (see describeStoreConformance). */
export function describeTokenConformance(store: Store): void {
  describe('API tokens', () => {
    it('finds a token by hash, revoked or not', async () => {
      const admin = token(null);
      const revoked = token(subA, { role: 'Reader', revokedAt: at(9) });
      await store.createToken(admin);
      await store.createToken(revoked);
      expect(await store.findTokenByHash(admin.hash)).toEqual(admin);
      expect(await store.findTokenByHash(revoked.hash)).toEqual(revoked);
      expect(await store.findTokenByHash('0'.repeat(64))).toBeUndefined();
    });

    it('revokes within the subscription only', async () => {
      const own = token(subA);
      const other = token(subB);
      await store.createToken(own);
      await store.createToken(other);

      expect(await store.revokeToken(subA, other.id, at(10))).toBe(false);
      expect((await store.findTokenByHash(other.hash))?.revokedAt).toBeNull();

      expect(await store.revokeToken(subA, own.id, at(10))).toBe(true);
      expect(await store.findTokenByHash(own.hash)).toEqual({ ...own, revokedAt: at(10) });

      expect(await store.revokeToken(subA, randomUUID(), at(10))).toBe(false);
    });

    it('revokes any token when unscoped (admin)', async () => {
      const other = token(subB);
      await store.createToken(other);
      expect(await store.revokeToken(null, other.id, at(11))).toBe(true);
      expect((await store.findTokenByHash(other.hash))?.revokedAt).toEqual(at(11));
      expect(await store.revokeToken(null, randomUUID(), at(11))).toBe(false);
    });
    it('revokes every admin token but the current one, and no API token', async () => {
      const old1 = token(null);
      const old2 = token(null);
      const earlier = token(null, { revokedAt: at(5) });
      const current = token(null);
      const api = token(subA, { role: 'Owner' });
      for (const record of [old1, old2, earlier, current, api]) await store.createToken(record);
      expect(await store.revokeAdminTokensExcept(current.hash, at(12))).toBe(2);
      expect((await store.findTokenByHash(old1.hash))?.revokedAt).toEqual(at(12));
      expect((await store.findTokenByHash(old2.hash))?.revokedAt).toEqual(at(12));
      // An earlier revocation keeps its time; the current token and API tokens are untouched.
      expect((await store.findTokenByHash(earlier.hash))?.revokedAt).toEqual(at(5));
      expect(await store.findTokenByHash(current.hash)).toEqual(current);
      expect(await store.findTokenByHash(api.hash)).toEqual(api);
      expect(await store.revokeAdminTokensExcept(current.hash, at(13))).toBe(0);
    });
  });
}
