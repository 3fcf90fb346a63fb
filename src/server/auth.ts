import type { FastifyRequest } from 'fastify';
import type { ControlPlane } from '../control/control-plane.js';
import { hashToken } from '../control/tokens.js';
import { WirewatchError } from '../model/errors.js';
import type { Role, TokenRecord } from '../store/store.js';

/** Who a request comes from: the admin (sees all) or a token scoped to one subscription. */
export type Principal =
  | { readonly kind: 'admin'; readonly tokenId: string }
  | {
      readonly kind: 'token';
      readonly tokenId: string;
      readonly subscriptionId: string;
      readonly role: Role;
    };

const rank: Record<Role, number> = { Reader: 1, Contributor: 2, Owner: 3 };

/** The actor string of the audit log. */
export function actorOf(principal: Principal): string {
  return principal.kind === 'admin' ? `admin:${principal.tokenId}` : `token:${principal.tokenId}`;
}

/** `Authorization: Bearer X` → X, or undefined. */
export function bearerToken(request: FastifyRequest): string | undefined {
  const header = request.headers.authorization;
  if (typeof header !== 'string') return undefined;
  const m = /^Bearer\s+(\S+)\s*$/i.exec(header);
  return m?.[1];
}

/**
 * Resolves bearer tokens to principals. Lookups are cached for a few seconds (the hot path of
 * every request); a revocation in this process takes effect at once: the token's id is
 * remembered as revoked, so neither a cached record nor a lookup that raced the revocation
 * lets it through.
 */
export class Authenticator {
  readonly #tokens: ControlPlane['tokens'];
  readonly #cache = new Map<string, { record: TokenRecord | undefined; at: number }>();
  readonly #ttlMs: number;
  readonly #revoked = new Set<string>();

  constructor(tokens: ControlPlane['tokens'], ttlMs = 5000) {
    this.#tokens = tokens;
    this.#ttlMs = ttlMs;
    tokens.onRevoked((tokenId) => this.revoke(tokenId));
  }

  async authenticate(request: FastifyRequest): Promise<Principal> {
    const token = bearerToken(request);
    if (!token) {
      throw new WirewatchError(
        'AuthenticationFailed',
        'Authentication required: send Authorization: Bearer <token>',
      );
    }
    const hash = hashToken(token);
    const now = Date.now();
    let entry = this.#cache.get(hash);
    if (!entry || now - entry.at > this.#ttlMs) {
      entry = { record: await this.#tokens.findByHash(hash), at: now };
      if (this.#cache.size > 10_000) this.#cache.clear();
      this.#cache.set(hash, entry);
    }
    const record = entry.record;
    if (!record || record.revokedAt || this.#revoked.has(record.id)) {
      throw new WirewatchError('AuthenticationFailed', 'The token is not valid or was revoked');
    }
    if (record.role === 'Admin') return { kind: 'admin', tokenId: record.id };
    if (!record.subscriptionId) {
      throw new WirewatchError('AuthenticationFailed', 'The token is not valid or was revoked');
    }
    return {
      kind: 'token',
      tokenId: record.id,
      subscriptionId: record.subscriptionId,
      role: record.role,
    };
  }

  /** The token was revoked: it fails from now on, whatever the cache holds. */
  revoke(tokenId: string): void {
    this.#revoked.add(tokenId);
    this.#cache.clear();
  }
}

/** Where authorize() learns whether a subscription exists: the control plane. */
export type SubscriptionLookup = Pick<ControlPlane, 'subscriptions'>;

function findSubscription(lookup: SubscriptionLookup, id: string): Promise<unknown> {
  return lookup.subscriptions.get(id);
}

/**
 * Checks that the principal may act on the subscription with at least `need`. Another
 * tenant's subscription reads exactly like one that does not exist (404), so nobody learns
 * what exists elsewhere; too weak a role in one's own subscription is a 403.
 */
export async function authorize(
  subscriptions: SubscriptionLookup,
  principal: Principal,
  subscriptionId: string,
  need: Role | 'Admin',
): Promise<void> {
  const missing = () =>
    new WirewatchError(
      'SubscriptionNotFound',
      `The subscription '${subscriptionId}' could not be found`,
      { target: 'subscriptionId' },
    );
  if (principal.kind === 'admin') {
    if (!(await findSubscription(subscriptions, subscriptionId.toLowerCase()))) throw missing();
    return;
  }
  if (principal.subscriptionId.toLowerCase() !== subscriptionId.toLowerCase()) throw missing();
  if (need === 'Admin' || rank[principal.role] < rank[need]) {
    throw new WirewatchError(
      'AuthorizationFailed',
      `The token's role ${principal.role} does not allow this; it needs ${need === 'Admin' ? 'the admin token' : `${need} or higher`}`,
    );
  }
}

declare module 'fastify' {
  interface FastifyContextConfig {
    /**
     * The least a caller needs for this route: checked by the app's authentication hook, before
     * the body is read, in the subscription the path names (the admin token where it names none).
     */
    need?: Role | 'Admin';
  }
}

/**
 * The route-level check of `config.need`: authorize() in the path's subscription, or the admin
 * token for a route outside any subscription. Same answers as the handlers' own checks.
 */
export async function authorizeRoute(
  subscriptions: SubscriptionLookup,
  principal: Principal,
  params: unknown,
  need: Role | 'Admin',
): Promise<void> {
  const subscriptionId =
    typeof params === 'object' && params !== null
      ? (params as Record<string, unknown>)['subscriptionId']
      : undefined;
  if (typeof subscriptionId === 'string') {
    await authorize(subscriptions, principal, subscriptionId, need);
  } else if (need === 'Admin') {
    requireAdmin(principal);
  }
}

export function requireAdmin(principal: Principal): void {
  if (principal.kind !== 'admin') {
    throw new WirewatchError('AuthorizationFailed', 'Only the admin token may do this');
  }
}
