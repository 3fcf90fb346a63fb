/**
 * The store's schema, as a static list of versioned migrations shared by every SQL backend.
 *
 * Migrations are written with Kysely's schema builder and portable types only (text and integer;
 * times as ISO-8601 text, booleans as 0/1, JSON as text) so that the PostgreSQL store can run
 * the same list. A migration, once released, never changes: a schema change is a new entry.
 *
 * Names that Azure compares case-insensitively (resource groups, watchers, captures, VMs) are
 * stored twice: as given, for display, and folded by {@link foldName} in a `*_key` column that
 * the unique keys, lookups and orderings use. Folding in code rather than with SQL `lower()`
 * gives every backend the same (Unicode) folding and keeps the indexes plain column indexes.
 */
import { Migrator } from 'kysely';
import type { Kysely, Migration, MigrationProvider } from 'kysely';
import type {
  OperationKind,
  OperationStatus,
  Role,
  SessionStatus,
  SessionStopReason,
} from '../store.js';

/** The case-folded form of a name, as stored in the `*_key` columns. */
export function foldName(name: string): string {
  return name.toLowerCase();
}

// The tables as the latest migration leaves them: Kysely's view of the database. Times are
// ISO-8601 text (which sorts in time order), booleans 0/1, JSON columns text.

export interface SubscriptionsTable {
  id: string;
  display_name: string;
  created_at: string;
}

export interface TokensTable {
  id: string;
  subscription_id: string | null;
  role: Role | 'Admin';
  hash: string;
  created_at: string;
  revoked_at: string | null;
}

export interface EnrollmentTokensTable {
  id: string;
  subscription_id: string;
  hash: string;
  created_at: string;
  expires_at: string;
  revoked_at: string | null;
  /** A takeover token's VM, as given (added by 0003); null for an ordinary token. */
  takeover_resource_group: string | null;
  takeover_name: string | null;
  /** When a takeover token was used (it is single-use; added by 0003). */
  used_at: string | null;
  /** How many VMs the token may enroll; null (tokens from before 0004) is no limit. */
  max_uses: number | null;
  /** How many VMs it has enrolled (added by 0004). */
  uses: number;
}

export interface VmsTable {
  id: string;
  subscription_id: string;
  resource_group: string;
  resource_group_key: string;
  name: string;
  name_key: string;
  location: string;
  hostname: string;
  capture_root: string;
  credential_hash: string;
  created_at: string;
  last_seen_at: string | null;
}

export interface NetworkWatchersTable {
  subscription_id: string;
  resource_group: string;
  resource_group_key: string;
  name: string;
  name_key: string;
  location: string;
  /** JSON object of strings. */
  tags: string;
  etag: string;
  created_at: string;
}

export interface SessionsTable {
  id: string;
  subscription_id: string;
  resource_group: string;
  resource_group_key: string;
  watcher_name: string;
  watcher_key: string;
  name: string;
  name_key: string;
  location: string;
  vm_id: string;
  /** JSON object. */
  properties: string;
  status: SessionStatus;
  stop_reason: SessionStopReason | null;
  /** JSON array of { code, message }. */
  errors: string;
  capture_start_time: string | null;
  stop_time: string | null;
  /** JSON { packets, bytes, kernelDrops, at } with `at` as ISO text, or null. */
  progress: string | null;
  /** JSON array of strings. */
  files: string;
  stop_requested: SessionStopReason | null;
  /** 0 or 1. */
  delete_requested: number;
  etag: string;
  created_at: string;
  updated_at: string;
  /** JSON { state, blobs, error } or null (added by 0002). */
  upload: string | null;
}

export interface OperationsTable {
  id: string;
  subscription_id: string;
  location: string;
  kind: OperationKind;
  session_id: string;
  resource_id: string;
  status: OperationStatus;
  /** JSON { code, message }, or null. */
  error: string | null;
  created_at: string;
  updated_at: string;
}

export interface StorageAccountsTable {
  subscription_id: string;
  resource_group: string;
  resource_group_key: string;
  name: string;
  name_key: string;
  account_name: string;
  blob_endpoint: string;
  /** A secret (it holds the account key); never leaves the server. */
  connection_string: string;
  created_at: string;
}

export interface AuditTable {
  id: string;
  subscription_id: string;
  at: string;
  actor: string;
  action: string;
  resource_id: string;
  source_ip: string;
  /** JSON object. */
  detail: string;
}

/** The ring file numbers the server granted a SAS for, per session (added by 0004). */
export interface RingGrantsTable {
  session_id: string;
  file_index: number;
}

export interface StoreDatabase {
  subscriptions: SubscriptionsTable;
  tokens: TokensTable;
  enrollment_tokens: EnrollmentTokensTable;
  vms: VmsTable;
  network_watchers: NetworkWatchersTable;
  sessions: SessionsTable;
  operations: OperationsTable;
  audit: AuditTable;
  storage_accounts: StorageAccountsTable;
  ring_grants: RingGrantsTable;
}

// Migrations take Kysely<unknown>: a migration must not depend on the current StoreDatabase
// type, which describes the schema after the last migration, not after this one.

const initial: Migration = {
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

/** Storage accounts (issue: blob output) and each session's upload state. */
const storageAccounts: Migration = {
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

/**
 * Takeover enrollment tokens (issue 9): a token may name the one VM it re-enrolls, once.
 * Nullable columns, one ALTER each (SQLite adds one column per statement; PostgreSQL is fine
 * with that too).
 */
const enrollmentTakeover: Migration = {
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

/**
 * Limits on what an agent can make the server do (issue 9, review M3 and L1): the ring file
 * numbers granted a SAS per session, so that an upload report is checked against storage only
 * for blobs the server let the agent write; and the uses of an enrollment token.
 */
const agentLimits: Migration = {
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

/** Every migration, by name; names sort in the order they run. */
export const migrations: Readonly<Record<string, Migration>> = {
  '0001_initial': initial,
  '0002_storage_accounts': storageAccounts,
  '0003_enrollment_takeover': enrollmentTakeover,
  '0004_agent_limits': agentLimits,
};

const provider: MigrationProvider = {
  getMigrations: () => Promise.resolve({ ...migrations }),
};

/**
 * Runs the migrations the database has not run yet, in order, and returns their names (empty
 * when the schema is current). Throws when one fails; the ones before it stay applied unless
 * the dialect runs migrations in a transaction.
 */
export async function migrateToLatest(db: Kysely<StoreDatabase>): Promise<string[]> {
  const migrator = new Migrator({ db, provider });
  const { error, results = [] } = await migrator.migrateToLatest();
  if (error !== undefined) {
    const failed = results.find((r) => r.status === 'Error')?.migrationName ?? '(setup)';
    const reason = error instanceof Error ? error.message : JSON.stringify(error);
    throw new Error(`store migration ${failed} failed: ${reason}`, { cause: error });
  }
  return results.filter((r) => r.status === 'Success').map((r) => r.migrationName);
}
