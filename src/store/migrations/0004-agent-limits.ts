import type { Kysely, Migration } from 'kysely';

/**
 * Limits on what an agent can make the server do (issue 9, review M3 and L1): the ring file
 * numbers granted a SAS per session, so that an upload report is checked against storage only
 * for blobs the server let the agent write; and the uses of an enrollment token.
 */
export const agentLimits: Migration = {
  async up(db: Kysely<unknown>): Promise<void> {
    // bigint: a ring's file numbers keep growing over a long capture (PostgreSQL's integer is
    // 32-bit). No foreign key: deleteSession and deleteWatcher remove a session's grants.
    await db.schema
      .createTable('ring_grants')
      .addColumn('session_id', 'text', (c) => c.notNull())
      .addColumn('file_index', 'bigint', (c) => c.notNull())
      .addPrimaryKeyConstraint('ring_grants_pkey', ['session_id', 'file_index'])
      .execute();
    await db.schema.alterTable('enrollment_tokens').addColumn('max_uses', 'integer').execute();
    await db.schema
      .alterTable('enrollment_tokens')
      .addColumn('uses', 'integer', (c) => c.notNull().defaultTo(0))
      .execute();
  },
  async down(db: Kysely<unknown>): Promise<void> {
    await db.schema.alterTable('enrollment_tokens').dropColumn('uses').execute();
    await db.schema.alterTable('enrollment_tokens').dropColumn('max_uses').execute();
    await db.schema.dropTable('ring_grants').execute();
  },
};
