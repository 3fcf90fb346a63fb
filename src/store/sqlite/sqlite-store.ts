/**
 * The Store on SQLite, through Kysely and better-sqlite3: one connection, which Kysely's driver
 * hands to one query or transaction at a time, so a transaction is also a critical section for
 * this process.
 */
import { randomUUID } from 'node:crypto';
import Database from 'better-sqlite3';
import { chmod, open } from 'node:fs/promises';
import { CompiledQuery, Kysely, SqliteAdapter, SqliteDialect, SqliteDriver, sql } from 'kysely';
import type { DatabaseConnection, DialectAdapter, Driver, SqliteDatabase } from 'kysely';
import { WirewatchError } from '../../model/errors.js';
import { foldName, migrateToLatest } from '../migrations/index.js';
import { isSealed, type SecretBox } from '../secret-box.js';
import type {
  AuditTable,
  EnrollmentTokensTable,
  NetworkWatchersTable,
  OperationsTable,
  SessionsTable,
  StorageAccountsTable,
  StoreDatabase,
  SubscriptionsTable,
  TokensTable,
  VmsTable,
} from '../migrations/index.js';
import type {
  AuditRecord,
  CreateSessionResult,
  EnrollmentTokenRecord,
  NetworkWatcherRecord,
  OperationRecord,
  OperationStatus,
  Page,
  PageRequest,
  RingGrantBounds,
  RingGrantResult,
  SessionError,
  SessionPatch,
  SessionProgress,
  SessionRecord,
  SessionStatus,
  SessionUpload,
  StorageAccountRecord,
  Store,
  SubscriptionRecord,
  TokenRecord,
  VmEnrollmentLimits,
  VmRecord,
} from '../store.js';

/**
 * Opens (creating if need be) the SQLite database at `path`, or a private in-memory one for
 * `':memory:'`, and brings its schema up to date. Throws when a migration fails; the pending
 * migrations run in one transaction, so a failure leaves the schema as it was.
 */
export interface SqliteStoreOptions {
  /** The database file, or `':memory:'`. */
  readonly path: string;
  /** Seals the secrets the store keeps (connection strings) and opens them again. */
  readonly secrets: SecretBox;
}

