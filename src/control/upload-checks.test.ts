import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createControlFixture, type ControlFixture } from '../../test/support/control-context.js';
import { subA } from '../../test/support/store-conformance/fixtures.js';
import type { SessionRecord, StorageAccountRecord, VmRecord } from '../store/store.js';
import { BlobGrants } from './blob-grants.js';
import type { BlobWriter } from './control-context.js';
import { CaptureOperations } from './operations.js';
import { UploadChecks } from './upload-checks.js';

const ENDPOINT = 'http://127.0.0.1:10000/devstoreaccount1';
const BLOB = 'subscriptions/x/pc.cap';
const URL_ = `${ENDPOINT}/network-watcher-logs/${BLOB}`;

/**
 * Storage as the checks see it: the blobs it holds, and whether it answers at all (an outage
 * is the one fault a unit test cannot cause for real).
 */
class FakeStorage implements BlobWriter {
  readonly sizes = new Map<string, number>();
  down = false;
  blobUrl(name: string): string {
    return `${ENDPOINT}/network-watcher-logs/${name}`;
  }
  mintWriteSas(): string {
    return 'sig=x';
  }
  blobSize(name: string): Promise<number | undefined> {
    if (this.down) return Promise.reject(new Error('ECONNREFUSED'));
    return Promise.resolve(this.sizes.get(name));
  }
}

describe('UploadChecks', () => {
  let f: ControlFixture;
  let storage: FakeStorage;
  let checks: UploadChecks;
  let vm: VmRecord;
  let session: SessionRecord;

  beforeEach(async () => {
    f = await createControlFixture();
    storage = new FakeStorage();
    const account: StorageAccountRecord = {
      subscriptionId: subA,
      resourceGroup: 'rg',
      name: 'acct',
      accountName: 'devstoreaccount1',
      blobEndpoint: ENDPOINT,
      connectionString: 'UseDevelopmentStorage=true',
      createdAt: new Date(0),
    };
    await f.store.putStorageAccount(account);
    const memory = f.memory();
    const grants = new BlobGrants(f.ctx, {
      openStorageAccount: () => storage,
      uploadGraceMs: 3_600_000,
    });
    checks = new UploadChecks(f.ctx, {
      grants,
      operations: new CaptureOperations(f.ctx, memory, 60_000),
      backoff: { minMs: 1_000, maxMs: 4_000 },
    });
    vm = (await f.store.getVmById(f.vmId))!;
    session = await f.addSession({
      status: 'Stopped',
      stopReason: 'ManualIntervention',
      properties: {
        storageLocation: {
          storageId: `/subscriptions/${subA}/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/acct`,
          storagePath: URL_,
        },
      },
      upload: { state: 'Pending', blobs: [], error: null },
    });
    f.agents.connected.add(f.vmId);
  });
  afterEach(async () => {
    await f.close();
  });

  const completed = (size: number) => ({
    state: 'Completed' as const,
    blobs: [{ url: URL_, size }],
  });
  const uploadOf = async () => (await f.store.getSessionById(session.id))?.upload;

  it('records a Completed report only when storage holds the blob at that length', async () => {
    storage.sizes.set(BLOB, 100);
    expect(await checks.record(vm, session, completed(99))).toBe('recorded');
    expect(await uploadOf()).toMatchObject({
      state: 'Failed',
      error: {
        code: 'StorageFailed',
        message: `blob ${BLOB} holds 100 bytes, the agent uploaded 99`,
      },
    });
  });

  it('takes no blob the server did not mint for the session', async () => {
    const report = { state: 'Completed' as const, blobs: [{ url: `${URL_}.other`, size: 1 }] };
    expect(await checks.record(vm, session, report)).toBe('recorded');
    expect(await uploadOf()).toMatchObject({
      state: 'Failed',
      error: { message: "the agent reported a blob that is not this capture's" },
    });
  });

  it('defers while storage is down, retries with a backoff, then acknowledges', async () => {
    storage.down = true;
    expect(await checks.record(vm, session, completed(100))).toBe('deferred');
    expect(await uploadOf()).toMatchObject({ state: 'Pending' });
    // A report again before its turn waits without asking storage.
    expect(await checks.record(vm, session, completed(100))).toBe('deferred');
    storage.down = false;
    storage.sizes.set(BLOB, 100);
    expect(await checks.retry()).toBe(0);
    f.advance(1_000);
    expect(await checks.retry()).toBe(1);
    expect(await uploadOf()).toEqual({
      state: 'Completed',
      blobs: [{ url: URL_, size: 100 }],
      error: null,
    });
    expect(f.agents.sent.map((m) => m.message)).toEqual([{ type: 'ack', sessionId: session.id }]);
    expect(await checks.retry()).toBe(0);
  });

  it('never takes back a final outcome', async () => {
    expect(await checks.record(vm, session, { state: 'Failed', blobs: [] })).toBe('recorded');
    const failed = (await f.store.getSessionById(session.id))!;
    expect(failed.upload).toMatchObject({ state: 'Failed', error: { code: 'StorageFailed' } });
    storage.sizes.set(BLOB, 100);
    expect(await checks.record(vm, failed, completed(100))).toBe('recorded');
    expect(await uploadOf()).toMatchObject({ state: 'Failed' });
  });
});
