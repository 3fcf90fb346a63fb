import type { Kysely, Migration } from 'kysely';

/** Storage accounts (issue: blob output) and each session's upload state. */
export const storageAccounts: Migration = {
  async up(db: Kysely<unknown>): Promise<void> {
    await db.schema
      .createTable('storage_accounts')
      .addColumn('subscription_id', 'text', (c) => c.notNull().references('subscriptions.id'))
      .addColumn('resource_group', 'text', (c) => c.notNull())
      .addColumn('resource_group_key', 'text', (c) => c.notNull())
      .addColumn('name', 'text', (c) => c.notNull())
      .addColumn('name_key', 'text', (c) => c.notNull())
      .addColumn('account_name', 'text', (c) => c.notNull())
      .addColumn('blob_endpoint', 'text', (c) => c.notNull())
      .addColumn('connection_string', 'text', (c) => c.notNull())
      .addColumn('created_at', 'text', (c) => c.notNull())
      .addPrimaryKeyConstraint('storage_accounts_pk', [
        'subscription_id',
        'resource_group_key',
        'name_key',
      ])
      .execute();
    await db.schema.alterTable('sessions').addColumn('upload', 'text').execute();
  },
  async down(db: Kysely<unknown>): Promise<void> {
    await db.schema.alterTable('sessions').dropColumn('upload').execute();
    await db.schema.dropTable('storage_accounts').execute();
  },
};
