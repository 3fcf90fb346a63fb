/** EnrollmentTokenStore on SQLite: enrollment tokens. */
import type { Kysely } from 'kysely';
import type { StoreDatabase } from '../migrations/schema.js';
import { enrollmentTokenToRow, iso, toEnrollmentToken } from '../sql/rows.js';
import type { EnrollmentTokenRecord, EnrollmentTokenStore } from '../store.js';

export function createSqliteEnrollmentTokenStore(db: Kysely<StoreDatabase>): EnrollmentTokenStore {
  return {
    async createEnrollmentToken(record: EnrollmentTokenRecord): Promise<void> {
      await db.insertInto('enrollment_tokens').values(enrollmentTokenToRow(record)).execute();
    },

    async findEnrollmentTokenByHash(hash: string): Promise<EnrollmentTokenRecord | undefined> {
      const row = await db
        .selectFrom('enrollment_tokens')
        .selectAll()
        .where('hash', '=', hash)
        .executeTakeFirst();
      return row && toEnrollmentToken(row);
    },

    async listEnrollmentTokens(subscriptionId: string): Promise<EnrollmentTokenRecord[]> {
      const rows = await db
        .selectFrom('enrollment_tokens')
        .selectAll()
        .where('subscription_id', '=', subscriptionId)
        .orderBy('created_at')
        .orderBy('id')
        .execute();
      return rows.map(toEnrollmentToken);
    },

    async revokeEnrollmentToken(subscriptionId: string, id: string, at: Date): Promise<boolean> {
      const result = await db
        .updateTable('enrollment_tokens')
        .set((eb) => ({ revoked_at: eb.fn.coalesce('revoked_at', eb.val(iso(at))) }))
        .where('id', '=', id)
        .where('subscription_id', '=', subscriptionId)
        .executeTakeFirst();
      return result.numUpdatedRows > 0n;
    },

    async useEnrollmentToken(id: string, at: Date): Promise<boolean> {
      const result = await db
        .updateTable('enrollment_tokens')
        .set({ used_at: iso(at) })
        .where('id', '=', id)
        .where('used_at', 'is', null)
        .where('revoked_at', 'is', null)
        .executeTakeFirst();
      return result.numUpdatedRows > 0n;
    },
  };
}
