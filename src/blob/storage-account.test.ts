/**
 * StorageAccountClient against a real Azurite: the container, blob URLs, sizes and downloads,
 * and above all the scope of the SAS an agent gets — one blob, create and write only, until its
 * expiry — and that the key shows up nowhere.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { inspect } from 'node:util';
import {
  BlobServiceClient,
  BlockBlobClient,
  ContainerClient,
  RestError,
  StorageSharedKeyCredential,
} from '@azure/storage-blob';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WirewatchError } from '../model/errors.js';
import { startAzurite, type Azurite } from './azurite.js';
import { CAPTURE_CONTAINER, captureBlobName } from './blob-names.js';
import { parseConnectionString } from './connection-string.js';
import { blobNameOfUrl, StorageAccountClient } from './storage-account.js';

let dir: string;
let azurite: Azurite;
let client: StorageAccountClient;
/** A client with the key, as the test's own eyes on the account. */
let admin: ContainerClient;
let key: string;

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'ww-blob-'));
  azurite = await startAzurite({ dataDir: dir });
  const account = parseConnectionString(azurite.connectionString);
  key = account.accountKey;
  admin = new BlobServiceClient(
    account.blobEndpoint,
    new StorageSharedKeyCredential(account.accountName, account.accountKey),
  ).getContainerClient(CAPTURE_CONTAINER);
  client = new StorageAccountClient(azurite.connectionString);
});

