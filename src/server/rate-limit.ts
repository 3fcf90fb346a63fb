/**
 * Token buckets, one per key (an API token's id, or a remote address for requests without
 * one): each holds up to `burst` requests and refills at `perSecond`. A request takes one; an
 * empty bucket answers how long until the next is there (`Retry-After`).
 *
 * The clock is injected, so tests drive time instead of sleeping. Memory is bounded: a full
 * bucket is the same as no bucket and is dropped when the map grows past `maxKeys`.
 */
export interface RateLimit {
  /** Sustained requests per second. */
  readonly perSecond: number;
  /** Requests that may come at once after a quiet spell; default 5 s worth, at least 1. */
  readonly burst?: number;
}

export interface RateLimiterOptions extends RateLimit {
  /** Milliseconds, monotonic; default performance.now. */
  readonly now?: () => number;
  /** Keys kept before full buckets are dropped; default 100,000. */
  readonly maxKeys?: number;
}

export type TakeResult =
  | { readonly ok: true }
  | {
      readonly ok: false;
      /** Whole seconds until a request would pass (≥ 1). */ readonly retryAfterSeconds: number;
    };

interface Bucket {
  tokens: number;
  at: number;
}

export class RateLimiter {
  readonly #perMs: number;
  readonly #burst: number;
  readonly #now: () => number;
  readonly #maxKeys: number;
  readonly #buckets = new Map<string, Bucket>();

  constructor(options: RateLimiterOptions) {
    if (!(options.perSecond > 0)) throw new RangeError('perSecond must be above 0');
    this.#perMs = options.perSecond / 1000;
    this.#burst = Math.max(1, options.burst ?? Math.ceil(options.perSecond * 5));
    this.#now = options.now ?? (() => performance.now());
    this.#maxKeys = options.maxKeys ?? 100_000;
  }

  /** Takes one request from the key's bucket. */
  take(key: string): TakeResult {
    const now = this.#now();
    let bucket = this.#buckets.get(key);
    if (bucket === undefined) {
      if (this.#buckets.size >= this.#maxKeys) this.#prune(now);
      bucket = { tokens: this.#burst, at: now };
      this.#buckets.set(key, bucket);
    } else {
      bucket.tokens = Math.min(this.#burst, bucket.tokens + (now - bucket.at) * this.#perMs);
      bucket.at = now;
    }
    if (bucket.tokens >= 1) {
      bucket.tokens -= 1;
      return { ok: true };
    }
    const waitMs = (1 - bucket.tokens) / this.#perMs;
    return { ok: false, retryAfterSeconds: Math.max(1, Math.ceil(waitMs / 1000)) };
  }

  /** Buckets held (for tests). */
  get size(): number {
    return this.#buckets.size;
  }

  /** Drops buckets that have refilled (they equal a fresh one); if none have, the oldest half. */
  #prune(now: number): void {
    for (const [key, b] of this.#buckets) {
      if (b.tokens + (now - b.at) * this.#perMs >= this.#burst) this.#buckets.delete(key);
    }
    if (this.#buckets.size < this.#maxKeys) return;
    let drop = Math.ceil(this.#buckets.size / 2);
    for (const key of this.#buckets.keys()) {
      if (drop-- <= 0) break;
      this.#buckets.delete(key);
    }
  }
}

/**
 * The key an address is limited by: an IPv4 address itself (also when IPv4-mapped), an IPv6
 * address by its /64, since one host usually holds a whole /64 and could otherwise step
 * around a per-address limit by changing its interface id.
 */
export function addressKey(ip: string): string {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(ip);
  if (mapped) return mapped[1]!;
  if (!ip.includes(':')) return ip;
  const [head = '', tail] = ip.split('%')[0]!.split('::');
  const left = head === '' ? [] : head.split(':');
  const right = tail === undefined || tail === '' ? [] : tail.split(':');
  const groups =
    tail === undefined
      ? left
      : [
          ...left,
          ...Array<string>(Math.max(0, 8 - left.length - right.length)).fill('0'),
          ...right,
        ];
  const prefix = groups.slice(0, 4).map((g) => (parseInt(g, 16) || 0).toString(16));
  return `${prefix.join(':')}::/64`;
}
