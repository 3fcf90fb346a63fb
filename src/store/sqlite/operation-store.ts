/** OperationStore on SQLite: aRM long-running operations. */
import type { Kysely } from 'kysely';
import type { StoreDatabase } from '../migrations/schema.js';
import { iso, operationToRow, toOperation } from '../sql/rows.js';
import type { OperationRecord, OperationStatus, OperationStore, SessionError } from '../store.js';

export function createSqliteOperationStore(db: Kysely<StoreDatabase>): OperationStore {
  return {
    async createOperation(record: OperationRecord): Promise<void> {
      await db.insertInto('operations').values(operationToRow(record)).execute();
    },

    async getOperation(subscriptionId: string, id: string): Promise<OperationRecord | undefined> {
      const row = await db
        .selectFrom('operations')
        .selectAll()
        .where('id', '=', id)
        .where('subscription_id', '=', subscriptionId)
        .executeTakeFirst();
      return row && toOperation(row);
    },

    async listOpenOperations(sessionId: string): Promise<OperationRecord[]> {
      const rows = await db
        .selectFrom('operations')
        .selectAll()
        .where('session_id', '=', sessionId)
        .where('status', '=', 'InProgress')
        .orderBy('created_at')
        .orderBy('id')
        .execute();
      return rows.map(toOperation);
    },

    async listInProgressOperations(): Promise<OperationRecord[]> {
      const rows = await db
        .selectFrom('operations')
        .selectAll()
        .where('status', '=', 'InProgress')
        .orderBy('created_at')
        .orderBy('id')
        .execute();
      return rows.map(toOperation);
    },

    /** `error` undefined leaves the stored error; null clears it. updatedAt is renewed. */
    async updateOperation(
      id: string,
      patch: { status: OperationStatus; error?: SessionError | null },
    ): Promise<void> {
      const error =
        patch.error === undefined
          ? {}
          : { error: patch.error === null ? null : JSON.stringify(patch.error) };
      await db
        .updateTable('operations')
        .set({ status: patch.status, ...error, updated_at: iso(new Date()) })
        .where('id', '=', id)
        .execute();
    },
  };
}
