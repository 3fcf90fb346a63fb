/**
 * Which bucket a request is charged to (src/server/rate-limit.ts holds the buckets):
 *
 * - a valid API token: that token's bucket;
 * - a failed authentication (no, unknown, revoked or malformed API token, agent credential or
 *   enrollment token): the remote address's failed-login bucket;
 * - an agent's enrollment or channel connect with a valid credential: the address's agent bucket;
 * - `/healthz`: none. It answers a constant; a bucket would cost what the answer costs, and a
 *   load balancer's health check must not fail because someone at its address guessed tokens.
 *
 * A request is charged to one bucket only, after its credential was looked at, so guessing
 * tokens from an address never refuses a valid agent, a valid token or a health check from it.
 */
import type { FastifyReply, FastifyRequest } from 'fastify';
import { WirewatchError } from '../model/errors.js';
import { addressKey, RateLimiter, type RateLimit } from './rate-limit.js';

export interface RequestLimitsOptions {
  /** Per API token; false: none. */
  readonly perToken: RateLimit | false;
  /** Per remote address, for failed logins and, apart, for agents; false: none. */
  readonly perAddress: RateLimit | false;
  /** Milliseconds, monotonic; default performance.now. */
  readonly now?: () => number;
}

export class RequestLimits {
  readonly #perToken: RateLimiter | undefined;
  readonly #failedLogins: RateLimiter | undefined;
  readonly #agents: RateLimiter | undefined;

  constructor(options: RequestLimitsOptions) {
    const make = (limit: RateLimit | false) =>
      limit === false
        ? undefined
        : new RateLimiter({ ...limit, ...(options.now ? { now: options.now } : {}) });
    this.#perToken = make(options.perToken);
    this.#failedLogins = make(options.perAddress);
    this.#agents = make(options.perAddress);
  }

  /** A request with a valid API token. */
  token(reply: FastifyReply, tokenId: string): void {
    charge(reply, this.#perToken, tokenId, 'for this token');
  }

  /** An enrollment or agent channel connect whose credential is valid. */
  agent(request: FastifyRequest, reply: FastifyReply): void {
    charge(reply, this.#agents, addressKey(request.ip), 'from agents at this address');
  }

  /**
   * A failed authentication: returns the error to answer with, `error` or a 429 once the address
   * has failed too often (the lookup was made anyway; the 429 tells a client to back off).
   */
  failedLogin(request: FastifyRequest, reply: FastifyReply, error: unknown): unknown {
    try {
      charge(
        reply,
        this.#failedLogins,
        addressKey(request.ip),
        'with failed authentication from this address',
      );
    } catch (tooMany) {
      return tooMany;
    }
    return error;
  }
}

/** Takes a request from a bucket; an empty one is a 429 with Retry-After. */
function charge(
  reply: FastifyReply,
  limiter: RateLimiter | undefined,
  key: string,
  who: string,
): void {
  const result = limiter?.take(key);
  if (result === undefined || result.ok) return;
  reply.header('Retry-After', String(result.retryAfterSeconds));
  throw new WirewatchError(
    'TooManyRequests',
    `Too many requests ${who}; retry after ${result.retryAfterSeconds} s`,
  );
}
