import { describe, expect, it } from 'vitest';
import { addressKey, RateLimiter } from './rate-limit.js';

describe('RateLimiter', () => {
  it('lets a burst through, then refuses with the seconds until the next request fits', () => {
    let now = 0;
    const limiter = new RateLimiter({ perSecond: 2, burst: 4, now: () => now });
    for (let i = 0; i < 4; i++) expect(limiter.take('a')).toEqual({ ok: true });
    expect(limiter.take('a')).toEqual({ ok: false, retryAfterSeconds: 1 });
    // Half a second refills one request at 2 a second.
    now += 499;
    expect(limiter.take('a').ok).toBe(false);
    now += 1;
    expect(limiter.take('a')).toEqual({ ok: true });
    expect(limiter.take('a').ok).toBe(false);
    // A quiet spell refills up to the burst, no further.
    now += 60_000;
    for (let i = 0; i < 4; i++) expect(limiter.take('a').ok).toBe(true);
    expect(limiter.take('a').ok).toBe(false);
  });

  it('keeps one bucket per key', () => {
    const limiter = new RateLimiter({ perSecond: 1, burst: 1, now: () => 0 });
    expect(limiter.take('a').ok).toBe(true);
    expect(limiter.take('a').ok).toBe(false);
    expect(limiter.take('b').ok).toBe(true);
  });

  it('says how long a slow refill takes, in whole seconds', () => {
    let now = 0;
    const limiter = new RateLimiter({ perSecond: 0.1, burst: 1, now: () => now });
    expect(limiter.take('a').ok).toBe(true);
    expect(limiter.take('a')).toEqual({ ok: false, retryAfterSeconds: 10 });
    now += 2500;
    expect(limiter.take('a')).toEqual({ ok: false, retryAfterSeconds: 8 });
  });

  it('stays bounded: full buckets are dropped first, then the oldest half', () => {
    let now = 0;
    const limiter = new RateLimiter({ perSecond: 1, burst: 2, now: () => now, maxKeys: 100 });
    for (let i = 0; i < 100; i++) limiter.take(`k${i}`);
    expect(limiter.size).toBe(100);
    now += 5000;
    // Every bucket has refilled: the next new key prunes them all.
    limiter.take('new');
    expect(limiter.size).toBe(1);
    for (let i = 0; i < 1000; i++) limiter.take(`x${i}`);
    expect(limiter.size).toBeLessThanOrEqual(100);
    // A key that was kept still has its bucket: x999 took one of its two.
    expect(limiter.take('x999').ok).toBe(true);
    expect(limiter.take('x999').ok).toBe(false);
  });
});

describe('addressKey', () => {
  it('keeps IPv4 addresses, unwraps IPv4-mapped ones and groups IPv6 by /64', () => {
    expect(addressKey('203.0.113.7')).toBe('203.0.113.7');
    expect(addressKey('::ffff:203.0.113.7')).toBe('203.0.113.7');
    expect(addressKey('2001:db8:1:2:aaaa:bbbb:cccc:dddd')).toBe('2001:db8:1:2::/64');
    expect(addressKey('2001:db8:1:2::1')).toBe('2001:db8:1:2::/64');
    expect(addressKey('2001:0db8:0001:0002::ffff')).toBe('2001:db8:1:2::/64');
    expect(addressKey('2001:db8::1')).toBe('2001:db8:0:0::/64');
    expect(addressKey('::1')).toBe('0:0:0:0::/64');
    expect(addressKey('fe80::1%eth0')).toBe('fe80:0:0:0::/64');
  });
});
