import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createControlFixture, type ControlFixture } from '../../test/support/control-context.js';
import { subA } from '../../test/support/store-conformance/fixtures.js';
import { ApiTokens, installAdminToken } from './api-tokens.js';
import { EnrollmentTokens } from './enrollment-tokens.js';
import { Subscriptions } from './subscriptions.js';
import { hashToken } from './tokens.js';

const caller = { actor: 'admin:a1', sourceIp: '192.0.2.10' };
const source = { name: 'WIREWATCH_ADMIN_TOKEN', tokenPath: '/data/admin.token' };

describe('tenancy: subscriptions, API tokens, enrollment tokens', () => {
  let f: ControlFixture;
  beforeEach(async () => {
    f = await createControlFixture();
  });
  afterEach(async () => {
    await f.close();
  });

  const actions = async (subscriptionId: string) =>
    (await f.store.listAudit(subscriptionId, { limit: 20 })).items.map((a) => a.action);

  it('a subscription is created with a new id and audited in its own log', async () => {
    const subscriptions = new Subscriptions(f.ctx);
    const s = await subscriptions.create('team', caller);
    expect(await subscriptions.get(s.id)).toEqual(s);
    expect((await subscriptions.list()).map((x) => x.displayName)).toContain('team');
    expect(await actions(s.id)).toEqual(['subscription.create']);
  });

  it('an API token is stored as its hash; its revocation reaches the listeners and is audited', async () => {
    const tokens = new ApiTokens(f.ctx);
    const { record, token } = await tokens.create(subA, 'Reader', caller);
    expect(token).toMatch(/^wwt_/);
    expect(record.hash).toBe(hashToken(token));
    expect(await tokens.findByHash(hashToken(token))).toMatchObject({
      id: record.id,
      revokedAt: null,
    });
    const heard: string[] = [];
    tokens.onRevoked((tokenId) => heard.push(tokenId));
    await tokens.revoke(subA, record.id, caller);
    expect(heard).toEqual([record.id]);
    expect((await tokens.findByHash(record.hash))?.revokedAt).not.toBeNull();
    expect(await actions(subA)).toContain('token.revoke');
    await expect(tokens.revoke(subA, 'no-such-token', caller)).rejects.toMatchObject({
      code: 'ResourceNotFound',
      target: 'tokenId',
    });
  });

  it('enrollment tokens: a takeover token lives an hour and enrolls once; others 24 h and 1,000', async () => {
    const tokens = new EnrollmentTokens(f.ctx);
    const plain = await tokens.create(subA, {}, caller);
    const takeover = await tokens.create(
      subA,
      { maxUses: 50, takeover: { resourceGroup: 'rg', name: 'vm1' } },
      caller,
    );
    const hours = (r: typeof plain.record) =>
      (r.expiresAt.getTime() - r.createdAt.getTime()) / 3600_000;
    expect([hours(plain.record), plain.record.maxUses]).toEqual([24, 1000]);
    expect([hours(takeover.record), takeover.record.maxUses]).toEqual([1, 1]);
    expect(takeover.record.hash).toBe(hashToken(takeover.token));
    expect((await tokens.list(subA)).map((t) => t.id)).toEqual([
      plain.record.id,
      takeover.record.id,
    ]);
    await tokens.revoke(subA, plain.record.id, caller);
    await expect(tokens.revoke(subA, 'no-such-token', caller)).rejects.toMatchObject({
      code: 'ResourceNotFound',
    });
    const audit = (await f.store.listAudit(subA, { limit: 20 })).items;
    expect(audit.find((a) => a.resourceId.endsWith(takeover.record.id))?.detail).toMatchObject({
      maxUses: 1,
      takeover: expect.stringMatching(/\/virtualMachines\/vm1$/),
    });
    expect(audit.map((a) => a.action)).toContain('enrollmentToken.revoke');
  });

  it('the admin token: at least 16 characters, never an API token, never a retired one; the others retired', async () => {
    const first = 'wwadmin_first-token-0123456789';
    const second = 'wwadmin_second-token-0123456789';
    await expect(installAdminToken(f.store, 'short', source)).rejects.toMatchObject({
      code: 'InvalidRequestContent',
    });
    await installAdminToken(f.store, first, source);
    await installAdminToken(f.store, second, source);
    expect((await f.store.findTokenByHash(hashToken(first)))?.revokedAt).not.toBeNull();
    expect((await f.store.findTokenByHash(hashToken(second)))?.revokedAt).toBeNull();
    await expect(installAdminToken(f.store, first, source)).rejects.toThrow(/retired/);
    const api = await new ApiTokens(f.ctx).create(subA, 'Owner', caller);
    await expect(installAdminToken(f.store, api.token, source)).rejects.toThrow(
      /already an API token/,
    );
  });
});
