/** SessionStore on SQLite: packet capture sessions and their ring file grants. */
import { randomUUID } from 'node:crypto';
import type { Kysely } from 'kysely';
import { foldName } from '../migrations/schema.js';
import type { StoreDatabase } from '../migrations/schema.js';
import { iso, sessionPatchToRow, sessionToRow, toSession } from '../sql/rows.js';
import { checkPageLimit, decodeCursor, toPage } from '../sql/paging.js';
import type {
  CreateSessionResult,
  Page,
  PageRequest,
  RingGrantBounds,
  RingGrantResult,
  SessionPatch,
  SessionRecord,
  SessionStatus,
  SessionStore,
} from '../store.js';

/** The statuses the quota counts. */
const activeStatuses: readonly SessionStatus[] = ['NotStarted', 'Running'];

/** A fresh etag: the bare value; the API adds Azure's `W/"…"` around it. */
function newEtag(): string {
  return randomUUID();
}

export function createSqliteSessionStore(db: Kysely<StoreDatabase>): SessionStore {
  return {
    async createSession(record: SessionRecord, quota: number): Promise<CreateSessionResult> {
      const row = sessionToRow(record);
      // The check and the insert in one transaction: on SQLite it holds the only connection (and
      // the write lock), so no other create can slip in between.
      return db.transaction().execute(async (trx): Promise<CreateSessionResult> => {
        const existing = await trx
          .selectFrom('sessions')
          .selectAll()
          .where('subscription_id', '=', row.subscription_id)
          .where('resource_group_key', '=', row.resource_group_key)
          .where('watcher_key', '=', row.watcher_key)
          .where('name_key', '=', row.name_key)
          .executeTakeFirst();
        if (existing !== undefined) return { kind: 'exists', session: toSession(existing) };

        // A scale-set capture's child is neither counted nor checked: its parent counted once.
        if (row.parent_id === null) {
          const { count } = await trx
            .selectFrom('sessions')
            .select((eb) => eb.fn.countAll().as('count'))
            .where('subscription_id', '=', row.subscription_id)
            .where('location', '=', row.location)
            .where('status', 'in', activeStatuses)
            .where('parent_id', 'is', null)
            .executeTakeFirstOrThrow();
          const active = Number(count);
          if (active >= quota) return { kind: 'quota-exceeded', active };
        }

        const inserted = await trx
          .insertInto('sessions')
          .values(row)
          .returningAll()
          .executeTakeFirstOrThrow();
        return { kind: 'created', session: toSession(inserted) };
      });
    },

    async getSession(
      subscriptionId: string,
      resourceGroup: string,
      watcherName: string,
      name: string,
    ): Promise<SessionRecord | undefined> {
      const row = await db
        .selectFrom('sessions')
        .selectAll()
        .where('subscription_id', '=', subscriptionId)
        .where('resource_group_key', '=', foldName(resourceGroup))
        .where('watcher_key', '=', foldName(watcherName))
        .where('name_key', '=', foldName(name))
        .executeTakeFirst();
      return row && toSession(row);
    },

    async getSessionById(id: string): Promise<SessionRecord | undefined> {
      const row = await db
        .selectFrom('sessions')
        .selectAll()
        .where('id', '=', id)
        .executeTakeFirst();
      return row && toSession(row);
    },

    async listSessions(
      subscriptionId: string,
      resourceGroup: string,
      watcherName: string,
      page: PageRequest,
    ): Promise<Page<SessionRecord>> {
      checkPageLimit(page.limit);
      let query = db
        .selectFrom('sessions')
        .selectAll()
        .where('subscription_id', '=', subscriptionId)
        .where('resource_group_key', '=', foldName(resourceGroup))
        .where('watcher_key', '=', foldName(watcherName))
        .where('parent_id', 'is', null);
      if (page.after !== undefined && page.after !== null) {
        // name_key is unique under a watcher, so it alone is the sort key.
        const { name } = decodeCursor(page.after, ['name']);
        query = query.where('name_key', '>', name);
      }
      const rows = await query
        .orderBy('name_key')
        .limit(page.limit + 1)
        .execute();
      return toPage(rows, page.limit, toSession, (row) => ({ name: row.name_key }));
    },

    async listChildSessions(parentId: string): Promise<SessionRecord[]> {
      const rows = await db
        .selectFrom('sessions')
        .selectAll()
        .where('parent_id', '=', parentId)
        // Instance ids are decimal without leading zeros: by length, then text, is by number.
        .orderBy((eb) => eb.fn('length', ['instance_id']))
        .orderBy('instance_id')
        .execute();
      return rows.map(toSession);
    },

    async listSessionsByVm(
      vmId: string,
      statuses?: readonly SessionStatus[],
    ): Promise<SessionRecord[]> {
      if (statuses?.length === 0) return [];
      let query = db.selectFrom('sessions').selectAll().where('vm_id', '=', vmId);
      if (statuses !== undefined) query = query.where('status', 'in', statuses);
      const rows = await query.orderBy('created_at').orderBy('id').execute();
      return rows.map(toSession);
    },

    async listSessionsByStatus(statuses: readonly SessionStatus[]): Promise<SessionRecord[]> {
      if (statuses.length === 0) return [];
      const rows = await db
        .selectFrom('sessions')
        .selectAll()
        .where('status', 'in', statuses)
        .orderBy('created_at')
        .orderBy('id')
        .execute();
      return rows.map(toSession);
    },

    async updateSession(id: string, patch: SessionPatch): Promise<SessionRecord | undefined> {
      const row = await db
        .updateTable('sessions')
        .set({ ...sessionPatchToRow(patch), etag: newEtag(), updated_at: iso(new Date()) })
        .where('id', '=', id)
        .returningAll()
        .executeTakeFirst();
      return row && toSession(row);
    },

    async deleteSession(id: string): Promise<boolean> {
      return db.transaction().execute(async (trx) => {
        const children = trx.selectFrom('sessions').select('id').where('parent_id', '=', id);
        await trx
          .deleteFrom('ring_grants')
          .where((eb) => eb.or([eb('session_id', '=', id), eb('session_id', 'in', children)]))
          .execute();
        await trx.deleteFrom('sessions').where('parent_id', '=', id).execute();
        const result = await trx.deleteFrom('sessions').where('id', '=', id).executeTakeFirst();
        return result.numDeletedRows > 0n;
      });
    },

    async grantRingFile(
      sessionId: string,
      fileIndex: number,
      bounds: RingGrantBounds,
    ): Promise<RingGrantResult> {
      return db.transaction().execute(async (trx): Promise<RingGrantResult> => {
        const granted = await trx
          .selectFrom('ring_grants')
          .select('file_index')
          .where('session_id', '=', sessionId)
          .where('file_index', '=', fileIndex)
          .executeTakeFirst();
        if (granted !== undefined) return { kind: 'granted', again: true };
        const { highest, count } = await trx
          .selectFrom('ring_grants')
          .select((eb) => [eb.fn.max('file_index').as('highest'), eb.fn.countAll().as('count')])
          .where('session_id', '=', sessionId)
          .executeTakeFirstOrThrow();
        const top = highest === null ? 0 : Number(highest);
        const n = Number(count);
        if (n >= bounds.maxGrants || fileIndex > top + bounds.window) {
          return { kind: 'refused', highest: top, count: n };
        }
        await trx
          .insertInto('ring_grants')
          .values({ session_id: sessionId, file_index: fileIndex })
          .execute();
        return { kind: 'granted', again: false };
      });
    },

    async listRingGrants(sessionId: string): Promise<number[]> {
      const rows = await db
        .selectFrom('ring_grants')
        .select('file_index')
        .where('session_id', '=', sessionId)
        .orderBy('file_index')
        .execute();
      return rows.map((r) => Number(r.file_index));
    },

    async countSessionsByStatus(): Promise<Record<SessionStatus, number>> {
      const rows = await db
        .selectFrom('sessions')
        .select((eb) => ['status', eb.fn.countAll().as('count')])
        .where('parent_id', 'is', null)
        .groupBy('status')
        .execute();
      const counts: Record<SessionStatus, number> = {
        NotStarted: 0,
        Running: 0,
        Stopped: 0,
        Error: 0,
      };
      for (const row of rows) counts[row.status] = Number(row.count);
      return counts;
    },
  };
}
