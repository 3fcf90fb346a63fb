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
import { scaleSets } from './0006-scale-sets.js';
import { scaleSetCaptures } from './0007-scale-set-captures.js';
import type { StoreDatabase } from './schema.js';

/**
 * Every migration, by the name the database records it under (kysely_migration); names sort in
 * the order they run and never change. Numbers may have gaps (one taken by work not yet landed).
 */
export const migrations: Readonly<Record<string, Migration>> = {
  '0001_initial': initial,
  '0002_storage_accounts': storageAccounts,
  '0003_enrollment_takeover': enrollmentTakeover,
  '0004_agent_limits': agentLimits,
  '0006_scale_sets': scaleSets,
  '0007_scale_set_captures': scaleSetCaptures,
};

/**
 * Runs the migrations of `list` (default: all) the database has not run yet, in order, and
 * returns their names (empty when the schema is current). Throws when one fails; the ones before it stay applied unless
 * the dialect runs migrations in a transaction.
 */
export async function migrateToLatest(
  db: Kysely<StoreDatabase>,
  list: Readonly<Record<string, Migration>> = migrations,
): Promise<string[]> {
  // Numbers are taken when work starts, not when it lands: a migration may land after one with a
  // higher number has run on some database (0005 after 0006), and then it runs there too rather
  // than Kysely refusing the list as out of order. Migrations therefore must not depend on one
  // with a higher number.
  const provider: MigrationProvider = { getMigrations: () => Promise.resolve({ ...list }) };
  const migrator = new Migrator({ db, provider, allowUnorderedMigrations: true });
  const { error, results = [] } = await migrator.migrateToLatest();
  if (error !== undefined) {
    const failed = results.find((r) => r.status === 'Error')?.migrationName ?? '(setup)';
    const reason = error instanceof Error ? error.message : JSON.stringify(error);
    throw new Error(`store migration ${failed} failed: ${reason}`, { cause: error });
  }
  return results.filter((r) => r.status === 'Success').map((r) => r.migrationName);
}
