import { describe, expect, it } from 'vitest';
import { silentLog } from '../agent/agent-log.js';
import { ensureSubscription, type ApiAnswer, type ApiCall } from './bootstrap.js';

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
