/**
 * The one upsert of the SQL stores (network watchers, storage accounts): by (subscription,
 * resource group, name) folded, in one transaction, an update of the record's changeable
 * columns or else an insert of the whole row. The table's own statements come from its store
 * (Kysely types a table only by its literal name); the order and the answer are this one's. An
 * update leaves the key, the name's casing and created_at as they were. Any Kysely dialect with
 * RETURNING (SQLite, PostgreSQL) runs it.
 */
import type { Kysely, Transaction } from 'kysely';
import type { StoreDatabase } from '../migrations/schema.js';
import type { Upserted } from '../store.js';

export interface UpsertStatements<R> {
  /** Updates the row of the record's name; undefined when there is none. */
  update(trx: Transaction<StoreDatabase>): Promise<R | undefined>;
  /** Inserts the whole row. */
  insert(trx: Transaction<StoreDatabase>): Promise<R>;
}

export async function upsertByName<R>(
  db: Kysely<StoreDatabase>,
  statements: UpsertStatements<R>,
): Promise<Upserted<R>> {
  return db.transaction().execute(async (trx) => {
    const updated = await statements.update(trx);
    if (updated !== undefined) return { record: updated, created: false };
    return { record: await statements.insert(trx), created: true };
  });
}
