/**
 * The Store on SQLite, through Kysely and better-sqlite3: the database (./database.ts) and one
 * module per concern of the Store interface (./*-store.ts), composed into one object.
 */
import type { SecretBox } from '../secret-box.js';
import type { Store } from '../store.js';
import { createSqliteAuditStore } from './audit-store.js';
import { openSqliteDatabase } from './database.js';
import { createSqliteEnrollmentTokenStore } from './enrollment-token-store.js';
import { createSqliteNetworkWatcherStore } from './network-watcher-store.js';
import { createSqliteOperationStore } from './operation-store.js';
import { createSqliteSessionStore } from './session-store.js';
import { createSqliteStorageAccountStore } from './storage-account-store.js';
import { createSqliteSubscriptionStore } from './subscription-store.js';
import { createSqliteTokenStore } from './token-store.js';
import { createSqliteVmStore } from './vm-store.js';

export interface SqliteStoreOptions {
  /** The database file, or `':memory:'`. */
  readonly path: string;
  /** Seals the secrets the store keeps (connection strings) and opens them again. */
  readonly secrets: SecretBox;
}

/**
 * The Store on the SQLite database at `options.path`, opened and migrated by
 * {@link openSqliteDatabase} (which throws, leaving the schema as it was, when a migration fails).
 */
export async function createSqliteStore(options: SqliteStoreOptions): Promise<Store> {
  const db = await openSqliteDatabase(options.path);
  let closing: Promise<void> | undefined;
  return {
    ...createSqliteSubscriptionStore(db),
    ...createSqliteTokenStore(db),
    ...createSqliteEnrollmentTokenStore(db),
    ...createSqliteVmStore(db),
    ...createSqliteNetworkWatcherStore(db),
    ...createSqliteSessionStore(db),
    ...createSqliteStorageAccountStore(db, options.secrets),
    ...createSqliteOperationStore(db),
    ...createSqliteAuditStore(db),
    close(): Promise<void> {
      closing ??= db.destroy();
      return closing;
    },
  };
}
