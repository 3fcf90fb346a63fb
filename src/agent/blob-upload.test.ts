/**
 * The blob uploader against a real Azurite, with SAS tokens minted as the server mints them
 * (create + write on one blob, no account key in the uploader).
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { appendFile, mkdtemp, readFile, readdir, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import {
  BlobSASPermissions,
  BlobServiceClient,
  generateBlobSASQueryParameters,
  StorageSharedKeyCredential,
  type ContainerClient,
} from '@azure/storage-blob';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import {
  AZURITE_ACCOUNT_KEY,
  AZURITE_ACCOUNT_NAME,
  startAzurite,
  type Azurite,
} from '../blob/azurite.js';
import { createJsonLineLog } from './agent-log.js';
import { startBlobUpload, type BlobUpload, type BlobUploadOptions } from './blob-upload.js';
import { reserveOwnPorts } from './own-ports.js';

const CONTAINER = 'network-watcher-logs';

let dir: string;
let azurite: Azurite;
let container: ContainerClient;
let logLines: string[];

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'wirewatch-blob-upload-'));
  azurite = await startAzurite({ dataDir: path.join(dir, 'azurite') });
  container = BlobServiceClient.fromConnectionString(azurite.connectionString, {
    retryOptions: { maxTries: 1 },
  }).getContainerClient(CONTAINER);
  await container.create();
});
afterAll(async () => {
  try {
    await azurite?.close();
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
beforeEach(() => {
  logLines = [];
});

/** A SAS for one blob, as the server mints it. */
function mintSas(blobName: string, options: { permissions?: string; expiresOn?: Date } = {}) {
  return generateBlobSASQueryParameters(
    {
      containerName: CONTAINER,
      blobName,
      permissions: BlobSASPermissions.parse(options.permissions ?? 'cw'),
      startsOn: new Date(Date.now() - 60_000),
      expiresOn: options.expiresOn ?? new Date(Date.now() + 3600_000),
    },
    new StorageSharedKeyCredential(AZURITE_ACCOUNT_NAME, AZURITE_ACCOUNT_KEY),
  ).toString();
}

function target(options: { permissions?: string; expiresOn?: Date } = {}) {
  const name = `subscriptions/${randomUUID()}/packetcapture_${randomBytes(3).toString('hex')}.cap`;
  return {
    name,
    url: `${container.url}/${name}`,
    sas: mintSas(name, options),
  };
}

async function localFile(content: Buffer = Buffer.alloc(0)): Promise<string> {
  const file = path.join(dir, `${randomUUID()}.cap`);
  await writeFile(file, content);
  return file;
}

function upload(
  file: string,
  t: { url: string; sas: string },
  overrides: Partial<BlobUploadOptions> = {},
): BlobUpload {
  return startBlobUpload({
    file,
    url: t.url,
    sas: t.sas,
    expiresAt: new Date(Date.now() + 3600_000),
    growing: true,
    pollIntervalMs: 50,
    blockSize: 1000,
    backoffMinMs: 50,
    backoffMaxMs: 300,
    log: createJsonLineLog((line) => logLines.push(line), { minLevel: 'debug' }),
    ...overrides,
  });
}

async function until(check: () => boolean | Promise<boolean>, timeoutMs = 15_000) {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 20));
  }
}

const download = (name: string) => container.getBlockBlobClient(name).downloadToBuffer();

