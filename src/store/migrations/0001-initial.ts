import type { Kysely, Migration } from 'kysely';

/** The first schema: subscriptions, tokens, VMs, network watchers, sessions, operations, audit. */
export const initial: Migration = {
  async up(db: Kysely<unknown>): Promise<void> {
    await db.schema
      .createTable('subscriptions')
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('display_name', 'text', (c) => c.notNull())
      .addColumn('created_at', 'text', (c) => c.notNull())
      .execute();

    // subscription_id null = an admin token.
    await db.schema
      .createTable('tokens')
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('subscription_id', 'text', (c) => c.references('subscriptions.id'))
      .addColumn('role', 'text', (c) => c.notNull())
      .addColumn('hash', 'text', (c) => c.notNull())
      .addColumn('created_at', 'text', (c) => c.notNull())
      .addColumn('revoked_at', 'text')
      .execute();
    await db.schema.createIndex('tokens_hash_key').unique().on('tokens').column('hash').execute();

    await db.schema
      .createTable('enrollment_tokens')
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('subscription_id', 'text', (c) => c.notNull().references('subscriptions.id'))
      .addColumn('hash', 'text', (c) => c.notNull())
      .addColumn('created_at', 'text', (c) => c.notNull())
      .addColumn('expires_at', 'text', (c) => c.notNull())
      .addColumn('revoked_at', 'text')
      .execute();
    await db.schema
      .createIndex('enrollment_tokens_hash_key')
      .unique()
      .on('enrollment_tokens')
      .column('hash')
      .execute();

    await db.schema
      .createTable('vms')
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('subscription_id', 'text', (c) => c.notNull().references('subscriptions.id'))
      .addColumn('resource_group', 'text', (c) => c.notNull())
      .addColumn('resource_group_key', 'text', (c) => c.notNull())
      .addColumn('name', 'text', (c) => c.notNull())
      .addColumn('name_key', 'text', (c) => c.notNull())
      .addColumn('location', 'text', (c) => c.notNull())
      .addColumn('hostname', 'text', (c) => c.notNull())
      .addColumn('capture_root', 'text', (c) => c.notNull())
      .addColumn('credential_hash', 'text', (c) => c.notNull())
      .addColumn('created_at', 'text', (c) => c.notNull())
      .addColumn('last_seen_at', 'text')
      .addUniqueConstraint('vms_name_key', ['subscription_id', 'resource_group_key', 'name_key'])
      .execute();
    await db.schema
      .createIndex('vms_credential_hash_idx')
      .on('vms')
      .column('credential_hash')
      .execute();

    // The primary key is the folded ARM path, so there is no surrogate id.
    await db.schema
      .createTable('network_watchers')
      .addColumn('subscription_id', 'text', (c) => c.notNull().references('subscriptions.id'))
      .addColumn('resource_group', 'text', (c) => c.notNull())
      .addColumn('resource_group_key', 'text', (c) => c.notNull())
      .addColumn('name', 'text', (c) => c.notNull())
      .addColumn('name_key', 'text', (c) => c.notNull())
      .addColumn('location', 'text', (c) => c.notNull())
      .addColumn('tags', 'text', (c) => c.notNull())
      .addColumn('etag', 'text', (c) => c.notNull())
      .addColumn('created_at', 'text', (c) => c.notNull())
      .addPrimaryKeyConstraint('network_watchers_pkey', [
        'subscription_id',
        'resource_group_key',
        'name_key',
      ])
      .execute();
    // Azure allows one watcher per subscription and region; the store relies on it.
    await db.schema
      .createIndex('network_watchers_location_key')
      .unique()
      .on('network_watchers')
      .columns(['subscription_id', 'location'])
      .execute();

    // No foreign key to vms or network_watchers: a session outlives its VM (it is stopped with
    // TargetDeleted), and deleteWatcher removes a watcher's sessions itself.
    await db.schema
      .createTable('sessions')
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('subscription_id', 'text', (c) => c.notNull().references('subscriptions.id'))
      .addColumn('resource_group', 'text', (c) => c.notNull())
      .addColumn('resource_group_key', 'text', (c) => c.notNull())
      .addColumn('watcher_name', 'text', (c) => c.notNull())
      .addColumn('watcher_key', 'text', (c) => c.notNull())
      .addColumn('name', 'text', (c) => c.notNull())
      .addColumn('name_key', 'text', (c) => c.notNull())
      .addColumn('location', 'text', (c) => c.notNull())
      .addColumn('vm_id', 'text', (c) => c.notNull())
      .addColumn('properties', 'text', (c) => c.notNull())
      .addColumn('status', 'text', (c) => c.notNull())
      .addColumn('stop_reason', 'text')
      .addColumn('errors', 'text', (c) => c.notNull())
      .addColumn('capture_start_time', 'text')
      .addColumn('stop_time', 'text')
      .addColumn('progress', 'text')
      .addColumn('files', 'text', (c) => c.notNull())
      .addColumn('stop_requested', 'text')
      .addColumn('delete_requested', 'integer', (c) => c.notNull().defaultTo(0))
      .addColumn('etag', 'text', (c) => c.notNull())
      .addColumn('created_at', 'text', (c) => c.notNull())
      .addColumn('updated_at', 'text', (c) => c.notNull())
      // Also serves listSessions: its leading columns select a watcher, name_key orders it.
      .addUniqueConstraint('sessions_name_key', [
        'subscription_id',
        'resource_group_key',
        'watcher_key',
        'name_key',
      ])
      .execute();
    // The quota count in createSession.
    await db.schema
      .createIndex('sessions_quota_idx')
      .on('sessions')
      .columns(['subscription_id', 'location', 'status'])
      .execute();
    await db.schema.createIndex('sessions_vm_idx').on('sessions').column('vm_id').execute();
    // The deadline backstop lists live sessions across all tenants.
    await db.schema.createIndex('sessions_status_idx').on('sessions').column('status').execute();

    // No foreign key to sessions: a delete operation is polled after its session is gone.
    await db.schema
      .createTable('operations')
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('subscription_id', 'text', (c) => c.notNull().references('subscriptions.id'))
      .addColumn('location', 'text', (c) => c.notNull())
      .addColumn('kind', 'text', (c) => c.notNull())
      .addColumn('session_id', 'text', (c) => c.notNull())
      .addColumn('resource_id', 'text', (c) => c.notNull())
      .addColumn('status', 'text', (c) => c.notNull())
      .addColumn('error', 'text')
      .addColumn('created_at', 'text', (c) => c.notNull())
      .addColumn('updated_at', 'text', (c) => c.notNull())
      .execute();
    await db.schema
      .createIndex('operations_session_idx')
      .on('operations')
      .columns(['session_id', 'status'])
      .execute();

    await db.schema
      .createTable('audit')
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('subscription_id', 'text', (c) => c.notNull().references('subscriptions.id'))
      .addColumn('at', 'text', (c) => c.notNull())
      .addColumn('actor', 'text', (c) => c.notNull())
      .addColumn('action', 'text', (c) => c.notNull())
      .addColumn('resource_id', 'text', (c) => c.notNull())
      .addColumn('source_ip', 'text', (c) => c.notNull())
      .addColumn('detail', 'text', (c) => c.notNull())
      .execute();
    // listAudit: one subscription, newest first, id breaking ties.
    await db.schema
      .createIndex('audit_subscription_at_idx')
      .on('audit')
      .columns(['subscription_id', 'at', 'id'])
      .execute();
  },

  async down(db: Kysely<unknown>): Promise<void> {
    for (const table of [
      'audit',
      'operations',
      'sessions',
      'network_watchers',
      'vms',
      'enrollment_tokens',
      'tokens',
      'subscriptions',
    ]) {
      await db.schema.dropTable(table).execute();
    }
  },
};
