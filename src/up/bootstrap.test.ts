import { describe, expect, it } from 'vitest';
import { silentLog } from '../agent/agent-log.js';
import {
  ensureStorageAccount,
  ensureSubscription,
  ensureWatcher,
  type ApiAnswer,
  type ApiCall,
} from './bootstrap.js';

/** An API that answers from a table and records what it was asked. */
function fakeApi(answers: Record<string, ApiAnswer>): { api: ApiCall; calls: string[] } {
  const calls: string[] = [];
  const api: ApiCall = (method, pathAndQuery) => {
    calls.push(`${method} ${pathAndQuery}`);
    const answer = answers[`${method} ${pathAndQuery}`];
    return Promise.resolve(answer ?? { status: 404, body: undefined });
  };
  return { api, calls };
}

const SAVED = '11111111-1111-1111-1111-11111111111A';
const NAMED = '22222222-2222-2222-2222-222222222222';
const list = (value: { subscriptionId: string; displayName: string }[]): ApiAnswer => ({
  status: 200,
  body: { value },
});

describe('ensureSubscription', () => {
  it('keeps the subscription of up.json while the server has it', async () => {
    const { api, calls } = fakeApi({
      'GET /api/v1/subscriptions': list([
        { subscriptionId: NAMED, displayName: 'default' },
        { subscriptionId: SAVED, displayName: 'other' },
      ]),
    });
    await expect(ensureSubscription(api, SAVED.toLowerCase(), silentLog)).resolves.toBe(
      SAVED.toLowerCase(),
    );
    expect(calls).toEqual(['GET /api/v1/subscriptions']);
  });

  it('else takes the one named default, else creates it', async () => {
    const named = fakeApi({
      'GET /api/v1/subscriptions': list([{ subscriptionId: NAMED, displayName: 'default' }]),
    });
    await expect(ensureSubscription(named.api, SAVED, silentLog)).resolves.toBe(NAMED);

    const empty = fakeApi({
      'GET /api/v1/subscriptions': list([]),
      'POST /api/v1/subscriptions': { status: 201, body: { subscriptionId: SAVED } },
    });
    await expect(ensureSubscription(empty.api, undefined, silentLog)).resolves.toBe(
      SAVED.toLowerCase(),
    );
    expect(empty.calls).toEqual(['GET /api/v1/subscriptions', 'POST /api/v1/subscriptions']);
  });

  it('names the step and the server error when the server refuses', async () => {
    const { api } = fakeApi({
      'GET /api/v1/subscriptions': {
        status: 403,
        body: { error: { code: 'AuthorizationFailed', message: 'no' } },
      },
    });
    await expect(ensureSubscription(api, undefined, silentLog)).rejects.toThrow(
      'listing subscriptions: HTTP 403 AuthorizationFailed: no',
    );
  });
});

describe('ensureWatcher and ensureStorageAccount: keep what exists, else upsert', () => {
  const sub = SAVED.toLowerCase();
  const watcher = `/subscriptions/${sub}/resourceGroups/default/providers/Microsoft.Network/networkWatchers/local?api-version=2025-05-01`;
  const accounts = `/api/v1/subscriptions/${sub}/storageAccounts`;
  const endpoint = 'http://127.0.0.1:10000/devstoreaccount1';
  const account = (blobEndpoint: string) => ({
    id: '/subscriptions/s/resourceGroups/default/providers/Microsoft.Storage/storageAccounts/local',
    name: 'local',
    resourceGroup: 'Default',
    blobEndpoint,
  });

  it('an existing watcher is not written; a missing one is PUT', async () => {
    const there = fakeApi({ [`GET ${watcher}`]: { status: 200, body: {} } });
    await ensureWatcher(there.api, sub);
    expect(there.calls).toEqual([`GET ${watcher}`]);
    const missing = fakeApi({ [`PUT ${watcher}`]: { status: 201, body: {} } });
    await ensureWatcher(missing.api, sub);
    expect(missing.calls).toEqual([`GET ${watcher}`, `PUT ${watcher}`]);
  });

  it('the account of this endpoint is kept; one that moved is registered again (200)', async () => {
    const there = fakeApi({
      [`GET ${accounts}`]: { status: 200, body: { value: [account(endpoint)] } },
    });
    await expect(ensureStorageAccount(there.api, sub, 'cs', endpoint)).resolves.toBe(
      account(endpoint).id,
    );
    expect(there.calls).toEqual([`GET ${accounts}`]);
    const moved = fakeApi({
      [`GET ${accounts}`]: { status: 200, body: { value: [account('http://old')] } },
      [`POST ${accounts}`]: { status: 200, body: { id: 'updated-id' } },
    });
    await expect(ensureStorageAccount(moved.api, sub, 'cs', endpoint)).resolves.toBe('updated-id');
  });

  it('names the step when the upsert is refused', async () => {
    const { api } = fakeApi({
      [`PUT ${watcher}`]: {
        status: 400,
        body: { error: { code: 'NetworkWatcherCountLimitReached', message: 'one per location' } },
      },
    });
    await expect(ensureWatcher(api, sub)).rejects.toThrow(
      'creating network watcher local: HTTP 400 NetworkWatcherCountLimitReached: one per location',
    );
  });
});
