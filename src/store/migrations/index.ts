/**
 * The store's schema, as a static list of versioned migrations shared by every SQL backend: one
 * file each, numbered in the order they run.
 *
 * Migrations are written with Kysely's schema builder and portable types only (text and integer;
 * times as ISO-8601 text, booleans as 0/1, JSON as text) so that the PostgreSQL store can run
 * the same list. A migration, once released, never changes: a schema change is a new file and a
 * new entry below. Migrations take Kysely<unknown>: a migration must not depend on the current
 * StoreDatabase type (./schema.ts), which describes the schema after the last migration, not
 * after that one.
 */
import { Migrator } from 'kysely';
import type { Kysely, Migration, MigrationProvider } from 'kysely';
import { initial } from './0001-initial.js';
import { storageAccounts } from './0002-storage-accounts.js';
import { enrollmentTakeover } from './0003-enrollment-takeover.js';
import { agentLimits } from './0004-agent-limits.js';
import type { StoreDatabase } from './schema.js';

/**
 * Every migration, by the name the database records it under (kysely_migration); names sort in
 * the order they run and never change.
 */
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
