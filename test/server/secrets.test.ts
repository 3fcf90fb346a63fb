/**
 * The server's secrets at rest, across restarts of a real server on one data dir: the secrets
 * key file and its modes, the database files' modes, a wrong or missing key refused at start
 * with a clear message, and key rotation (also one cut short).
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startServer, type StartServerOptions } from '../../src/server/start-server.js';

let root: string;

beforeAll(async () => {
  root = await mkdtemp(path.join(tmpdir(), 'ww-secrets-'));
});

afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

const subscriptionId = randomUUID();
const accountKey = randomBytes(64).toString('base64');
const connectionString = `DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=${accountKey};EndpointSuffix=core.windows.net`;

function options(dir: string, extra: Partial<StartServerOptions> = {}): StartServerOptions {
  return {
    dataDir: dir,
    listen: '127.0.0.1:0',
    logger: false,
    adminToken: 'wwadmin_secrets_test_0123456789',
    ...extra,
  };
}

/** A server on `dir` holding one storage account (written through the server's own store). */
async function seed(dir: string): Promise<void> {
  const server = await startServer(options(dir));
  try {
    await server.store.createSubscription({
      id: subscriptionId,
      displayName: 's',
      createdAt: new Date(),
    });
    await server.store.putStorageAccount({
      subscriptionId,
      resourceGroup: 'rg',
      name: 'capstore',
      accountName: 'acct',
      blobEndpoint: 'https://acct.blob.core.windows.net',
      connectionString,
      createdAt: new Date(),
    });
  } finally {
    await server.close();
  }
}

/** The stored connection string as a restarted server reads it. */
async function readBack(
  dir: string,
  extra: Partial<StartServerOptions> = {},
): Promise<string | undefined> {
  const server = await startServer(options(dir, extra));
  try {
    return (await server.store.getStorageAccount(subscriptionId, 'rg', 'capstore'))
      ?.connectionString;
  } finally {
    await server.close();
  }
}

async function rawDatabase(dir: string): Promise<string> {
  let all = '';
  for (const suffix of ['', '-wal', '-shm']) {
    try {
      all += (await readFile(path.join(dir, `wirewatch.db${suffix}`))).toString('latin1');
    } catch {
      // -wal and -shm come and go
    }
  }
  return all;
}

const mode = async (file: string) => ((await stat(file)).mode & 0o777).toString(8);

describe('secrets at rest', () => {
  it('makes DIR/secrets.key (0600), keeps the data dir 0700 and the database files 0600', async () => {
    const dir = path.join(root, 'modes');
    await seed(dir);
    expect(await mode(dir)).toBe('700');
    expect(await mode(path.join(dir, 'secrets.key'))).toBe('600');
    expect((await readFile(path.join(dir, 'secrets.key'), 'utf8')).trim()).toMatch(
      /^[A-Za-z0-9+/]{43}=$/,
    );
    const server = await startServer(options(dir));
    try {
      for (const suffix of ['', '-wal', '-shm']) {
        expect(await mode(path.join(dir, `wirewatch.db${suffix}`))).toBe('600');
      }
    } finally {
      await server.close();
    }
  });

  it('the database files never hold the account key; a restart reads it back', async () => {
    const dir = path.join(root, 'raw');
    await seed(dir);
    expect(await rawDatabase(dir)).toContain('acct.blob.core.windows.net');
    expect(await rawDatabase(dir)).not.toContain(accountKey);
    expect(await readBack(dir)).toBe(connectionString);
    expect(await rawDatabase(dir)).not.toContain(accountKey);
  });

  it('a wrong --secrets-key is refused at start with a message naming the file and both keys', async () => {
    const dir = path.join(root, 'wrong');
    await seed(dir);
    const wrong = path.join(root, 'wrong.key');
    await writeFile(wrong, `${randomBytes(32).toString('base64')}\n`, { mode: 0o600 });
    await expect(startServer(options(dir, { secretsKeyPath: wrong }))).rejects.toThrow(
      new RegExp(
        `secrets key in ${wrong.replace(/[.]/g, '\\.')} .*does not open the secrets in the database: wrong --secrets-key\\?`,
      ),
    );
    // The right key still works: the failed start changed nothing.
    expect(await readBack(dir)).toBe(connectionString);
  });

  it('a missing secrets key is refused when the database holds sealed secrets, and none is left made', async () => {
    const dir = path.join(root, 'missing');
    await seed(dir);
    const keyFile = path.join(dir, 'secrets.key');
    const saved = await readFile(keyFile);
    await rm(keyFile);
    await expect(startServer(options(dir))).rejects.toThrow(/did not exist: restore that file/);
    await expect(stat(keyFile)).rejects.toMatchObject({ code: 'ENOENT' });
    await writeFile(keyFile, saved, { mode: 0o600 });
    expect(await readBack(dir)).toBe(connectionString);
  });

  it('refuses a key file others can read, or one that is not a key', async () => {
    const dir = path.join(root, 'loose');
    const loose = path.join(root, 'loose.key');
    await writeFile(loose, `${randomBytes(32).toString('base64')}\n`, { mode: 0o644 });
    await expect(startServer(options(dir, { secretsKeyPath: loose }))).rejects.toThrow(
      /readable by others.*chmod 600/,
    );
    const junk = path.join(root, 'junk.key');
    await writeFile(junk, 'not a key\n', { mode: 0o600 });
    await expect(startServer(options(dir, { secretsKeyPath: junk }))).rejects.toThrow(
      /not a 32-byte key/,
    );
  });

  it('rotateSecretsKey re-seals every secret with a new key; the old key no longer opens them', async () => {
    const dir = path.join(root, 'rotate');
    await seed(dir);
    const keyFile = path.join(dir, 'secrets.key');
    const oldKey = await readFile(keyFile, 'utf8');
    expect(await readBack(dir, { rotateSecretsKey: true })).toBe(connectionString);
    const newKey = await readFile(keyFile, 'utf8');
    expect(newKey).not.toBe(oldKey);
    expect(await mode(keyFile)).toBe('600');
    await expect(stat(`${keyFile}.next`)).rejects.toMatchObject({ code: 'ENOENT' });
    expect(await rawDatabase(dir)).not.toContain(accountKey);
    expect(await readBack(dir)).toBe(connectionString);

    const old = path.join(root, 'old.key');
    await writeFile(old, oldKey, { mode: 0o600 });
    await expect(startServer(options(dir, { secretsKeyPath: old }))).rejects.toThrow(
      /does not open the secrets/,
    );
  });

  it('a rotation cut short (FILE.next left behind) is finished by the next start', async () => {
    const dir = path.join(root, 'cut-short');
    await seed(dir);
    const keyFile = path.join(dir, 'secrets.key');
    // As --rotate-secrets-key leaves it when killed right after writing the new key.
    const next = `${randomBytes(32).toString('base64')}\n`;
    await writeFile(`${keyFile}.next`, next, { mode: 0o600 });
    expect(await readBack(dir)).toBe(connectionString);
    expect(await readFile(keyFile, 'utf8')).toBe(next);
    await expect(stat(`${keyFile}.next`)).rejects.toMatchObject({ code: 'ENOENT' });
    expect(await readBack(dir)).toBe(connectionString);
  });
});
