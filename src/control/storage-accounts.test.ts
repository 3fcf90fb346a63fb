import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createControlFixture, type ControlFixture } from '../../test/support/control-context.js';
import { subA, subB, subscription } from '../../test/support/store-conformance/fixtures.js';
import {
  findStorageAccount,
  StorageAccounts,
  type StorageAccountProbe,
} from './storage-accounts.js';

const caller = { actor: 'token:t1', sourceIp: '192.0.2.10' };
const ENDPOINT = 'http://127.0.0.1:10000/devstoreaccount1';

describe('StorageAccounts', () => {
  let f: ControlFixture;
  let accounts: StorageAccounts;
  const probed: string[] = [];
  const probe: StorageAccountProbe = (connectionString) => {
    probed.push(connectionString);
    return Promise.resolve({ accountName: 'devstoreaccount1', blobEndpoint: ENDPOINT });
  };
  beforeEach(async () => {
    f = await createControlFixture();
    probed.length = 0;
    accounts = new StorageAccounts(f.ctx, probe);
  });
  afterEach(async () => {
    await f.close();
  });

  const put = (
    name: string,
    connectionString = 'UseDevelopmentStorage=true',
    resourceGroup = 'rg',
  ) => accounts.put({ subscriptionId: subA, resourceGroup, name, connectionString }, caller);

  it('upserts: 201 then 200, the name casing and createdAt kept, the secret replaced, audited without it', async () => {
    const first = await put('acct', 'AccountName=a;AccountKey=secret1');
    expect(first.created).toBe(true);
    f.advance(60_000);
    const again = await accounts.put(
      {
        subscriptionId: subA,
        resourceGroup: 'RG',
        name: 'acct',
        connectionString: 'AccountName=a;AccountKey=secret2',
      },
      caller,
    );
    expect(again.created).toBe(false);
    expect(again.record.resourceGroup).toBe('rg');
    expect(again.record.createdAt).toEqual(first.record.createdAt);
    expect(again.record.connectionString).toBe('AccountName=a;AccountKey=secret2');
    expect(probed).toEqual([
      'AccountName=a;AccountKey=secret1',
      'AccountName=a;AccountKey=secret2',
    ]);
    const audit = await f.store.listAudit(subA, { limit: 10 });
    expect(audit.items.map((a) => a.action).sort()).toEqual([
      'storageAccount.create',
      'storageAccount.update',
    ]);
    expect(JSON.stringify(audit.items)).not.toContain('secret');
  });

  it('refuses a bad name or resource group before probing the connection string', async () => {
    await expect(put('Not_Valid')).rejects.toMatchObject({
      code: 'InvalidResourceName',
      target: 'name',
    });
    await expect(put('acct', 'x', 'bad/rg')).rejects.toMatchObject({
      code: 'InvalidResourceName',
      target: 'resourceGroup',
    });
    expect(probed).toEqual([]);
  });

  it('get names the missing account; list filters by resource group; delete is audited once', async () => {
    await expect(accounts.get(subA, 'rg', 'nope')).rejects.toMatchObject({
      code: 'ResourceNotFound',
      target: 'accountName',
    });
    await put('acct1');
    await put('acct2', 'x', 'other');
    expect((await accounts.list(subA, 'RG')).map((a) => a.name)).toEqual(['acct1']);
    expect((await accounts.list(subA)).map((a) => a.name)).toEqual(['acct2', 'acct1']); // by group
    expect(await accounts.delete(subA, 'rg', 'ACCT1', caller)).toBe(true);
    expect(await accounts.delete(subA, 'rg', 'acct1', caller)).toBe(false);
    const actions = (await f.store.listAudit(subA, { limit: 10 })).items.map((a) => a.action);
    expect(actions.filter((a) => a === 'storageAccount.delete')).toHaveLength(1);
  });

  it("finds a capture's account only in the capture's own subscription", async () => {
    await put('acct');
    await f.store.createSubscription(subscription(subB));
    const ref = { subscriptionId: subA.toUpperCase(), resourceGroup: 'RG', name: 'ACCT' };
    expect((await findStorageAccount(f.ctx, subA, ref))?.name).toBe('acct');
    expect(await findStorageAccount(f.ctx, subB, ref)).toBeUndefined();
    expect(await findStorageAccount(f.ctx, subA, undefined)).toBeUndefined();
  });

  it('without blob support, registering is refused', async () => {
    const none = new StorageAccounts(f.ctx, undefined);
    await expect(
      none.put(
        { subscriptionId: subA, resourceGroup: 'rg', name: 'acct', connectionString: 'x' },
        caller,
      ),
    ).rejects.toMatchObject({ code: 'StorageAccountUnreachable', target: 'connectionString' });
  });
});
