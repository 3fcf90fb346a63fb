/** StorageAccountStore on SQLite: storage accounts, their connection strings sealed with the secret box. */
import { sql } from 'kysely';
import type { Kysely } from 'kysely';
import { foldName } from '../migrations/schema.js';
import type { StoreDatabase } from '../migrations/schema.js';
import type { SecretBox } from '../secret-box.js';
import {
  byName,
  storageAccountContext,
  storageAccountToRow,
  toStorageAccount,
} from '../sql/rows.js';
import { upsertByName } from '../sql/upsert.js';
import type { StorageAccountRecord, StorageAccountStore, Upserted } from '../store.js';

export function createSqliteStorageAccountStore(
  db: Kysely<StoreDatabase>,
  box: SecretBox,
): StorageAccountStore {
  return {
    /** An update keeps the name's casing and createdAt, and takes the account and its secret. */
    async putStorageAccount(record: StorageAccountRecord): Promise<Upserted<StorageAccountRecord>> {
      const row = storageAccountToRow(record, box);
      return upsertByName(db, {
        update: async (trx) => {
          const updated = await trx
            .updateTable('storage_accounts')
            .set({
              account_name: row.account_name,
              blob_endpoint: row.blob_endpoint,
              connection_string: row.connection_string,
            })
            .where((eb) =>
              eb.and(byName(row.subscription_id, row.resource_group_key, row.name_key)),
            )
            .returningAll()
            .executeTakeFirst();
          return updated && toStorageAccount(updated, box);
        },
        insert: async (trx) =>
          toStorageAccount(
            await trx
              .insertInto('storage_accounts')
              .values(row)
              .returningAll()
              .executeTakeFirstOrThrow(),
            box,
          ),
      });
    },

    async getStorageAccount(
      subscriptionId: string,
      resourceGroup: string,
      name: string,
    ): Promise<StorageAccountRecord | undefined> {
      const row = await db
        .selectFrom('storage_accounts')
        .selectAll()
        .where((eb) => eb.and(byName(subscriptionId, foldName(resourceGroup), foldName(name))))
        .executeTakeFirst();
      return row === undefined ? undefined : toStorageAccount(row, box);
    },

    async listStorageAccounts(subscriptionId: string): Promise<StorageAccountRecord[]> {
      const rows = await db
        .selectFrom('storage_accounts')
        .selectAll()
        .where('subscription_id', '=', subscriptionId)
        .orderBy('resource_group_key')
        .orderBy('name_key')
        .execute();
      return rows.map((row) => toStorageAccount(row, box));
    },

    async deleteStorageAccount(
      subscriptionId: string,
      resourceGroup: string,
      name: string,
    ): Promise<boolean> {
      const result = await db
        .deleteFrom('storage_accounts')
        .where((eb) => eb.and(byName(subscriptionId, foldName(resourceGroup), foldName(name))))
        .executeTakeFirst();
      return Number(result.numDeletedRows) > 0;
    },

    /**
     * Opens every connection string first (so a key that does not fit fails before anything is
     * written), then re-seals those not sealed with the current key, in one transaction. When it
     * changed any, VACUUM and a truncating WAL checkpoint leave no copy of the old values (the
     * plaintext of rows from before sealing) in the database's free pages or its WAL.
     */
    async resealSecrets(): Promise<number> {
      const changed = await db.transaction().execute(async (trx) => {
        const rows = await trx.selectFrom('storage_accounts').selectAll().execute();
        const stale = rows
          .map((row) => ({ row, plaintext: toStorageAccount(row, box).connectionString }))
          .filter(({ row }) => !box.isCurrent(row.connection_string));
        for (const { row, plaintext } of stale) {
          await trx
            .updateTable('storage_accounts')
            .set({ connection_string: box.seal(plaintext, storageAccountContext(row)) })
            .where((eb) =>
              eb.and(byName(row.subscription_id, row.resource_group_key, row.name_key)),
            )
            .execute();
        }
        return stale.length;
      });
      if (changed > 0) {
        await sql`vacuum`.execute(db);
        await sql`pragma wal_checkpoint(TRUNCATE)`.execute(db);
      }
      return changed;
    },
  };
}