afterAll(async () => {
  await azurite?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

/** The HTTP status (and storage error code) an operation failed with. */
async function refusal(op: () => Promise<unknown>): Promise<{ status?: number; code?: string }> {
  try {
    await op();
  } catch (err) {
    expect(err).toBeInstanceOf(RestError);
    const e = err as RestError;
    return {
      status: e.statusCode,
      code: e.code ?? e.response?.headers.get('x-ms-error-code') ?? undefined,
    };
  }
  throw new Error('the operation succeeded');
}

async function text(stream: NodeJS.ReadableStream): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(Buffer.from(chunk as Buffer));
  return Buffer.concat(chunks).toString('utf8');
}

async function readWithKey(name: string): Promise<string> {
  return (await admin.getBlockBlobClient(name).downloadToBuffer()).toString('utf8');
}

function blobName(vm: string, ms = 0): string {
  return captureBlobName({
    subscriptionId: '00000000-0000-4000-8000-000000000001',
    resourceGroup: 'RG1',
    vmName: vm,
    createdAt: new Date(Date.UTC(2026, 2, 4, 5, 6, 7, ms)),
  });
}

describe('ensureContainer', () => {
  it('creates network-watcher-logs, private, and is idempotent', async () => {
    expect(await admin.exists()).toBe(false);
    await client.ensureContainer();
    expect(await admin.exists()).toBe(true);
    await client.ensureContainer();
    const policy = await admin.getAccessPolicy();
    expect(policy.blobPublicAccess).toBeUndefined();
  });

  it('an endpoint nobody listens on: StorageAccountUnreachable naming the endpoint', async () => {
    const probe = createServer();
    await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
    const port = (probe.address() as AddressInfo).port;
    await new Promise((resolve) => probe.close(resolve));
    const cs = azurite.connectionString.replace(/127\.0\.0\.1:\d+/, `127.0.0.1:${port}`);
    const err = await new StorageAccountClient(cs).ensureContainer().then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(WirewatchError);
    const w = err as WirewatchError;
    expect(w.code).toBe('StorageAccountUnreachable');
    expect(w.status).toBe(400);
    expect(w.message).toContain(`http://127.0.0.1:${port}/devstoreaccount1`);
    expect(w.message).toMatch(/ECONNREFUSED|network error/);
    expect(w.message).not.toContain(key);
  });

  it('an HTTP server that is not a blob service: StorageAccountUnreachable with its status', async () => {
    const other: Server = createServer((_req, res) => {
      res.writeHead(404, { 'content-type': 'text/html' }).end('<html>nope</html>');
    });
    await new Promise<void>((resolve) => other.listen(0, '127.0.0.1', resolve));
    try {
      const port = (other.address() as AddressInfo).port;
      const cs = azurite.connectionString.replace(/127\.0\.0\.1:\d+/, `127.0.0.1:${port}`);
      const err = (await new StorageAccountClient(cs).ensureContainer().then(
        () => undefined,
        (e: unknown) => e,
      )) as WirewatchError;
      expect(err.code).toBe('StorageAccountUnreachable');
      expect(err.message).toMatch(/HTTP 404/);
    } finally {
      await new Promise((resolve) => other.close(resolve));
    }
  });

  it('a wrong key: StorageAccountAccessDenied, and the message holds neither key', async () => {
    const wrongKey = Buffer.from('w'.repeat(64)).toString('base64');
    const cs = azurite.connectionString.replace(key, wrongKey);
    const err = (await new StorageAccountClient(cs).ensureContainer().then(
      () => undefined,
      (e: unknown) => e,
    )) as WirewatchError;
    expect(err).toBeInstanceOf(WirewatchError);
    expect(err.code).toBe('StorageAccountAccessDenied');
    expect(err.message).toMatch(/HTTP 403/);
    expect(err.message).not.toContain(wrongKey);
    expect(err.message).not.toContain(key);
  });
});

describe('blob URLs', () => {
  it('blobUrl is the endpoint, the container and the name, with no query', () => {
    const name = blobName('vm1');
    expect(client.blobUrl(name)).toBe(`${azurite.blobEndpoint}/${CAPTURE_CONTAINER}/${name}`);
    expect(client.blobEndpoint).toBe(azurite.blobEndpoint);
    expect(client.accountName).toBe('devstoreaccount1');
  });

  it('blobNameOfUrl reverses blobUrl, SAS or not, and only for this account', () => {
    const name = blobName('vm1');
    const url = client.blobUrl(name);
    expect(client.blobNameOfUrl(url)).toBe(name);
    expect(client.blobNameOfUrl(`${url}?sv=x&sig=y`)).toBe(name);
    expect(blobNameOfUrl(`${azurite.blobEndpoint}/`, url)).toBe(name);
    expect(client.blobNameOfUrl(url.replace(/:\d+\//, ':1/'))).toBeUndefined();
    expect(client.blobNameOfUrl(url.replace(CAPTURE_CONTAINER, 'other'))).toBeUndefined();
    expect(client.blobNameOfUrl(`${azurite.blobEndpoint}/${CAPTURE_CONTAINER}/`)).toBeUndefined();
    expect(client.blobNameOfUrl('not a url')).toBeUndefined();
    expect(client.blobNameOfUrl(`${azurite.blobEndpoint}/${CAPTURE_CONTAINER}/a%20b/c.cap`)).toBe(
      'a b/c.cap',
    );
  });

  it('blobNameOfUrl refuses names that storage would resolve elsewhere; so do reads and SAS', async () => {
    const prefix = `${azurite.blobEndpoint}/${CAPTURE_CONTAINER}`;
    // Dot segments the URL parser resolves itself leave a plain name, or leave the container.
    expect(client.blobNameOfUrl(`${prefix}/a/.%2E/x.cap`)).toBe('x.cap');
    for (const rest of [
      'a/%2e%2e/%2e%2e/other/x.cap',
      'a/..%2F..%2Fother%2Fx.cap',
      'a%2F..%2F..%2Fx.cap',
      'a//x.cap',
      'a/b%5C..%5Cx.cap',
    ]) {
      expect(client.blobNameOfUrl(`${prefix}/${rest}`), rest).toBeUndefined();
    }
    for (const name of ['a/../x.cap', './x.cap', 'a//x.cap', '/x.cap', '..']) {
      expect(() => client.blobUrl(name), name).toThrow(RangeError);
      expect(() => client.mintWriteSas(name, new Date(Date.now() + 60_000)), name).toThrow(
        RangeError,
      );
      await expect(client.blobSize(name), name).rejects.toThrow(RangeError);
    }
  });
});

describe('the write SAS', () => {
  const x = blobName('vm-x');
  const y = blobName('vm-x', 1); // same folder as x
  const z = blobName('vm-z'); // another VM's folder
  let sas: string;
  let expiresOn: Date;
  const withSas = (name: string, token = sas) =>
    new BlockBlobClient(`${client.blobUrl(name)}?${token}`);

  beforeAll(async () => {
    await client.ensureContainer();
    expiresOn = new Date(Date.now() + 3600_000);
    sas = client.mintWriteSas(x, expiresOn);
  });

  it('is a blob-scoped service SAS for create and write, over https and http, valid from a few minutes ago', () => {
    expect(sas.startsWith('?')).toBe(false);
    const q = new URLSearchParams(sas);
    expect(q.get('sr')).toBe('b');
    expect(q.get('sp')).toBe('cw');
    expect(q.get('spr')).toBe('https,http');
    expect(q.get('sig')).toBeTruthy();
    const start = new Date(q.get('st')!).getTime();
    expect(Date.now() - start).toBeGreaterThanOrEqual(60_000);
    expect(Date.now() - start).toBeLessThanOrEqual(10 * 60_000);
    expect(Math.abs(new Date(q.get('se')!).getTime() - expiresOn.getTime())).toBeLessThan(1000);
    expect([...q.keys()].sort()).toEqual(['se', 'sig', 'sp', 'spr', 'sr', 'st', 'sv']);
  });

  it('holds no key', () => {
    const decoded = decodeURIComponent(sas);
    expect(decoded).not.toContain(key);
    expect(decoded).not.toContain(key.slice(0, 16));
    expect(decoded).not.toContain(Buffer.from(key, 'base64').toString('hex').slice(0, 16));
    expect(decoded.toLowerCase()).not.toContain('accountkey');
  });

  it('uploads its blob in one Put Blob', async () => {
    await withSas(x).upload('first', 5);
    expect(await readWithKey(x)).toBe('first');
  });

  it('uploads its blob in blocks (stageBlock, commitBlockList), overwriting', async () => {
    const b = withSas(x);
    const ids = ['block-0', 'block-1'].map((id) => Buffer.from(id).toString('base64'));
    await b.stageBlock(ids[0]!, 'hello ', 6);
    await b.stageBlock(ids[1]!, 'world', 5);
    await b.commitBlockList(ids);
    expect(await readWithKey(x)).toBe('hello world');
  });

  it('cannot read its own blob: download and properties are 403', async () => {
    expect((await refusal(() => withSas(x).download())).status).toBe(403);
    expect((await refusal(() => withSas(x).getProperties())).status).toBe(403);
    expect((await refusal(() => withSas(x).getBlockList('all'))).status).toBe(403);
  });

  it('cannot list the container: 403', async () => {
    const container = new ContainerClient(`${azurite.blobEndpoint}/${CAPTURE_CONTAINER}?${sas}`);
    const r = await refusal(async () => {
      for await (const item of container.listBlobsFlat()) void item;
    });
    expect(r.status).toBe(403);
  });

  it('cannot write another blob, in the same folder or outside it: 403', async () => {
    for (const other of [y, z, 'elsewhere.cap']) {
      expect((await refusal(() => withSas(other).upload('evil', 4))).status).toBe(403);
      const id = Buffer.from('b').toString('base64');
      expect((await refusal(() => withSas(other).stageBlock(id, 'evil', 4))).status).toBe(403);
      expect(await admin.getBlockBlobClient(other).exists()).toBe(false);
    }
    // The same blob name in another container.
    const elsewhere = new BlockBlobClient(`${azurite.blobEndpoint}/other-container/${x}?${sas}`);
    expect((await refusal(() => elsewhere.upload('evil', 4))).status).toBe(403);
  });

  it('cannot delete its blob: 403, and the blob is intact', async () => {
    const r = await refusal(() => withSas(x).delete());
    expect(r.status).toBe(403);
    expect(r.code).toBe('AuthorizationPermissionMismatch');
    expect(await readWithKey(x)).toBe('hello world');
  });

  it('cannot be widened: an edited permission or resource breaks the signature (403)', async () => {
    const read = sas.replace('sp=cw', 'sp=rcw');
    expect((await refusal(() => withSas(x, read).download())).status).toBe(403);
    const container = sas.replace('sr=b', 'sr=c');
    expect((await refusal(() => withSas(y, container).upload('evil', 4))).status).toBe(403);
  });

  it('stops working after expiresOn', async () => {
    const soon = new Date(Math.ceil((Date.now() + 2000) / 1000) * 1000);
    const token = client.mintWriteSas(z, soon);
    await withSas(z, token).upload('in time', 7);
    await new Promise((resolve) => setTimeout(resolve, soon.getTime() - Date.now() + 1500));
    const r = await refusal(() => withSas(z, token).upload('too late', 8));
    expect(r.status).toBe(403);
    // Azure says AuthenticationFailed, Azurite AuthorizationFailure.
    expect(r.code).toMatch(/^(AuthenticationFailed|AuthorizationFailure)$/);
    expect(await readWithKey(z)).toBe('in time');
  });
});

describe('blobSize and download', () => {
  const name = blobName('vm-d');

  beforeAll(async () => {
    await client.ensureContainer();
    await admin.getBlockBlobClient(name).upload('0123456789', 10);
  });

  it('blobSize: the committed length, undefined when absent or only staged', async () => {
    expect(await client.blobSize(name)).toBe(10);
    expect(await client.blobSize(blobName('nobody'))).toBeUndefined();
    const staged = blobName('vm-staged');
    await admin
      .getBlockBlobClient(staged)
      .stageBlock(Buffer.from('s').toString('base64'), 'abc', 3);
    expect(await client.blobSize(staged)).toBeUndefined();
  });

  it('an empty blob downloads empty, whole or with a range', async () => {
    const empty = blobName('vm-empty');
    await admin.getBlockBlobClient(empty).upload('', 0);
    for (const range of [undefined, { offset: 0 }, { offset: 0, count: 5 }]) {
      const d = await client.download(empty, range);
      expect([d.size, d.contentLength]).toEqual([0, 0]);
      expect(await text(d.stream)).toBe('');
    }
  });

  it('downloads the whole blob', async () => {
    const d = await client.download(name);
    expect([d.size, d.contentLength]).toEqual([10, 10]);
    expect(await text(d.stream)).toBe('0123456789');
  });

  it('downloads a range: offset and count, or offset to the end', async () => {
    const a = await client.download(name, { offset: 2, count: 3 });
    expect([a.size, a.contentLength]).toEqual([10, 3]);
    expect(await text(a.stream)).toBe('234');
    const b = await client.download(name, { offset: 7 });
    expect([b.size, b.contentLength]).toEqual([10, 3]);
    expect(await text(b.stream)).toBe('789');
    const c = await client.download(name, { offset: 8, count: 100 });
    expect([c.size, c.contentLength]).toEqual([10, 2]);
    expect(await text(c.stream)).toBe('89');
  });

  it('a missing blob is ResourceNotFound; a range past the end is InvalidRequestContent', async () => {
    await expect(client.download(blobName('nobody'))).rejects.toMatchObject({
      code: 'ResourceNotFound',
    });
    await expect(client.download(name, { offset: 10 })).rejects.toMatchObject({
      code: 'InvalidRequestContent',
      target: 'range',
    });
    await expect(client.download(name, { offset: 11 })).rejects.toMatchObject({
      code: 'InvalidRequestContent',
    });
    await expect(client.download(name, { offset: -1 })).rejects.toThrow(RangeError);
  });
});

describe('no key in sight', () => {
  it('JSON, inspect and string forms of the client show account and endpoint only', () => {
    for (const shown of [JSON.stringify(client), inspect(client, { depth: 10 }), String(client)]) {
      expect(shown).not.toContain(key);
      expect(shown).not.toContain(key.slice(0, 16));
    }
    expect(JSON.parse(JSON.stringify(client))).toEqual({
      accountName: 'devstoreaccount1',
      blobEndpoint: azurite.blobEndpoint,
    });
  });
});