describe('BlobUpload', () => {
  it('follows a growing file and commits exactly the final file after it was cut back', async () => {
    const t = target();
    const file = await localFile(randomBytes(24));
    const up = upload(file, t);
    for (let i = 0; i < 5; i++) {
      await appendFile(file, randomBytes(700));
      await new Promise((r) => setTimeout(r, 80));
    }
    const size = 24 + 5 * 700;
    await until(() => up.stagedBytes === size);
    // The capture engine cuts the end off (to the last whole packet): inside an already staged
    // block, so that block must be staged again, shorter, and the ones after it dropped.
    const final = 2345;
    await truncate(file, final);
    up.finish();
    expect(await up.outcome).toEqual({ state: 'Completed', url: t.url, size: final });
    const blob = await download(t.name);
    expect(blob.length).toBe(final);
    expect(blob.equals(await readFile(file))).toBe(true);
    // The local file is untouched: what happens to it is the caller's business.
    expect((await readFile(file)).length).toBe(final);
    // The SAS never reaches the log.
    expect(logLines.join('')).not.toContain('sig=');
  });

  it('uploads a finished file in blocks, and checks the length when the SAS may read', async () => {
    const t = target({ permissions: 'rcw' });
    const content = randomBytes(10_500);
    const file = await localFile(content);
    const up = upload(file, t, { growing: false, blockSize: 4096 });
    expect(await up.outcome).toEqual({ state: 'Completed', url: t.url, size: content.length });
    expect((await download(t.name)).equals(content)).toBe(true);
    const { committedBlocks = [] } = await container
      .getBlockBlobClient(t.name)
      .getBlockList('committed');
    expect(committedBlocks.map((b) => b.size)).toEqual([4096, 4096, 2308]);
  });

  it('makes its connections from the own-port pool when given the agent of the pool', async () => {
    const ports = await reserveOwnPorts();
    const range = ports.range!;
    const agent = ports.httpAgent(false, { keepAlive: true, maxSockets: 2 });
    try {
      const t = target();
      const content = randomBytes(10_000);
      const up = upload(await localFile(content), t, { growing: false, blockSize: 2048, agent });
      expect(await up.outcome).toEqual({ state: 'Completed', url: t.url, size: content.length });
      expect((await download(t.name)).equals(content)).toBe(true);
      // The kept-alive connections are the ones the SDK used: all bound to a port of the pool.
      const used = Object.values(agent.freeSockets)
        .flat()
        .map((s) => s?.localPort);
      expect(used.length).toBeGreaterThan(0);
      for (const port of used) {
        expect(port).toBeGreaterThanOrEqual(range.first);
        expect(port).toBeLessThanOrEqual(range.last);
      }
    } finally {
      agent.destroy();
    }
  });

  it('uploads an empty file as an empty blob', async () => {
    const t = target();
    const up = upload(await localFile(), t, { growing: false });
    expect(await up.outcome).toEqual({ state: 'Completed', url: t.url, size: 0 });
    expect((await download(t.name)).length).toBe(0);
  });

  it('rides out a storage outage: nothing is lost, the upload completes when storage returns', async () => {
    const t = target();
    const file = await localFile(randomBytes(3000));
    const up = upload(file, t);
    await until(() => up.stagedBytes === 3000);
    await azurite.stop();
    try {
      await appendFile(file, randomBytes(2500));
      await new Promise((r) => setTimeout(r, 600));
      up.finish();
      await new Promise((r) => setTimeout(r, 400));
      expect(up.stagedBytes).toBe(3000);
    } finally {
      await azurite.start();
    }
    const outcome = await up.outcome;
    expect(outcome).toEqual({ state: 'Completed', url: t.url, size: 5500 });
    expect((await download(t.name)).equals(await readFile(file))).toBe(true);
    expect(logLines.some((l) => l.includes('blob storage unavailable; retrying'))).toBe(true);
  });

  it('stages again what the capture engine rewrote: the blob is the final file, not the bytes first staged', async () => {
    const t = target();
    const first = randomBytes(5000);
    const file = await localFile(first);
    const up = upload(file, t);
    await until(() => up.stagedBytes === 5000);
    // The repair closed up a record left out at 1000: the bytes from there on moved down.
    const final = Buffer.concat([first.subarray(0, 1000), first.subarray(1400)]);
    await writeFile(file, final);
    up.finish(1000);
    expect(await up.outcome).toEqual({ state: 'Completed', url: t.url, size: 4600 });
    expect((await download(t.name)).equals(final)).toBe(true);
  });

  it('stages everything again when the service lost the staged blocks', async () => {
    const t = target();
    const file = await localFile(randomBytes(4200));
    const up = upload(file, t);
    await until(() => up.stagedBytes === 4200);
    // Azurite restarted with an empty store: the uncommitted blocks are gone.
    await azurite.stop();
    try {
      const store = path.join(dir, 'azurite');
      for (const name of await readdir(store)) {
        await rm(path.join(store, name), { recursive: true, force: true });
      }
    } finally {
      await azurite.start();
    }
    await container.createIfNotExists();
    up.finish();
    expect(await up.outcome).toEqual({ state: 'Completed', url: t.url, size: 4200 });
    expect((await download(t.name)).equals(await readFile(file))).toBe(true);
    expect(logLines.some((l) => l.includes('staged blocks lost'))).toBe(true);
  });

  it('gives up with StorageFailed when storage refuses the SAS (HTTP 403)', async () => {
    // Expired for the storage service, though the agent was told it was good for an hour.
    const t = target({ expiresOn: new Date(Date.now() - 1000) });
    const file = await localFile(randomBytes(2000));
    const up = upload(file, t, { growing: false });
    const outcome = await up.outcome;
    expect(outcome).toMatchObject({
      state: 'Failed',
      error: { code: 'StorageFailed', message: expect.stringMatching(/HTTP 403/) },
    });
    expect(JSON.stringify(outcome)).not.toContain('sig=');
    expect((await readFile(file)).length).toBe(2000);
  });

  it('gives up with StorageFailed once its SAS has expired', async () => {
    const t = target();
    const up = upload(await localFile(randomBytes(100)), t, {
      growing: false,
      expiresAt: new Date(Date.now() - 1),
    });
    expect(await up.outcome).toMatchObject({
      state: 'Failed',
      error: { code: 'StorageFailed', message: expect.stringMatching(/SAS expired/) },
    });
  });

  it('fails with StorageFailed when the file cannot be read', async () => {
    const up = upload(path.join(dir, 'missing.cap'), target(), { growing: false });
    expect(await up.outcome).toMatchObject({
      state: 'Failed',
      error: { code: 'StorageFailed', message: expect.stringMatching(/cannot read/) },
    });
  });

  it('close() abandons it (to be done again later); safe twice', async () => {
    const t = target();
    const up = upload(await localFile(randomBytes(500)), t);
    await until(() => up.stagedBytes === 500);
    await up.close();
    await up.close();
    expect(await up.outcome).toEqual({ state: 'Abandoned' });
    await expect(download(t.name)).rejects.toThrow();
  });
});
