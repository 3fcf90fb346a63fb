import { randomUUID } from 'node:crypto';
import {
  DEFAULT_ENROLLMENT_TOKEN_MAX_USES,
  type CreateEnrollmentTokenInput,
} from '../model/arm.js';
import { WirewatchError } from '../model/errors.js';
import type { EnrollmentTokenRecord } from '../store/store.js';
import { appendAudit } from './audit.js';
import type { Caller, ControlContext } from './control-context.js';
import { vmResourceId } from './resource-ids.js';
import { generateToken, hashToken } from './tokens.js';

export function enrollmentTokenResourceId(subscriptionId: string, tokenId: string): string {
  return `/subscriptions/${subscriptionId}/enrollmentTokens/${tokenId}`;
}

/**
 * Enrollment tokens of a subscription, made by its Owner: their lifetime and uses (a takeover
 * token lives an hour and enrolls one VM unless told otherwise), listing and revocation. What a
 * token enrolls is enrollment.ts's. Times are the wall clock's, as enrollment's are.
 */
export class EnrollmentTokens {
  readonly #ctx: ControlContext;

  constructor(ctx: ControlContext) {
    this.#ctx = ctx;
  }

  /** A new token, audited; `token` is its only copy. */
  async create(
    subscriptionId: string,
    input: CreateEnrollmentTokenInput,
    caller: Caller,
  ): Promise<{ record: EnrollmentTokenRecord; token: string }> {
    const token = generateToken('enrollment');
    const createdAt = new Date();
    const takeover = input.takeover ?? null;
    // A takeover token can replace a VM's credential: it lives an hour unless told otherwise.
    const hours = input.expiresInHours ?? (takeover ? 1 : 24);
    const expiresAt = new Date(createdAt.getTime() + hours * 3600_000);
    const record: EnrollmentTokenRecord = {
      id: randomUUID(),
      subscriptionId,
      hash: hashToken(token),
      createdAt,
      expiresAt,
      revokedAt: null,
      takeover: takeover && { resourceGroup: takeover.resourceGroup, name: takeover.name },
      usedAt: null,
      maxUses: takeover ? 1 : (input.maxUses ?? DEFAULT_ENROLLMENT_TOKEN_MAX_USES),
      uses: 0,
    };
    await this.#ctx.store.createEnrollmentToken(record);
    await appendAudit(this.#ctx, caller, {
      subscriptionId,
      action: 'enrollmentToken.create',
      resourceId: enrollmentTokenResourceId(subscriptionId, record.id),
      detail: {
        expiresAt: expiresAt.toISOString(),
        maxUses: record.maxUses,
        ...(takeover
          ? { takeover: vmResourceId(subscriptionId, takeover.resourceGroup, takeover.name) }
          : {}),
      },
    });
    return { record, token };
  }

  /** The subscription's tokens (expired, revoked and used ones too), oldest first. */
  list(subscriptionId: string): Promise<EnrollmentTokenRecord[]> {
    return this.#ctx.store.listEnrollmentTokens(subscriptionId);
  }

  /** Revokes the token, audited; ResourceNotFound when the subscription has no such token. */
  async revoke(subscriptionId: string, tokenId: string, caller: Caller): Promise<void> {
    if (!(await this.#ctx.store.revokeEnrollmentToken(subscriptionId, tokenId, new Date()))) {
      throw new WirewatchError('ResourceNotFound', `Enrollment token '${tokenId}' was not found`, {
        target: 'tokenId',
      });
    }
    await appendAudit(this.#ctx, caller, {
      subscriptionId,
      action: 'enrollmentToken.revoke',
      resourceId: enrollmentTokenResourceId(subscriptionId, tokenId),
      detail: {},
    });
  }
}
