/** SubscriptionStore on SQLite: subscriptions. */
import type { Kysely } from 'kysely';
import type { StoreDatabase } from '../migrations/schema.js';
import { subscriptionToRow, toSubscription } from '../sql/rows.js';
import type { SubscriptionRecord, SubscriptionStore } from '../store.js';

export function createSqliteSubscriptionStore(db: Kysely<StoreDatabase>): SubscriptionStore {
  return {
    async createSubscription(record: SubscriptionRecord): Promise<void> {
      await db.insertInto('subscriptions').values(subscriptionToRow(record)).execute();
    },

    async getSubscription(id: string): Promise<SubscriptionRecord | undefined> {
      const row = await db
        .selectFrom('subscriptions')
        .selectAll()
        .where('id', '=', id)
        .executeTakeFirst();
      return row && toSubscription(row);
    },

    async listSubscriptions(): Promise<SubscriptionRecord[]> {
      const rows = await db
        .selectFrom('subscriptions')
        .selectAll()
        .orderBy('created_at')
        .orderBy('id')
        .execute();
      return rows.map(toSubscription);
    },
  };
}
