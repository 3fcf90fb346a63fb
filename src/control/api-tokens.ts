import { randomUUID } from 'node:crypto';
import { WirewatchError } from '../model/errors.js';
import type { Role, TokenRecord, TokenStore } from '../store/store.js';
import { appendAudit } from './audit.js';
import type { Caller, ControlContext } from './control-context.js';
import { generateToken, hashToken } from './tokens.js';

/**
 * API tokens of a subscription: created by its Owner (the token text shown once, only its hash
 * kept), revoked, found by hash. Their times are the wall clock's. Whoever caches tokens or
 * holds connections of a token (the server's authenticator, its open live streams) listens to
 * revocations, which reach it before the revocation is audited and answered.
 */
export class ApiTokens {
  readonly #ctx: ControlContext;
  readonly #revokedListeners: ((tokenId: string) => void)[] = [];

  constructor(ctx: ControlContext) {
    this.#ctx = ctx;
  }

  /** A new token of the subscription with the role, audited; `token` is its only copy. */
  async create(
    subscriptionId: string,
    role: Role,
    caller: Caller,
  ): Promise<{ record: TokenRecord; token: string }> {
    const token = generateToken('api');
    const record: TokenRecord = {
      id: randomUUID(),
      subscriptionId,
      role,
      hash: hashToken(token),
      createdAt: new Date(),
      revokedAt: null,
    };
    await this.#ctx.store.createToken(record);
    await appendAudit(this.#ctx, caller, {
      subscriptionId,
      action: 'token.create',
      resourceId: `/subscriptions/${subscriptionId}/tokens/${record.id}`,
      detail: { role },
    });
    return { record, token };
  }

  /** Revokes the subscription's token, tells the listeners, audits; ResourceNotFound if none. */
  async revoke(subscriptionId: string, tokenId: string, caller: Caller): Promise<void> {
    if (!(await this.#ctx.store.revokeToken(subscriptionId, tokenId, new Date()))) {
      throw new WirewatchError('ResourceNotFound', `Token '${tokenId}' was not found`, {
        target: 'tokenId',
      });
    }
    for (const listener of this.#revokedListeners) listener(tokenId);
    await appendAudit(this.#ctx, caller, {
      subscriptionId,
      action: 'token.revoke',
      resourceId: `/subscriptions/${subscriptionId}/tokens/${tokenId}`,
      detail: {},
    });
  }

  /** Called with the id of every token revoked from now on, at once. */
  onRevoked(listener: (tokenId: string) => void): void {
    this.#revokedListeners.push(listener);
  }

  /** The token with this hash, revoked or not. */
  findByHash(hash: string): Promise<TokenRecord | undefined> {
    return this.#ctx.store.findTokenByHash(hash);
  }
}

/**
 * Makes `token` the one admin token (server start, before the control plane runs): stores its
 * hash unless there, refuses one that is an API token or was retired, and revokes every other
 * admin token. `source` names where the token came from, for the messages.
 */
export async function installAdminToken(
  store: TokenStore,
  token: string,
  source: { readonly name: string; readonly tokenPath: string },
): Promise<void> {
  if (token.length < 16) {
    throw new WirewatchError(
      'InvalidRequestContent',
      'WIREWATCH_ADMIN_TOKEN must be at least 16 characters',
      { target: 'WIREWATCH_ADMIN_TOKEN' },
    );
  }
  const hash = hashToken(token);
  const existing = await store.findTokenByHash(hash);
  if (existing && existing.role !== 'Admin') {
    throw new WirewatchError(
      'InvalidRequestContent',
      `the admin token (${source.name}) is already an API token of a subscription; choose another`,
      { target: 'WIREWATCH_ADMIN_TOKEN' },
    );
  }
  if (existing?.revokedAt) {
    throw new WirewatchError(
      'InvalidRequestContent',
      `the admin token (${source.name}) was retired on ${existing.revokedAt.toISOString()} and stays revoked; choose a new one (or remove ${source.tokenPath} and unset WIREWATCH_ADMIN_TOKEN to have one generated)`,
      { target: 'WIREWATCH_ADMIN_TOKEN' },
    );
  }
  if (!existing) {
    await store.createToken({
      id: randomUUID(),
      subscriptionId: null,
      role: 'Admin',
      hash,
      createdAt: new Date(),
      revokedAt: null,
    });
  }
  await store.revokeAdminTokensExcept(hash, new Date());
}
