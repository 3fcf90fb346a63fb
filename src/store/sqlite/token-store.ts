/** TokenStore on SQLite: aPI tokens. */
import type { Kysely } from 'kysely';
import type { StoreDatabase } from '../migrations/schema.js';
import { iso, tokenToRow, toToken } from '../sql/rows.js';
import type { TokenRecord, TokenStore } from '../store.js';

export function createSqliteTokenStore(db: Kysely<StoreDatabase>): TokenStore {
  return {
    async createToken(record: TokenRecord): Promise<void> {
      await db.insertInto('tokens').values(tokenToRow(record)).execute();
    },

    async findTokenByHash(hash: string): Promise<TokenRecord | undefined> {
      const row = await db
        .selectFrom('tokens')
        .selectAll()
        .where('hash', '=', hash)
        .executeTakeFirst();
      return row && toToken(row);
    },

    /** `subscriptionId` null is the admin's scope: any token. A second revoke keeps the first time. */
    async revokeToken(subscriptionId: string | null, id: string, at: Date): Promise<boolean> {
      let query = db
        .updateTable('tokens')
        .set((eb) => ({ revoked_at: eb.fn.coalesce('revoked_at', eb.val(iso(at))) }))
        .where('id', '=', id);
      if (subscriptionId !== null) query = query.where('subscription_id', '=', subscriptionId);
      const result = await query.executeTakeFirst();
      return result.numUpdatedRows > 0n;
    },

    async revokeAdminTokensExcept(keepHash: string, at: Date): Promise<number> {
      const result = await db
        .updateTable('tokens')
        .set({ revoked_at: iso(at) })
        .where('role', '=', 'Admin')
        .where('hash', '!=', keepHash)
        .where('revoked_at', 'is', null)
        .executeTakeFirst();
      return Number(result.numUpdatedRows);
    },
  };
}
