/** NetworkWatcherStore on SQLite: network watchers; deleting one deletes its sessions. */
import type { Kysely } from 'kysely';
import { foldName } from '../migrations/schema.js';
import type { StoreDatabase } from '../migrations/schema.js';
import { byName, toWatcher, watcherToRow } from '../sql/rows.js';
import { upsertByName } from '../sql/upsert.js';
import type { NetworkWatcherRecord, NetworkWatcherStore, Upserted } from '../store.js';

export function createSqliteNetworkWatcherStore(db: Kysely<StoreDatabase>): NetworkWatcherStore {
  return {
    /** An update keeps the name's casing and createdAt, and takes location, tags and etag. */
    async putWatcher(record: NetworkWatcherRecord): Promise<Upserted<NetworkWatcherRecord>> {
      const row = watcherToRow(record);
      return upsertByName(db, {
        update: async (trx) => {
          const updated = await trx
            .updateTable('network_watchers')
            .set({ location: row.location, tags: row.tags, etag: row.etag })
            .where((eb) =>
              eb.and(byName(row.subscription_id, row.resource_group_key, row.name_key)),
            )
            .returningAll()
            .executeTakeFirst();
          return updated && toWatcher(updated);
        },
        insert: async (trx) =>
          toWatcher(
            await trx
              .insertInto('network_watchers')
              .values(row)
              .returningAll()
              .executeTakeFirstOrThrow(),
          ),
      });
    },

    async createWatcherIfAbsent(
      record: NetworkWatcherRecord,
    ): Promise<NetworkWatcherRecord | undefined> {
      // No conflict target: the primary key (the name) and the one-per-location index both count.
      const row = await db
        .insertInto('network_watchers')
        .values(watcherToRow(record))
        .onConflict((oc) => oc.doNothing())
        .returningAll()
        .executeTakeFirst();
      return row && toWatcher(row);
    },

    async getWatcher(
      subscriptionId: string,
      resourceGroup: string,
      name: string,
    ): Promise<NetworkWatcherRecord | undefined> {
      const row = await db
        .selectFrom('network_watchers')
        .selectAll()
        .where((eb) => eb.and(byName(subscriptionId, foldName(resourceGroup), foldName(name))))
        .executeTakeFirst();
      return row && toWatcher(row);
    },

    async findWatcherByLocation(
      subscriptionId: string,
      location: string,
    ): Promise<NetworkWatcherRecord | undefined> {
      const row = await db
        .selectFrom('network_watchers')
        .selectAll()
        .where('subscription_id', '=', subscriptionId)
        .where('location', '=', location)
        .executeTakeFirst();
      return row && toWatcher(row);
    },

    async listWatchers(
      subscriptionId: string,
      resourceGroup?: string,
    ): Promise<NetworkWatcherRecord[]> {
      let query = db
        .selectFrom('network_watchers')
        .selectAll()
        .where('subscription_id', '=', subscriptionId);
      if (resourceGroup !== undefined) {
        query = query.where('resource_group_key', '=', foldName(resourceGroup));
      }
      const rows = await query.orderBy('resource_group_key').orderBy('name_key').execute();
      return rows.map(toWatcher);
    },

    async deleteWatcher(
      subscriptionId: string,
      resourceGroup: string,
      name: string,
    ): Promise<boolean> {
      const resourceGroupKey = foldName(resourceGroup);
      const nameKey = foldName(name);
      return db.transaction().execute(async (trx) => {
        const deleted = await trx
          .deleteFrom('network_watchers')
          .where((eb) => eb.and(byName(subscriptionId, resourceGroupKey, nameKey)))
          .executeTakeFirst();
        if (deleted.numDeletedRows === 0n) return false;
        await trx
          .deleteFrom('ring_grants')
          .where('session_id', 'in', (eb) =>
            eb
              .selectFrom('sessions')
              .select('id')
              .where('subscription_id', '=', subscriptionId)
              .where('resource_group_key', '=', resourceGroupKey)
              .where('watcher_key', '=', nameKey),
          )
          .execute();
        await trx
          .deleteFrom('sessions')
          .where('subscription_id', '=', subscriptionId)
          .where('resource_group_key', '=', resourceGroupKey)
          .where('watcher_key', '=', nameKey)
          .execute();
        return true;
      });
    },
  };
}
