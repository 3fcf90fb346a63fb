import { randomUUID } from 'node:crypto';
import { chmod, mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { Kysely, SqliteDialect, type Migration } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { migrateToLatest, migrations } from '../migrations/index.js';
import type { StoreDatabase } from '../migrations/schema.js';
import { describeStoreConformance } from '../../../test/support/store-conformance/index.js';
import { resolveCapture, type CaptureProperties } from '../../model/capture-settings.js';
import type { SessionRecord } from '../store.js';
import { generateSecretsKey, SecretBox, SecretsKeyError } from '../secret-box.js';
import { createSqliteStore } from './sqlite-store.js';

const secretsKey = generateSecretsKey();
const secrets = new SecretBox(secretsKey);

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

describeStoreConformance('SQLite in memory', () =>
  createSqliteStore({ path: ':memory:', secrets }),
);
describeStoreConformance('SQLite file', () => createSqliteStore({ path: newPath(), secrets }));

describe('SQLite store file', () => {
  const subscriptionId = randomUUID();
  const created = new Date('2020-02-02T02:02:02.222Z');
  const properties: CaptureProperties = {
    target: 'vm',
    storageLocation: { filePath: '/var/captures/cap.cap' },
    filters: [],
  };
  const session: SessionRecord = {
    id: randomUUID(),
    subscriptionId,
    resourceGroup: 'RG',
    watcherName: 'NW',
    name: 'Cap',
    location: 'westus',
    vmId: randomUUID(),
    parentId: null,
    instanceId: null,
    properties,
    capture: resolveCapture(properties),
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
    const first = await createSqliteStore({ path, secrets });
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

    const second = await createSqliteStore({ path, secrets });
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
    for (let i = 0; i < 3; i++) await (await createSqliteStore({ path, secrets })).close();

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

  it('runs a migration that lands after a higher-numbered one has run (0005 after 0006)', async () => {
    const path = newPath();
    await (await createSqliteStore({ path, secrets })).close();
    const late: Migration = {
      up: async (db) => {
        await db.schema.createTable('late_table').addColumn('x', 'text').execute();
      },
    };
    const db = new Kysely<StoreDatabase>({
      dialect: new SqliteDialect({ database: new Database(path) }),
    });
    try {
      expect(await migrateToLatest(db, { ...migrations, '0005_late': late })).toEqual([
        '0005_late',
      ]);
    } finally {
      await db.destroy();
    }
    const tables = inspect(path, (raw) =>
      raw.prepare("select name from sqlite_master where type = 'table'").pluck().all(),
    );
    expect(tables).toContain('late_table');
  });

  it('uses WAL and enforces foreign keys', async () => {
    const path = newPath();
    const store = await createSqliteStore({ path, secrets });
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

    await expect(createSqliteStore({ path, secrets })).rejects.toThrow(/0001_initial/);
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

describe('SQLite store secrets and file modes', () => {
  const subscriptionId = randomUUID();
  const accountKey = Buffer.from(randomUUID() + randomUUID()).toString('base64');
  const connectionString = `DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=${accountKey};`;
  const account = {
    subscriptionId,
    resourceGroup: 'RG',
    name: 'capstore',
    accountName: 'acct',
    blobEndpoint: 'https://acct.blob.core.windows.net',
    connectionString,
    createdAt: new Date('2020-02-02T02:02:02.222Z'),
  };

  /** Every byte of the database's files (db, -wal, -shm) as latin1 text. */
  async function rawBytes(path: string): Promise<string> {
    let all = '';
    for (const suffix of ['', '-wal', '-shm']) {
      try {
        all += (await readFile(`${path}${suffix}`)).toString('latin1');
      } catch {
        // -wal and -shm come and go
      }
    }
    return all;
  }

  async function storeWithAccount(path: string, box: SecretBox) {
    const store = await createSqliteStore({ path, secrets: box });
    await store.createSubscription({ id: subscriptionId, displayName: 's', createdAt: new Date() });
    await store.putStorageAccount(account);
    return store;
  }

  it('never writes the account key to the database files, and reads it back', async () => {
    const path = newPath();
    const store = await storeWithAccount(path, secrets);
    try {
      expect(
        (await store.getStorageAccount(subscriptionId, 'rg', 'capstore'))?.connectionString,
      ).toBe(connectionString);
      const raw = await rawBytes(path);
      expect(raw).toContain('acct.blob.core.windows.net');
      expect(raw).not.toContain(accountKey);
      expect(raw).not.toContain('AccountKey');
    } finally {
      await store.close();
    }
    expect(await rawBytes(path)).not.toContain(accountKey);
  });

  it('creates the database files 0600 and narrows existing ones', async () => {
    const path = newPath();
    await (await createSqliteStore({ path, secrets })).close();
    await chmod(path, 0o644);
    const store = await createSqliteStore({ path, secrets });
    try {
      for (const suffix of ['', '-wal', '-shm']) {
        expect(((await stat(`${path}${suffix}`)).mode & 0o777).toString(8)).toBe('600');
      }
    } finally {
      await store.close();
    }
  });

  it('re-seals plaintext rows from before sealing, leaving no copy in the files', async () => {
    const path = newPath();
    await (await storeWithAccount(path, secrets)).close();
    // As an older version wrote it: the connection string in plain text.
    const db = new Database(path);
    db.prepare('update storage_accounts set connection_string = ?').run(connectionString);
    db.close();
    expect(await rawBytes(path)).toContain(accountKey);

    const store = await createSqliteStore({ path, secrets });
    try {
      expect(await store.resealSecrets()).toBe(1);
      expect(await store.resealSecrets()).toBe(0);
      expect(
        (await store.getStorageAccount(subscriptionId, 'rg', 'capstore'))?.connectionString,
      ).toBe(connectionString);
      expect(await rawBytes(path)).not.toContain(accountKey);
    } finally {
      await store.close();
    }
  });

  it('a wrong key fails with SecretsKeyError naming both keys and writes nothing', async () => {
    const path = newPath();
    await (await storeWithAccount(path, secrets)).close();
    const before = inspect(path, (db) =>
      db.prepare('select connection_string from storage_accounts').pluck().get(),
    );
    const wrong = new SecretBox(generateSecretsKey());
    const store = await createSqliteStore({ path, secrets: wrong });
    try {
      const error = await store.resealSecrets().then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(error).toBeInstanceOf(SecretsKeyError);
      expect((error as SecretsKeyError).keyId).toBe(secrets.keyId);
      expect((error as Error).message).toContain(secrets.keyId);
      expect((error as Error).message).toContain(wrong.keyId);
      await expect(store.getStorageAccount(subscriptionId, 'rg', 'capstore')).rejects.toThrow(
        SecretsKeyError,
      );
    } finally {
      await store.close();
    }
    expect(
      inspect(path, (db) =>
        db.prepare('select connection_string from storage_accounts').pluck().get(),
      ),
    ).toBe(before);
  });

  it('a rotation opens with the old key and re-seals with the new one', async () => {
    const path = newPath();
    await (await storeWithAccount(path, secrets)).close();
    const rotated = new SecretBox(generateSecretsKey(), [secretsKey]);
    const store = await createSqliteStore({ path, secrets: rotated });
    try {
      expect(await store.resealSecrets()).toBe(1);
    } finally {
      await store.close();
    }
    const value = inspect(path, (db) =>
      db.prepare('select connection_string from storage_accounts').pluck().get(),
    ) as string;
    expect(value.startsWith(`wwsec1:${rotated.keyId}:`)).toBe(true);
  });
});
