import type { Kysely, Migration } from 'kysely';

/**
 * Captures on scale sets (issue 11): a scale-set capture is one parent session (the ARM
 * resource) and one child session per instance. A child has `parent_id` (the parent's id) and
 * `instance_id` (its instance); both null for every other session. Nullable columns, one ALTER
 * each (SQLite adds one column per statement).
 */
export const scaleSetCaptures: Migration = {
  async up(db: Kysely<unknown>): Promise<void> {
    for (const column of ['parent_id', 'instance_id']) {
      await db.schema.alterTable('sessions').addColumn(column, 'text').execute();
    }
    // listChildSessions: one parent's children.
    await db.schema.createIndex('sessions_parent_idx').on('sessions').column('parent_id').execute();
  },
  async down(db: Kysely<unknown>): Promise<void> {
    await db.schema.dropIndex('sessions_parent_idx').execute();
    for (const column of ['instance_id', 'parent_id']) {
      await db.schema.alterTable('sessions').dropColumn(column).execute();
    }
  },
};
