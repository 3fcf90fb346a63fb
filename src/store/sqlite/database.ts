/**
 * The SQLite database under the store: the file (mode 0600), its pragmas, and Kysely's SQLite
 * dialect adapted to this store (immediate transactions, transactional DDL, a statement cache).
 * Kysely's driver hands the one connection to one query or transaction at a time, so a
 * transaction is also a critical section for this process.
 */
import Database from 'better-sqlite3';
import { chmod, open } from 'node:fs/promises';
import { CompiledQuery, Kysely, SqliteAdapter, SqliteDialect, SqliteDriver } from 'kysely';
import type { DatabaseConnection, DialectAdapter, Driver, SqliteDatabase } from 'kysely';
import { migrateToLatest } from '../migrations/index.js';
import type { StoreDatabase } from '../migrations/schema.js';

/**
 * Opens (creating if need be) the SQLite database at `path`, or a private in-memory one for
 * `':memory:'`, and brings its schema up to date. Throws when a migration fails; the pending
 * migrations run in one transaction, so a failure leaves the schema as it was.
 */
export async function openSqliteDatabase(path: string): Promise<Kysely<StoreDatabase>> {
  const onDisk = path !== ':memory:';
  // The database holds tokens' hashes, audit logs and sealed secrets: the owner's only. SQLite
  // creates -wal and -shm with the database file's mode; existing files (0644 from an older
  // version) are narrowed too.
  if (onDisk) await createPrivateFile(path);
  const database = new Database(path);
  let db: Kysely<StoreDatabase> | undefined;
  try {
    // First, so that the pragmas below wait for another process's lock instead of failing.
    database.pragma('busy_timeout = 5000');
    // WAL lets readers in other processes (backups, an admin CLI) run while this one writes; an
    // in-memory database has no file to share.
    if (onDisk) {
      database.pragma('journal_mode = WAL');
      for (const suffix of ['-wal', '-shm']) await narrowIfExists(`${path}${suffix}`);
    }
    // In WAL mode NORMAL is still crash-safe; it only risks the last commits on power loss.
    database.pragma('synchronous = NORMAL');
    database.pragma('foreign_keys = ON');
    db = new Kysely<StoreDatabase>({ dialect: new StoreSqliteDialect(database) });
    await migrateToLatest(db);
  } catch (error) {
    await db?.destroy().catch(() => undefined);
    if (database.open) database.close();
    throw error;
  }
  return db;
}

/** Creates `path` with mode 0600 if missing, and narrows an existing file to 0600. */
async function createPrivateFile(path: string): Promise<void> {
  const handle = await open(path, 'a', 0o600);
  try {
    await handle.chmod(0o600);
  } finally {
    await handle.close();
  }
}

async function narrowIfExists(path: string): Promise<void> {
  try {
    await chmod(path, 0o600);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
  }
}

// Kysely's SQLite dialect, with two changes.

/**
 * Transactions start with BEGIN IMMEDIATE: they take the write lock up front, waiting up to
 * busy_timeout for it. A deferred transaction that reads and then writes (createSession) fails
 * at once with SQLITE_BUSY when another process wrote in between, instead of waiting.
 */
class ImmediateSqliteDriver extends SqliteDriver {
  override async beginTransaction(connection: DatabaseConnection): Promise<void> {
    await connection.executeQuery(CompiledQuery.raw('begin immediate'));
  }
}

/**
 * SQLite's DDL is transactional, though Kysely's adapter says otherwise; saying so makes the
 * Migrator run the pending migrations and their bookkeeping in one transaction, so a failed
 * migration leaves no half-made schema behind.
 */
class TransactionalDdlSqliteAdapter extends SqliteAdapter {
  override get supportsTransactionalDdl(): boolean {
    return true;
  }
}

/**
 * Kysely's SQLite driver prepares every query anew, and each better-sqlite3 statement is a native
 * object the GC has to finalise: under load (bench/control-plane, 10,000 sessions reporting
 * progress) preparing was a quarter of the server's CPU and the cause of most of its GC time. The
 * store runs a few dozen distinct SQL texts, so their statements are prepared once and reused.
 * A statement is only busy while iterated, and neither Kysely's execute nor this store streams.
 */
function withStatementCache(database: Database.Database): SqliteDatabase {
  const statements = new Map<string, Database.Statement>();
  return {
    close: () => database.close(),
    prepare(sql: string) {
      let statement = statements.get(sql);
      if (!statement) {
        // A bound, should SQL of unbounded variety (IN lists of any length) ever come through.
        if (statements.size >= 500) statements.clear();
        statement = database.prepare(sql);
        statements.set(sql, statement);
      }
      return statement;
    },
  };
}

class StoreSqliteDialect extends SqliteDialect {
  readonly #database: SqliteDatabase;

  constructor(database: Database.Database) {
    const cached = withStatementCache(database);
    super({ database: cached });
    this.#database = cached;
  }

  override createDriver(): Driver {
    return new ImmediateSqliteDriver({ database: this.#database });
  }

  override createAdapter(): DialectAdapter {
    return new TransactionalDdlSqliteAdapter();
  }
}
