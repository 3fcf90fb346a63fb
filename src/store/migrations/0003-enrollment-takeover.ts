import type { Kysely, Migration } from 'kysely';

/**
 * Takeover enrollment tokens (issue 9): a token may name the one VM it re-enrolls, once.
 * Nullable columns, one ALTER each (SQLite adds one column per statement; PostgreSQL is fine
 * with that too).
 */
export const enrollmentTakeover: Migration = {
  async up(db: Kysely<unknown>): Promise<void> {
    for (const column of ['takeover_resource_group', 'takeover_name', 'used_at']) {
      await db.schema.alterTable('enrollment_tokens').addColumn(column, 'text').execute();
    }
    // listEnrollmentTokens: one subscription's tokens in creation order.
    await db.schema
      .createIndex('enrollment_tokens_subscription_idx')
      .on('enrollment_tokens')
      .columns(['subscription_id', 'created_at', 'id'])
      .execute();
  },
  async down(db: Kysely<unknown>): Promise<void> {
    await db.schema.dropIndex('enrollment_tokens_subscription_idx').execute();
    for (const column of ['used_at', 'takeover_name', 'takeover_resource_group']) {
      await db.schema.alterTable('enrollment_tokens').dropColumn(column).execute();
    }
  },
};
