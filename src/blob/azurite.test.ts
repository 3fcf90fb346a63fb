import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { BlobServiceClient } from '@azure/storage-blob';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { startAzurite, type Azurite } from './azurite.js';

describe('startAzurite', () => {
  let dir: string;
  let azurite: Azurite | undefined;

  beforeEach(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'wirewatch-azurite-'));
  });
  afterEach(async () => {
    try {
      await azurite?.close();
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('serves blobs, and keeps them across a stop and a start on the same port', async () => {
    azurite = await startAzurite({ dataDir: path.join(dir, 'azurite') });
    expect(azurite.port).toBeGreaterThan(0);
    expect(azurite.blobEndpoint).toBe(`http://127.0.0.1:${azurite.port}/devstoreaccount1`);
    expect(azurite.connectionString).toContain(`BlobEndpoint=${azurite.blobEndpoint};`);

    const service = BlobServiceClient.fromConnectionString(azurite.connectionString);
    const container = service.getContainerClient('captures');
    await container.create();
    const content = Buffer.from('a blob that outlives its server\n');
    await container.getBlockBlobClient('a/b.cap').upload(content, content.length);

    const port = azurite.port;
    await azurite.stop();
    await azurite.stop(); // safe twice
    expect(azurite.running).toBe(false);
    // One try: the SDK's own retries would wait for a server that is not coming back.
    const once = BlobServiceClient.fromConnectionString(azurite.connectionString, {
      retryOptions: { maxTries: 1 },
    });
    await expect(
      once.getContainerClient('captures').getBlockBlobClient('a/b.cap').downloadToBuffer(),
    ).rejects.toThrow(/ECONNREFUSED/);

    await azurite.start();
    expect(azurite.port).toBe(port);
    expect(await container.getBlockBlobClient('a/b.cap').downloadToBuffer()).toEqual(content);

    await azurite.close();
    await azurite.close();
    await expect(azurite.start()).rejects.toThrow(/closed/);
  });

  it('rejects with its output when it cannot listen', async () => {
    azurite = await startAzurite({ dataDir: path.join(dir, 'one') });
    await expect(
      startAzurite({ dataDir: path.join(dir, 'two'), port: azurite.port }),
    ).rejects.toThrow(/Azurite exited .*before it listened: .*(EADDRINUSE|in use)/s);
  });
});
