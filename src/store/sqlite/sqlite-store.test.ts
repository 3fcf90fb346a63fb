import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { Kysely, SqliteDialect } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { migrateToLatest, migrations } from '../migrations/index.js';
import type { StoreDatabase } from '../migrations/index.js';
import { describeStoreConformance } from '../store-conformance.js';
import type { SessionRecord } from '../store.js';
import { createSqliteStore } from './sqlite-store.js';

let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'wirewatch-store-'));
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** A path for a new database file in this run's directory. */
const newPath = (): string => join(dir, `${randomUUID()}.db`);

/** Runs `read` on the database file directly, outside the store. */
function inspect<T>(path: string, read: (db: Database.Database) => T): T {
  const db = new Database(path, { readonly: true });
  try {
    return read(db);
  } finally {
    db.close();
  }
}

describeStoreConformance('SQLite in memory', () => createSqliteStore({ path: ':memory:' }));
describeStoreConformance('SQLite file', () => createSqliteStore({ path: newPath() }));

describe('SQLite store file', () => {
  const subscriptionId = randomUUID();
  const created = new Date('2020-02-02T02:02:02.222Z');
  const session: SessionRecord = {
    id: randomUUID(),
    subscriptionId,
    resourceGroup: 'RG',
    watcherName: 'NW',
    name: 'Cap',
    location: 'westus',
    vmId: randomUUID(),
    properties: { target: 'vm', filters: [] },
    status: 'Running',
    stopReason: null,
    errors: [],
    captureStartTime: created,
    stopTime: null,
    progress: { packets: 1, bytes: 2, kernelDrops: 3, at: created },
    files: [],
    stopRequested: null,
    deleteRequested: false,
    upload: null,
    etag: randomUUID(),
    createdAt: created,
    updatedAt: created,
  };

  it('keeps what was written across close and reopen', async () => {
    const path = newPath();
    const first = await createSqliteStore({ path });
    await first.createSubscription({
      id: subscriptionId,
      displayName: 'Contoso',
      createdAt: created,
    });
    await first.createSession(session, 10);
    await first.appendAudit({
      id: randomUUID(),
      subscriptionId,
      at: created,
      actor: 'admin',
      action: 'packetCapture.create',
      resourceId: 'r',
      sourceIp: '::1',
      detail: {},
    });
    await first.close();

    const second = await createSqliteStore({ path });
    try {
      expect(await second.getSubscription(subscriptionId)).toMatchObject({
        displayName: 'Contoso',
      });
      expect(await second.getSession(subscriptionId, 'rg', 'nw', 'cap')).toEqual(session);
      expect((await second.listAudit(subscriptionId, { limit: 5 })).items).toHaveLength(1);
    } finally {
      await second.close();
    }
  });

  it('runs each migration once, however often the file is opened', async () => {
    const path = newPath();
    for (let i = 0; i < 3; i++) await (await createSqliteStore({ path })).close();

    const applied = inspect(path, (db) =>
      db.prepare('select name from kysely_migration order by name').pluck().all(),
    );
    expect(applied).toEqual(Object.keys(migrations).sort());

    const db = new Kysely<StoreDatabase>({
      dialect: new SqliteDialect({ database: new Database(path) }),
    });
    try {
      expect(await migrateToLatest(db)).toEqual([]);
    } finally {
      await db.destroy();
    }
  });

  it('uses WAL and enforces foreign keys', async () => {
    const path = newPath();
    const store = await createSqliteStore({ path });
    try {
      expect(inspect(path, (db) => db.pragma('journal_mode', { simple: true }))).toBe('wal');
      // No such subscription.
      await expect(store.createSession(session, 10)).rejects.toThrow(/FOREIGN KEY/);
    } finally {
      await store.close();
    }
  });

  it('throws when a migration fails, leaving none of it behind', async () => {
    const path = newPath();
    // A table in the way of the last step of 0001_initial.
    const db = new Database(path);
    db.exec('create table audit (x integer)');
    db.close();

    await expect(createSqliteStore({ path })).rejects.toThrow(/0001_initial/);
    const tables = inspect(path, (raw) =>
      raw
        .prepare("select name from sqlite_master where type = 'table' order by name")
        .pluck()
        .all(),
    );
    expect(tables).not.toContain('subscriptions');
    expect(tables).toContain('audit');
  });
});