export async function createSqliteStore(options: SqliteStoreOptions): Promise<Store> {
  const onDisk = options.path !== ':memory:';
  // The database holds tokens' hashes, audit logs and sealed secrets: the owner's only. SQLite
  // creates -wal and -shm with the database file's mode; existing files (0644 from an older
  // version) are narrowed too.
  if (onDisk) await createPrivateFile(options.path);
  const database = new Database(options.path);
  let db: Kysely<StoreDatabase> | undefined;
  try {
    // First, so that the pragmas below wait for another process's lock instead of failing.
    database.pragma('busy_timeout = 5000');
    // WAL lets readers in other processes (backups, an admin CLI) run while this one writes; an
    // in-memory database has no file to share.
    if (onDisk) {
      database.pragma('journal_mode = WAL');
      for (const suffix of ['-wal', '-shm']) await narrowIfExists(`${options.path}${suffix}`);
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
  return new SqliteStore(db, options.secrets);
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

// Row ↔ record mappers. Times are ISO-8601 text, booleans 0/1, JSON columns text.

const iso = (date: Date): string => date.toISOString();
const isoOrNull = (date: Date | null): string | null => (date === null ? null : iso(date));
const dateOrNull = (text: string | null): Date | null => (text === null ? null : new Date(text));

/** The column was written by this module from a value of type T. */
function parseJson<T>(text: string): T {
  return JSON.parse(text) as T;
}

function toSubscription(row: SubscriptionsTable): SubscriptionRecord {
  return { id: row.id, displayName: row.display_name, createdAt: new Date(row.created_at) };
}

function toToken(row: TokensTable): TokenRecord {
  return {
    id: row.id,
    subscriptionId: row.subscription_id,
    role: row.role,
    hash: row.hash,
    createdAt: new Date(row.created_at),
    revokedAt: dateOrNull(row.revoked_at),
  };
}

function toEnrollmentToken(row: EnrollmentTokensTable): EnrollmentTokenRecord {
  return {
    id: row.id,
    subscriptionId: row.subscription_id,
    hash: row.hash,
    createdAt: new Date(row.created_at),
    expiresAt: new Date(row.expires_at),
    revokedAt: dateOrNull(row.revoked_at),
    takeover:
      row.takeover_resource_group === null || row.takeover_name === null
        ? null
        : { resourceGroup: row.takeover_resource_group, name: row.takeover_name },
    usedAt: dateOrNull(row.used_at),
    maxUses: row.max_uses,
    uses: row.uses,
  };
}

function vmToRow(record: VmRecord): VmsTable {
  return {
    id: record.id,
    subscription_id: record.subscriptionId,
    resource_group: record.resourceGroup,
    resource_group_key: foldName(record.resourceGroup),
    name: record.name,
    name_key: foldName(record.name),
    location: record.location,
    hostname: record.hostname,
    capture_root: record.captureRoot,
    credential_hash: record.credentialHash,
    created_at: iso(record.createdAt),
    last_seen_at: isoOrNull(record.lastSeenAt),
  };
}

function toVm(row: VmsTable): VmRecord {
  return {
    id: row.id,
    subscriptionId: row.subscription_id,
    resourceGroup: row.resource_group,
    name: row.name,
    location: row.location,
    hostname: row.hostname,
    captureRoot: row.capture_root,
    credentialHash: row.credential_hash,
    createdAt: new Date(row.created_at),
    lastSeenAt: dateOrNull(row.last_seen_at),
  };
}

function watcherToRow(record: NetworkWatcherRecord): NetworkWatchersTable {
  return {
    subscription_id: record.subscriptionId,
    resource_group: record.resourceGroup,
    resource_group_key: foldName(record.resourceGroup),
    name: record.name,
    name_key: foldName(record.name),
    location: record.location,
    tags: JSON.stringify(record.tags),
    etag: record.etag,
    created_at: iso(record.createdAt),
  };
}

function toWatcher(row: NetworkWatchersTable): NetworkWatcherRecord {
  return {
    subscriptionId: row.subscription_id,
    resourceGroup: row.resource_group,
    name: row.name,
    location: row.location,
    tags: parseJson<Record<string, string>>(row.tags),
    etag: row.etag,
    createdAt: new Date(row.created_at),
  };
}

/** SessionProgress as stored: its time as ISO text. */
type StoredProgress = Omit<SessionProgress, 'at'> & { readonly at: string };

function progressToText(progress: SessionProgress | null): string | null {
  if (progress === null) return null;
  const stored: StoredProgress = { ...progress, at: iso(progress.at) };
  return JSON.stringify(stored);
}

function toProgress(text: string | null): SessionProgress | null {
  if (text === null) return null;
  const stored = parseJson<StoredProgress>(text);
  return { ...stored, at: new Date(stored.at) };
}

function sessionToRow(record: SessionRecord): SessionsTable {
  return {
    id: record.id,
    subscription_id: record.subscriptionId,
    resource_group: record.resourceGroup,
    resource_group_key: foldName(record.resourceGroup),
    watcher_name: record.watcherName,
    watcher_key: foldName(record.watcherName),
    name: record.name,
    name_key: foldName(record.name),
    location: record.location,
    vm_id: record.vmId,
    properties: JSON.stringify(record.properties),
    status: record.status,
    stop_reason: record.stopReason,
    errors: JSON.stringify(record.errors),
    capture_start_time: isoOrNull(record.captureStartTime),
    stop_time: isoOrNull(record.stopTime),
    progress: progressToText(record.progress),
    files: JSON.stringify(record.files),
    stop_requested: record.stopRequested,
    delete_requested: record.deleteRequested ? 1 : 0,
    etag: record.etag,
    created_at: iso(record.createdAt),
    updated_at: iso(record.updatedAt),
    upload: record.upload === null ? null : JSON.stringify(record.upload),
  };
}

/** The columns a patch changes; a field absent or undefined in the patch is left alone. */
function sessionPatchToRow(patch: SessionPatch): Partial<SessionsTable> {
  const row: Partial<SessionsTable> = {};
  if (patch.status !== undefined) row.status = patch.status;
  if (patch.stopReason !== undefined) row.stop_reason = patch.stopReason;
  if (patch.errors !== undefined) row.errors = JSON.stringify(patch.errors);
  if (patch.captureStartTime !== undefined) {
    row.capture_start_time = isoOrNull(patch.captureStartTime);
  }
  if (patch.stopTime !== undefined) row.stop_time = isoOrNull(patch.stopTime);
  if (patch.progress !== undefined) row.progress = progressToText(patch.progress);
  if (patch.files !== undefined) row.files = JSON.stringify(patch.files);
  if (patch.stopRequested !== undefined) row.stop_requested = patch.stopRequested;
  if (patch.deleteRequested !== undefined) row.delete_requested = patch.deleteRequested ? 1 : 0;
  if (patch.upload !== undefined) {
    row.upload = patch.upload === null ? null : JSON.stringify(patch.upload);
  }
  return row;
}

function toSession(row: SessionsTable): SessionRecord {
  return {
    id: row.id,
    subscriptionId: row.subscription_id,
    resourceGroup: row.resource_group,
    watcherName: row.watcher_name,
    name: row.name,
    location: row.location,
    vmId: row.vm_id,
    properties: parseJson<Record<string, unknown>>(row.properties),
    status: row.status,
    stopReason: row.stop_reason,
    errors: parseJson<SessionError[]>(row.errors),
    captureStartTime: dateOrNull(row.capture_start_time),
    stopTime: dateOrNull(row.stop_time),
    progress: toProgress(row.progress),
    files: parseJson<string[]>(row.files),
    stopRequested: row.stop_requested,
    deleteRequested: row.delete_requested !== 0,
    upload: row.upload === null ? null : parseJson<SessionUpload>(row.upload),
    etag: row.etag,
    createdAt: new Date(row.created_at),
    updatedAt: new Date(row.updated_at),
  };
}

/**
 * The lookup of a row keyed by name (VMs, network watchers, storage accounts): its subscription
 * and its case-folded resource group and name.
 */
function byName(subscriptionId: string, resourceGroupKey: string, nameKey: string) {
  return {
    subscription_id: subscriptionId,
    resource_group_key: resourceGroupKey,
    name_key: nameKey,
  };
}

/**
 * What a storage account's sealed connection string is bound to: its row, so that a sealed
 * value copied into another row does not open.
 */
function storageAccountContext(
  row: Pick<StorageAccountsTable, 'subscription_id' | 'resource_group_key' | 'name_key'>,
): string {
  return `storageAccount/${row.subscription_id}/${row.resource_group_key}/${row.name_key}`;
}

/** The row, its connection string sealed with the box's current key. */
function storageAccountToRow(record: StorageAccountRecord, box: SecretBox): StorageAccountsTable {
  const keys = {
    subscription_id: record.subscriptionId,
    resource_group_key: foldName(record.resourceGroup),
    name_key: foldName(record.name),
  };
  return {
    ...keys,
    resource_group: record.resourceGroup,
    name: record.name,
    account_name: record.accountName,
    blob_endpoint: record.blobEndpoint,
    connection_string: box.seal(record.connectionString, storageAccountContext(keys)),
    created_at: iso(record.createdAt),
  };
}

/**
 * The record, its connection string opened. A plaintext value (a row from before sealing, until
 * resealSecrets runs at the server's start) is returned as it is.
 */
function toStorageAccount(row: StorageAccountsTable, box: SecretBox): StorageAccountRecord {
  return {
    subscriptionId: row.subscription_id,
    resourceGroup: row.resource_group,
    name: row.name,
    accountName: row.account_name,
    blobEndpoint: row.blob_endpoint,
    connectionString: isSealed(row.connection_string)
      ? box.open(row.connection_string, storageAccountContext(row))
      : row.connection_string,
    createdAt: new Date(row.created_at),
  };
}

function toOperation(row: OperationsTable): OperationRecord {
  return {
    id: row.id,
    subscriptionId: row.subscription_id,
    location: row.location,
    kind: row.kind,
    sessionId: row.session_id,
    resourceId: row.resource_id,
    status: row.status,
    error: row.error === null ? null : parseJson<SessionError>(row.error),
    createdAt: new Date(row.created_at),
    updatedAt: new Date(row.updated_at),
  };
}

function toAudit(row: AuditTable): AuditRecord {
  return {
    id: row.id,
    subscriptionId: row.subscription_id,
    at: new Date(row.at),
    actor: row.actor,
    action: row.action,
    resourceId: row.resource_id,
    sourceIp: row.source_ip,
    detail: parseJson<Record<string, unknown>>(row.detail),
  };
}

/** A fresh etag: the bare value; the API adds Azure's `W/"…"` around it. */
function newEtag(): string {
  return randomUUID();
}

// Paging. A cursor is the sort key of the last item of a page, as base64url JSON: opaque to
// callers, and stable under inserts and deletes between pages (unlike an offset).

function checkPageLimit(limit: number): void {
  if (!Number.isInteger(limit) || limit < 1) {
    throw new RangeError(`page limit must be a whole number ≥ 1, not ${limit}`);
  }
}

function encodeCursor(key: Readonly<Record<string, string>>): string {
  return Buffer.from(JSON.stringify(key)).toString('base64url');
}

/**
 * The sort key in a cursor. Cursors come back from clients (as $skipToken), so one this store did
 * not make is the client's error: InvalidRequestContent, a 400.
 */
function decodeCursor<K extends string>(cursor: string, fields: readonly K[]): Record<K, string> {
  const invalid = (): WirewatchError =>
    new WirewatchError('InvalidRequestContent', 'The page cursor ($skipToken) is not valid', {
      target: '$skipToken',
    });
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
  } catch {
    throw invalid();
  }
  if (typeof parsed !== 'object' || parsed === null) throw invalid();
  const key: Partial<Record<K, string>> = {};
  for (const field of fields) {
    const value: unknown = (parsed as Record<string, unknown>)[field];
    if (typeof value !== 'string') throw invalid();
    key[field] = value;
  }
  return key as Record<K, string>;
}

/** The page from rows fetched with limit + 1: the extra row only says that there is more. */
function toPage<R, T>(
  rows: readonly R[],
  limit: number,
  toRecord: (row: R) => T,
  sortKey: (row: R) => Readonly<Record<string, string>>,
): Page<T> {
  const items = rows.slice(0, limit);
  const last = items.at(-1);
  const next = rows.length > limit && last !== undefined ? encodeCursor(sortKey(last)) : null;
  return { items: items.map(toRecord), next };
}

const activeStatuses: readonly SessionStatus[] = ['NotStarted', 'Running'];

class SqliteStore implements Store {
  readonly #db: Kysely<StoreDatabase>;
  readonly #box: SecretBox;
  #closing: Promise<void> | undefined;

  constructor(db: Kysely<StoreDatabase>, box: SecretBox) {
    this.#db = db;
    this.#box = box;
  }

  // Subscriptions

  async createSubscription(record: SubscriptionRecord): Promise<void> {
    await this.#db
      .insertInto('subscriptions')
      .values({
        id: record.id,
        display_name: record.displayName,
        created_at: iso(record.createdAt),
      })
      .execute();
  }

  async getSubscription(id: string): Promise<SubscriptionRecord | undefined> {
    const row = await this.#db
      .selectFrom('subscriptions')
      .selectAll()
      .where('id', '=', id)
      .executeTakeFirst();
    return row && toSubscription(row);
  }

  async listSubscriptions(): Promise<SubscriptionRecord[]> {
    const rows = await this.#db
      .selectFrom('subscriptions')
      .selectAll()
      .orderBy('created_at')
      .orderBy('id')
      .execute();
    return rows.map(toSubscription);
  }

  // API tokens

  async createToken(record: TokenRecord): Promise<void> {
    await this.#db
      .insertInto('tokens')
      .values({
        id: record.id,
        subscription_id: record.subscriptionId,
        role: record.role,
        hash: record.hash,
        created_at: iso(record.createdAt),
        revoked_at: isoOrNull(record.revokedAt),
      })
      .execute();
  }

  async findTokenByHash(hash: string): Promise<TokenRecord | undefined> {
    const row = await this.#db
      .selectFrom('tokens')
      .selectAll()
      .where('hash', '=', hash)
      .executeTakeFirst();
    return row && toToken(row);
  }

  /** `subscriptionId` null is the admin's scope: any token. A second revoke keeps the first time. */
  async revokeToken(subscriptionId: string | null, id: string, at: Date): Promise<boolean> {
    let query = this.#db
      .updateTable('tokens')
      .set((eb) => ({ revoked_at: eb.fn.coalesce('revoked_at', eb.val(iso(at))) }))
      .where('id', '=', id);
    if (subscriptionId !== null) query = query.where('subscription_id', '=', subscriptionId);
    const result = await query.executeTakeFirst();
    return result.numUpdatedRows > 0n;
  }

  async revokeAdminTokensExcept(keepHash: string, at: Date): Promise<number> {
    const result = await this.#db
      .updateTable('tokens')
      .set({ revoked_at: iso(at) })
      .where('role', '=', 'Admin')
      .where('hash', '!=', keepHash)
      .where('revoked_at', 'is', null)
      .executeTakeFirst();
    return Number(result.numUpdatedRows);
  }

  // Enrollment tokens

  async createEnrollmentToken(record: EnrollmentTokenRecord): Promise<void> {
    await this.#db
      .insertInto('enrollment_tokens')
      .values({
        id: record.id,
        subscription_id: record.subscriptionId,
        hash: record.hash,
        created_at: iso(record.createdAt),
        expires_at: iso(record.expiresAt),
        revoked_at: isoOrNull(record.revokedAt),
        takeover_resource_group: record.takeover?.resourceGroup ?? null,
        takeover_name: record.takeover?.name ?? null,
        used_at: isoOrNull(record.usedAt),
        max_uses: record.maxUses,
        uses: record.uses,
      })
      .execute();
  }

  async findEnrollmentTokenByHash(hash: string): Promise<EnrollmentTokenRecord | undefined> {
    const row = await this.#db
      .selectFrom('enrollment_tokens')
      .selectAll()
      .where('hash', '=', hash)
      .executeTakeFirst();
    return row && toEnrollmentToken(row);
  }

  async listEnrollmentTokens(subscriptionId: string): Promise<EnrollmentTokenRecord[]> {
    const rows = await this.#db
      .selectFrom('enrollment_tokens')
      .selectAll()
      .where('subscription_id', '=', subscriptionId)
      .orderBy('created_at')
      .orderBy('id')
      .execute();
    return rows.map(toEnrollmentToken);
  }

  async revokeEnrollmentToken(subscriptionId: string, id: string, at: Date): Promise<boolean> {
    const result = await this.#db
      .updateTable('enrollment_tokens')
      .set((eb) => ({ revoked_at: eb.fn.coalesce('revoked_at', eb.val(iso(at))) }))
      .where('id', '=', id)
      .where('subscription_id', '=', subscriptionId)
      .executeTakeFirst();
    return result.numUpdatedRows > 0n;
  }

  async useEnrollmentToken(id: string, at: Date): Promise<boolean> {
    const result = await this.#db
      .updateTable('enrollment_tokens')
      .set({ used_at: iso(at) })
      .where('id', '=', id)
      .where('used_at', 'is', null)
      .where('revoked_at', 'is', null)
      .executeTakeFirst();
    return result.numUpdatedRows > 0n;
  }

  // VMs

  async createVm(record: VmRecord, limits?: VmEnrollmentLimits): Promise<VmRecord | undefined> {
    const row = vmToRow(record);
    const insert = (db: Kysely<StoreDatabase>) =>
      db
        .insertInto('vms')
        .values(row)
        .onConflict((oc) =>
          oc.columns(['subscription_id', 'resource_group_key', 'name_key']).doNothing(),
        )
        .returningAll()
        .executeTakeFirst();
    if (limits === undefined) {
      const inserted = await insert(this.#db);
      return inserted && toVm(inserted);
    }
    // The counts, the insert and the token's use in one transaction: on SQLite it holds the
    // write lock, so concurrent enrollments cannot both take the last place.
    return this.#db.transaction().execute(async (trx) => {
      const tokenId = limits.enrollmentTokenId;
      if (tokenId !== undefined) {
        const token = await trx
          .selectFrom('enrollment_tokens')
          .select(['max_uses', 'uses'])
          .where('id', '=', tokenId)
          .executeTakeFirst();
        if (token && token.max_uses !== null && token.uses >= token.max_uses) {
          throw new WirewatchError(
            'EnrollmentLimitReached',
            `This enrollment token has enrolled ${token.uses} VMs, all it may (maxUses ${token.max_uses}); create another enrollment token`,
          );
        }
      }
      const max = limits.maxVmsPerSubscription;
      if (max !== undefined) {
        const { count } = await trx
          .selectFrom('vms')
          .select((eb) => eb.fn.countAll().as('count'))
          .where('subscription_id', '=', row.subscription_id)
          .executeTakeFirstOrThrow();
        if (Number(count) >= max) {
          throw new WirewatchError(
            'EnrollmentLimitReached',
            `Subscription '${row.subscription_id}' has ${Number(count)} VMs, the most this server allows (--max-vms-per-subscription ${max}); delete VMs no longer in use`,
          );
        }
      }
      const inserted = await insert(trx);
      if (inserted === undefined) return undefined;
      if (tokenId !== undefined) {
        await trx
          .updateTable('enrollment_tokens')
          .set((eb) => ({ uses: eb('uses', '+', 1) }))
          .where('id', '=', tokenId)
          .execute();
      }
      return toVm(inserted);
    });
  }

  async upsertVm(record: VmRecord): Promise<VmRecord> {
    // One statement, so atomic without a transaction; the conflict target is the folded name,
    // so a VM re-enrolling under another id keeps its first one.
    const row = await this.#db
      .insertInto('vms')
      .values(vmToRow(record))
      .onConflict((oc) =>
        oc.columns(['subscription_id', 'resource_group_key', 'name_key']).doUpdateSet((eb) => ({
          credential_hash: eb.ref('excluded.credential_hash'),
          hostname: eb.ref('excluded.hostname'),
          capture_root: eb.ref('excluded.capture_root'),
        })),
      )
      .returningAll()
      .executeTakeFirstOrThrow();
    return toVm(row);
  }

  async getVmById(id: string): Promise<VmRecord | undefined> {
    const row = await this.#db
      .selectFrom('vms')
      .selectAll()
      .where('id', '=', id)
      .executeTakeFirst();
    return row && toVm(row);
  }

  async getVmByCredentialHash(hash: string): Promise<VmRecord | undefined> {
    const row = await this.#db
      .selectFrom('vms')
      .selectAll()
      .where('credential_hash', '=', hash)
      .executeTakeFirst();
    return row && toVm(row);
  }

  async getVm(
    subscriptionId: string,
    resourceGroup: string,
    name: string,
  ): Promise<VmRecord | undefined> {
    const row = await this.#db
      .selectFrom('vms')
      .selectAll()
      .where((eb) => eb.and(byName(subscriptionId, foldName(resourceGroup), foldName(name))))
      .executeTakeFirst();
    return row && toVm(row);
  }

  async listVms(subscriptionId: string, resourceGroup?: string): Promise<VmRecord[]> {
    let query = this.#db
      .selectFrom('vms')
      .selectAll()
      .where('subscription_id', '=', subscriptionId);
    if (resourceGroup !== undefined) {
      query = query.where('resource_group_key', '=', foldName(resourceGroup));
    }
    const rows = await query.orderBy('resource_group_key').orderBy('name_key').execute();
    return rows.map(toVm);
  }

  async touchVm(id: string, lastSeenAt: Date): Promise<void> {
    await this.#db
      .updateTable('vms')
      .set({ last_seen_at: iso(lastSeenAt) })
      .where('id', '=', id)
      .execute();
  }

  /** Leaves the VM's sessions: the control plane stops them (TargetDeleted) and they stay listed. */
  async deleteVm(id: string): Promise<boolean> {
    const result = await this.#db.deleteFrom('vms').where('id', '=', id).executeTakeFirst();
    return result.numDeletedRows > 0n;
  }

  // Network watchers

  /** An update keeps the name's casing and createdAt, and takes location, tags and etag. */
  async putWatcher(
    record: NetworkWatcherRecord,
  ): Promise<{ record: NetworkWatcherRecord; created: boolean }> {
    const row = watcherToRow(record);
    return this.#db.transaction().execute(async (trx) => {
      const updated = await trx
        .updateTable('network_watchers')
        .set({ location: row.location, tags: row.tags, etag: row.etag })
        .where((eb) => eb.and(byName(row.subscription_id, row.resource_group_key, row.name_key)))
        .returningAll()
        .executeTakeFirst();
      if (updated !== undefined) return { record: toWatcher(updated), created: false };
      const inserted = await trx
        .insertInto('network_watchers')
        .values(row)
        .returningAll()
        .executeTakeFirstOrThrow();
      return { record: toWatcher(inserted), created: true };
    });
  }

  async createWatcherIfAbsent(
    record: NetworkWatcherRecord,
  ): Promise<NetworkWatcherRecord | undefined> {
    // No conflict target: the primary key (the name) and the one-per-location index both count.
    const row = await this.#db
      .insertInto('network_watchers')
      .values(watcherToRow(record))
      .onConflict((oc) => oc.doNothing())
      .returningAll()
      .executeTakeFirst();
    return row && toWatcher(row);
  }

  async getWatcher(
    subscriptionId: string,
    resourceGroup: string,
    name: string,
  ): Promise<NetworkWatcherRecord | undefined> {
    const row = await this.#db
      .selectFrom('network_watchers')
      .selectAll()
      .where((eb) => eb.and(byName(subscriptionId, foldName(resourceGroup), foldName(name))))
      .executeTakeFirst();
    return row && toWatcher(row);
  }

  async findWatcherByLocation(
    subscriptionId: string,
    location: string,
  ): Promise<NetworkWatcherRecord | undefined> {
    const row = await this.#db
      .selectFrom('network_watchers')
      .selectAll()
      .where('subscription_id', '=', subscriptionId)
      .where('location', '=', location)
      .executeTakeFirst();
    return row && toWatcher(row);
  }

  async listWatchers(
    subscriptionId: string,
    resourceGroup?: string,
  ): Promise<NetworkWatcherRecord[]> {
    let query = this.#db
      .selectFrom('network_watchers')
      .selectAll()
      .where('subscription_id', '=', subscriptionId);
    if (resourceGroup !== undefined) {
      query = query.where('resource_group_key', '=', foldName(resourceGroup));
    }
    const rows = await query.orderBy('resource_group_key').orderBy('name_key').execute();
    return rows.map(toWatcher);
  }

  async deleteWatcher(
    subscriptionId: string,
    resourceGroup: string,
    name: string,
  ): Promise<boolean> {
    const resourceGroupKey = foldName(resourceGroup);
    const nameKey = foldName(name);
    return this.#db.transaction().execute(async (trx) => {
      const deleted = await trx
        .deleteFrom('network_watchers')
        .where((eb) => eb.and(byName(subscriptionId, resourceGroupKey, nameKey)))
        .executeTakeFirst();
      if (deleted.numDeletedRows === 0n) return false;
      await trx
        .deleteFrom('ring_grants')
        .where('session_id', 'in', (eb) =>
          eb
            .selectFrom('sessions')
            .select('id')
            .where('subscription_id', '=', subscriptionId)
            .where('resource_group_key', '=', resourceGroupKey)
            .where('watcher_key', '=', nameKey),
        )
        .execute();
      await trx
        .deleteFrom('sessions')
        .where('subscription_id', '=', subscriptionId)
        .where('resource_group_key', '=', resourceGroupKey)
        .where('watcher_key', '=', nameKey)
        .execute();
      return true;
    });
  }

  // Sessions

  async createSession(record: SessionRecord, quota: number): Promise<CreateSessionResult> {
    const row = sessionToRow(record);
    // The check and the insert in one transaction: on SQLite it holds the only connection (and
    // the write lock), so no other create can slip in between.
    return this.#db.transaction().execute(async (trx): Promise<CreateSessionResult> => {
      const existing = await trx
        .selectFrom('sessions')
        .selectAll()
        .where('subscription_id', '=', row.subscription_id)
        .where('resource_group_key', '=', row.resource_group_key)
        .where('watcher_key', '=', row.watcher_key)
        .where('name_key', '=', row.name_key)
        .executeTakeFirst();
      if (existing !== undefined) return { kind: 'exists', session: toSession(existing) };

      const { count } = await trx
        .selectFrom('sessions')
        .select((eb) => eb.fn.countAll().as('count'))
        .where('subscription_id', '=', row.subscription_id)
        .where('location', '=', row.location)
        .where('status', 'in', activeStatuses)
        .executeTakeFirstOrThrow();
      const active = Number(count);
      if (active >= quota) return { kind: 'quota-exceeded', active };

      const inserted = await trx
        .insertInto('sessions')
        .values(row)
        .returningAll()
        .executeTakeFirstOrThrow();
      return { kind: 'created', session: toSession(inserted) };
    });
  }

  async getSession(
    subscriptionId: string,
    resourceGroup: string,
    watcherName: string,
    name: string,
  ): Promise<SessionRecord | undefined> {
    const row = await this.#db
      .selectFrom('sessions')
      .selectAll()
      .where('subscription_id', '=', subscriptionId)
      .where('resource_group_key', '=', foldName(resourceGroup))
      .where('watcher_key', '=', foldName(watcherName))
      .where('name_key', '=', foldName(name))
      .executeTakeFirst();
    return row && toSession(row);
  }

  async getSessionById(id: string): Promise<SessionRecord | undefined> {
    const row = await this.#db
      .selectFrom('sessions')
      .selectAll()
      .where('id', '=', id)
      .executeTakeFirst();
    return row && toSession(row);
  }

  async listSessions(
    subscriptionId: string,
    resourceGroup: string,
    watcherName: string,
    page: PageRequest,
  ): Promise<Page<SessionRecord>> {
    checkPageLimit(page.limit);
    let query = this.#db
      .selectFrom('sessions')
      .selectAll()
      .where('subscription_id', '=', subscriptionId)
      .where('resource_group_key', '=', foldName(resourceGroup))
      .where('watcher_key', '=', foldName(watcherName));
    if (page.after !== undefined && page.after !== null) {
      // name_key is unique under a watcher, so it alone is the sort key.
      const { name } = decodeCursor(page.after, ['name']);
      query = query.where('name_key', '>', name);
    }
    const rows = await query
      .orderBy('name_key')
      .limit(page.limit + 1)
      .execute();
    return toPage(rows, page.limit, toSession, (row) => ({ name: row.name_key }));
  }

  async listSessionsByVm(
    vmId: string,
    statuses?: readonly SessionStatus[],
  ): Promise<SessionRecord[]> {
    if (statuses?.length === 0) return [];
    let query = this.#db.selectFrom('sessions').selectAll().where('vm_id', '=', vmId);
    if (statuses !== undefined) query = query.where('status', 'in', statuses);
    const rows = await query.orderBy('created_at').orderBy('id').execute();
    return rows.map(toSession);
  }

  async listSessionsByStatus(statuses: readonly SessionStatus[]): Promise<SessionRecord[]> {
    if (statuses.length === 0) return [];
    const rows = await this.#db
      .selectFrom('sessions')
      .selectAll()
      .where('status', 'in', statuses)
      .orderBy('created_at')
      .orderBy('id')
      .execute();
    return rows.map(toSession);
  }

  async updateSession(id: string, patch: SessionPatch): Promise<SessionRecord | undefined> {
    const row = await this.#db
      .updateTable('sessions')
      .set({ ...sessionPatchToRow(patch), etag: newEtag(), updated_at: iso(new Date()) })
      .where('id', '=', id)
      .returningAll()
      .executeTakeFirst();
    return row && toSession(row);
  }

  async deleteSession(id: string): Promise<boolean> {
    return this.#db.transaction().execute(async (trx) => {
      await trx.deleteFrom('ring_grants').where('session_id', '=', id).execute();
      const result = await trx.deleteFrom('sessions').where('id', '=', id).executeTakeFirst();
      return result.numDeletedRows > 0n;
    });
  }

  async grantRingFile(
    sessionId: string,
    fileIndex: number,
    bounds: RingGrantBounds,
  ): Promise<RingGrantResult> {
    return this.#db.transaction().execute(async (trx): Promise<RingGrantResult> => {
      const granted = await trx
        .selectFrom('ring_grants')
        .select('file_index')
        .where('session_id', '=', sessionId)
        .where('file_index', '=', fileIndex)
        .executeTakeFirst();
      if (granted !== undefined) return { kind: 'granted', again: true };
      const { highest, count } = await trx
        .selectFrom('ring_grants')
        .select((eb) => [eb.fn.max('file_index').as('highest'), eb.fn.countAll().as('count')])
        .where('session_id', '=', sessionId)
        .executeTakeFirstOrThrow();
      const top = highest === null ? 0 : Number(highest);
      const n = Number(count);
      if (n >= bounds.maxGrants || fileIndex > top + bounds.window) {
        return { kind: 'refused', highest: top, count: n };
      }
      await trx
        .insertInto('ring_grants')
        .values({ session_id: sessionId, file_index: fileIndex })
        .execute();
      return { kind: 'granted', again: false };
    });
  }

  async listRingGrants(sessionId: string): Promise<number[]> {
    const rows = await this.#db
      .selectFrom('ring_grants')
      .select('file_index')
      .where('session_id', '=', sessionId)
      .orderBy('file_index')
      .execute();
    return rows.map((r) => Number(r.file_index));
  }

  async countSessionsByStatus(): Promise<Record<SessionStatus, number>> {
    const rows = await this.#db
      .selectFrom('sessions')
      .select((eb) => ['status', eb.fn.countAll().as('count')])
      .groupBy('status')
      .execute();
    const counts: Record<SessionStatus, number> = {
      NotStarted: 0,
      Running: 0,
      Stopped: 0,
      Error: 0,
    };
    for (const row of rows) counts[row.status] = Number(row.count);
    return counts;
  }

  // Long-running operations

  async putStorageAccount(
    record: StorageAccountRecord,
  ): Promise<{ record: StorageAccountRecord; created: boolean }> {
    const row = storageAccountToRow(record, this.#box);
    const box = this.#box;
    return this.#db.transaction().execute(async (trx) => {
      const updated = await trx
        .updateTable('storage_accounts')
        .set({
          account_name: row.account_name,
          blob_endpoint: row.blob_endpoint,
          connection_string: row.connection_string,
        })
        .where((eb) => eb.and(byName(row.subscription_id, row.resource_group_key, row.name_key)))
        .returningAll()
        .executeTakeFirst();
      if (updated !== undefined) return { record: toStorageAccount(updated, box), created: false };
      const inserted = await trx
        .insertInto('storage_accounts')
        .values(row)
        .returningAll()
        .executeTakeFirstOrThrow();
      return { record: toStorageAccount(inserted, box), created: true };
    });
  }

  async getStorageAccount(
    subscriptionId: string,
    resourceGroup: string,
    name: string,
  ): Promise<StorageAccountRecord | undefined> {
    const row = await this.#db
      .selectFrom('storage_accounts')
      .selectAll()
      .where((eb) => eb.and(byName(subscriptionId, foldName(resourceGroup), foldName(name))))
      .executeTakeFirst();
    return row === undefined ? undefined : toStorageAccount(row, this.#box);
  }

  async listStorageAccounts(subscriptionId: string): Promise<StorageAccountRecord[]> {
    const rows = await this.#db
      .selectFrom('storage_accounts')
      .selectAll()
      .where('subscription_id', '=', subscriptionId)
      .orderBy('resource_group_key')
      .orderBy('name_key')
      .execute();
    return rows.map((row) => toStorageAccount(row, this.#box));
  }

  async deleteStorageAccount(
    subscriptionId: string,
    resourceGroup: string,
    name: string,
  ): Promise<boolean> {
    const result = await this.#db
      .deleteFrom('storage_accounts')
      .where((eb) => eb.and(byName(subscriptionId, foldName(resourceGroup), foldName(name))))
      .executeTakeFirst();
    return Number(result.numDeletedRows) > 0;
  }

  /**
   * Opens every connection string first (so a key that does not fit fails before anything is
   * written), then re-seals those not sealed with the current key, in one transaction. When it
   * changed any, VACUUM and a truncating WAL checkpoint leave no copy of the old values (the
   * plaintext of rows from before sealing) in the database's free pages or its WAL.
   */
  async resealSecrets(): Promise<number> {
    const box = this.#box;
    const changed = await this.#db.transaction().execute(async (trx) => {
      const rows = await trx.selectFrom('storage_accounts').selectAll().execute();
      const stale = rows
        .map((row) => ({ row, plaintext: toStorageAccount(row, box).connectionString }))
        .filter(({ row }) => !box.isCurrent(row.connection_string));
      for (const { row, plaintext } of stale) {
        await trx
          .updateTable('storage_accounts')
          .set({ connection_string: box.seal(plaintext, storageAccountContext(row)) })
          .where((eb) => eb.and(byName(row.subscription_id, row.resource_group_key, row.name_key)))
          .execute();
      }
      return stale.length;
    });
    if (changed > 0) {
      await sql`vacuum`.execute(this.#db);
      await sql`pragma wal_checkpoint(TRUNCATE)`.execute(this.#db);
    }
    return changed;
  }

  async createOperation(record: OperationRecord): Promise<void> {
    await this.#db
      .insertInto('operations')
      .values({
        id: record.id,
        subscription_id: record.subscriptionId,
        location: record.location,
        kind: record.kind,
        session_id: record.sessionId,
        resource_id: record.resourceId,
        status: record.status,
        error: record.error === null ? null : JSON.stringify(record.error),
        created_at: iso(record.createdAt),
        updated_at: iso(record.updatedAt),
      })
      .execute();
  }

  async getOperation(subscriptionId: string, id: string): Promise<OperationRecord | undefined> {
    const row = await this.#db
      .selectFrom('operations')
      .selectAll()
      .where('id', '=', id)
      .where('subscription_id', '=', subscriptionId)
      .executeTakeFirst();
    return row && toOperation(row);
  }

  async listOpenOperations(sessionId: string): Promise<OperationRecord[]> {
    const rows = await this.#db
      .selectFrom('operations')
      .selectAll()
      .where('session_id', '=', sessionId)
      .where('status', '=', 'InProgress')
      .orderBy('created_at')
      .orderBy('id')
      .execute();
    return rows.map(toOperation);
  }

  async listInProgressOperations(): Promise<OperationRecord[]> {
    const rows = await this.#db
      .selectFrom('operations')
      .selectAll()
      .where('status', '=', 'InProgress')
      .orderBy('created_at')
      .orderBy('id')
      .execute();
    return rows.map(toOperation);
  }

  /** `error` undefined leaves the stored error; null clears it. updatedAt is renewed. */
  async updateOperation(
    id: string,
    patch: { status: OperationStatus; error?: SessionError | null },
  ): Promise<void> {
    const error =
      patch.error === undefined
        ? {}
        : { error: patch.error === null ? null : JSON.stringify(patch.error) };
    await this.#db
      .updateTable('operations')
      .set({ status: patch.status, ...error, updated_at: iso(new Date()) })
      .where('id', '=', id)
      .execute();
  }

  // Audit

  async appendAudit(record: AuditRecord): Promise<void> {
    await this.#db
      .insertInto('audit')
      .values({
        id: record.id,
        subscription_id: record.subscriptionId,
        at: iso(record.at),
        actor: record.actor,
        action: record.action,
        resource_id: record.resourceId,
        source_ip: record.sourceIp,
        detail: JSON.stringify(record.detail),
      })
      .execute();
  }

  async listAudit(subscriptionId: string, page: PageRequest): Promise<Page<AuditRecord>> {
    checkPageLimit(page.limit);
    let query = this.#db
      .selectFrom('audit')
      .selectAll()
      .where('subscription_id', '=', subscriptionId);
    if (page.after !== undefined && page.after !== null) {
      // Newest first, id breaking ties between records of the same millisecond.
      const { at, id } = decodeCursor(page.after, ['at', 'id']);
      query = query.where((eb) =>
        eb.or([eb('at', '<', at), eb.and([eb('at', '=', at), eb('id', '<', id)])]),
      );
    }
    const rows = await query
      .orderBy('at', 'desc')
      .orderBy('id', 'desc')
      .limit(page.limit + 1)
      .execute();
    return toPage(rows, page.limit, toAudit, (row) => ({ at: row.at, id: row.id }));
  }

  close(): Promise<void> {
    this.#closing ??= this.#db.destroy();
    return this.#closing;
  }
}
