/** AuditStore on SQLite: the audit log, newest first. */
import type { Kysely } from 'kysely';
import type { StoreDatabase } from '../migrations/schema.js';
import { auditToRow, toAudit } from '../sql/rows.js';
import { checkPageLimit, decodeCursor, toPage } from '../sql/paging.js';
import type { AuditRecord, AuditStore, Page, PageRequest } from '../store.js';

export function createSqliteAuditStore(db: Kysely<StoreDatabase>): AuditStore {
  return {
    async appendAudit(record: AuditRecord): Promise<void> {
      await db.insertInto('audit').values(auditToRow(record)).execute();
    },

    async listAudit(subscriptionId: string, page: PageRequest): Promise<Page<AuditRecord>> {
      checkPageLimit(page.limit);
      let query = db.selectFrom('audit').selectAll().where('subscription_id', '=', subscriptionId);
      if (page.after !== undefined && page.after !== null) {
        // Newest first, id breaking ties between records of the same millisecond.
        const { at, id } = decodeCursor(page.after, ['at', 'id']);
        query = query.where((eb) =>
          eb.or([eb('at', '<', at), eb.and([eb('at', '=', at), eb('id', '<', id)])]),
        );
      }
      const rows = await query
        .orderBy('at', 'desc')
        .orderBy('id', 'desc')
        .limit(page.limit + 1)
        .execute();
      return toPage(rows, page.limit, toAudit, (row) => ({ at: row.at, id: row.id }));
    },
  };
}
