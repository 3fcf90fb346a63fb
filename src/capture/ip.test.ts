import { describe, expect, it } from 'vitest';
import type { IpFamily, IpRange } from './filter-spec.js';
import type { Cidr } from './ip.js';
import {
  cidrToRange,
  formatIp,
  formatIpv4,
  formatIpv6,
  maxAddress,
  parseCidr,
  parseIpAddress,
  parseIpv4,
  parseIpv6,
  rangeToCidrs,
  tryParseCidr,
  tryParseIpv6,
} from './ip.js';
import { random } from '../../test/support/random.js';

describe('IPv4', () => {
  it.each([
    ['0.0.0.0', 0n],
    ['255.255.255.255', 0xffffffffn],
    ['10.77.1.1', 0x0a4d0101n],
    ['192.0.2.10', 0xc000020an],
  ])('parses and formats %s', (text, value) => {
    expect(parseIpv4(text)).toBe(value);
    expect(formatIpv4(value)).toBe(text);
  });

  it.each([
    '',
    '1.2.3',
    '1.2.3.4.5',
    '256.0.0.1',
    '1.2.3.300',
    '01.2.3.4',
    '1.2.3.00',
    '1.2.3.-1',
    '1.2.3.+1',
    '1.2..4',
    ' 1.2.3.4',
    '1.2.3.4 ',
    '0x1.2.3.4',
    '1.2.3.4/32',
    '١.٢.٣.٤',
  ])('rejects %j', (text) => {
    expect(parseIpv4(text)).toBeUndefined();
  });

  it('round-trips random addresses', () => {
    const next = random(4);
    for (let i = 0; i < 2000; i++) {
      const value = BigInt(Math.floor(next() * 2 ** 32));
      expect(parseIpv4(formatIpv4(value))).toBe(value);
    }
  });
});

describe('IPv6', () => {
  it.each([
    ['::', '::', 0n],
    ['::1', '::1', 1n],
    ['1::', '1::', 1n << 112n],
    ['fd77::1:1', 'fd77::1:1', (0xfd77n << 112n) | 0x10001n],
    ['FD77:0:0:0:0:0:1:1', 'fd77::1:1', (0xfd77n << 112n) | 0x10001n],
    ['fd77:0000:0000:0000:0000:0000:0001:0001', 'fd77::1:1', (0xfd77n << 112n) | 0x10001n],
    ['2001:db8:0:0:1:0:0:1', '2001:db8::1:0:0:1', 0x20010db8000000000001000000000001n],
    ['2001:0:0:1:0:0:0:1', '2001:0:0:1::1', 0x20010000000000010000000000000001n],
    ['1:0:3:4:5:6:7:8', '1:0:3:4:5:6:7:8', 0x00010000000300040005000600070008n],
    ['1:2:3:4:5:6:7::', '1:2:3:4:5:6:7:0', 0x00010002000300040005000600070000n],
    ['::2:3:4:5:6:7:8', '0:2:3:4:5:6:7:8', 0x00000002000300040005000600070008n],
    ['::ffff:10.0.0.1', '::ffff:10.0.0.1', 0xffff0a000001n],
    ['::ffff:a00:1', '::ffff:10.0.0.1', 0xffff0a000001n],
    ['::10.0.0.1', '::a00:1', 0x0a000001n],
    ['64:ff9b::192.0.2.1', '64:ff9b::c000:201', 0x0064ff9b0000000000000000c0000201n],
    ['1:2:3:4:5:6:1.2.3.4', '1:2:3:4:5:6:102:304', 0x00010002000300040005000601020304n],
    ['fe80::1', 'fe80::1', (0xfe80n << 112n) | 1n],
  ])('parses %s, formats %s', (text, canonical, value) => {
    expect(parseIpv6(text)).toBe(value);
    expect(formatIpv6(value)).toBe(canonical);
    expect(parseIpv6(canonical)).toBe(value);
  });

  it.each([
    '',
    ':',
    ':::',
    '1::2::3',
    ':1::',
    '::1:',
    '1:2:3:4:5:6:7',
    '1:2:3:4:5:6:7:8:9',
    '1:2:3:4::5:6:7:8',
    '12345::',
    'g::',
    'fe80::1%eth0',
    '[::1]',
    '1.2.3.4::',
    '::1.2.3',
    '::1.2.3.4:5',
    '::01.2.3.4',
    '1:2:3:4:5:6:7:1.2.3.4',
    ' ::1',
  ])('rejects %j', (text) => {
    expect(parseIpv6(text)).toBeUndefined();
  });

  it('says why', () => {
    expect(tryParseIpv6('fe80::1%eth0')).toEqual({
      ok: false,
      reason: 'IPv6 zone ids are not supported',
    });
  });

  it('round-trips random addresses, including zero runs', () => {
    const next = random(6);
    for (let i = 0; i < 3000; i++) {
      let value = 0n;
      for (let g = 0; g < 8; g++) {
        // Zero groups half of the time, so that "::" placement is exercised.
        const group = next() < 0.5 ? 0 : Math.floor(next() * 0x10000);
        value = (value << 16n) | BigInt(group);
      }
      const text = formatIpv6(value);
      expect(parseIpv6(text)).toBe(value);
      expect(text).toBe(text.toLowerCase());
      expect(text).not.toMatch(/(^|:)0[0-9a-f]/); // no leading zeros
      checkRfc5952(text);
    }
  });
});

/** RFC 5952 §4.2: "::" replaces the longest run (first on ties) of two or more zero groups. */
function checkRfc5952(text: string): void {
  if (text.startsWith('::ffff:') && text.includes('.')) return; // IPv4-mapped, §5
  const halves = text.split('::');
  expect(halves.length).toBeLessThanOrEqual(2);
  const runs = (part: string): number[] => {
    const out: number[] = [];
    let run = 0;
    for (const g of part === '' ? [] : part.split(':')) {
      run = g === '0' ? run + 1 : 0;
      out.push(run);
    }
    return out;
  };
  const before = Math.max(0, ...runs(halves[0] ?? ''));
  const after = Math.max(0, ...runs(halves[1] ?? ''));
  if (halves.length === 1) {
    expect(before).toBeLessThan(2);
    return;
  }
  const explicit = [halves[0], halves[1]].filter((p) => p !== '' && p !== undefined);
  const compressed = 8 - explicit.reduce((n, p) => n + (p as string).split(':').length, 0);
  expect(compressed).toBeGreaterThanOrEqual(2);
  expect(compressed).toBeGreaterThan(before);
  expect(compressed).toBeGreaterThanOrEqual(after);
}

describe('parseIpAddress', () => {
  it('picks the family', () => {
    expect(parseIpAddress('10.0.0.1')).toEqual({ family: 4, value: 0x0a000001n });
    expect(parseIpAddress('::ffff:10.0.0.1')).toEqual({ family: 6, value: 0xffff0a000001n });
    expect(parseIpAddress('nope')).toBeUndefined();
    expect(formatIp(4, 0x0a000001n)).toBe('10.0.0.1');
    expect(formatIp(6, 1n)).toBe('::1');
  });

  it('refuses to format out-of-range values', () => {
    expect(() => formatIpv4(1n << 32n)).toThrow(RangeError);
    expect(() => formatIpv6(-1n)).toThrow(RangeError);
  });
});

describe('CIDR', () => {
  it.each([
    ['10.0.0.0/8', { family: 4, base: 0x0a000000n, prefix: 8 }],
    ['0.0.0.0/0', { family: 4, base: 0n, prefix: 0 }],
    ['10.0.0.1/32', { family: 4, base: 0x0a000001n, prefix: 32 }],
    ['fd77::/64', { family: 6, base: 0xfd77n << 112n, prefix: 64 }],
    ['::/0', { family: 6, base: 0n, prefix: 0 }],
    ['fd77::1/128', { family: 6, base: (0xfd77n << 112n) | 1n, prefix: 128 }],
  ])('parses %s', (text, cidr) => {
    expect(parseCidr(text)).toEqual(cidr);
  });

  it.each([
    ['10.0.0.1/8', 'host bits are set (did you mean 10.0.0.0/8?)'],
    ['fd77::1/64', 'host bits are set (did you mean fd77::/64?)'],
    ['10.0.0.0/33', 'the prefix length of an IPv4 block is at most 32'],
    ['fd77::/129', 'the prefix length of an IPv6 block is at most 128'],
    ['10.0.0.0/', 'the prefix length is a decimal number 0-32 without leading zeros'],
    ['10.0.0.0/08', 'the prefix length is a decimal number 0-32 without leading zeros'],
    ['10.0.0.0/8/8', 'the prefix length is a decimal number 0-32 without leading zeros'],
    ['/8', 'a CIDR block is ADDRESS/PREFIX; the address is missing'],
    ['10.0.0.0', 'a CIDR block is ADDRESS/PREFIX'],
  ])('rejects %s: %s', (text, reason) => {
    expect(tryParseCidr(text)).toEqual({ ok: false, reason });
  });

  it('gives the range of a block', () => {
    expect(cidrToRange({ family: 4, base: 0x0a000000n, prefix: 8 })).toEqual({
      family: 4,
      first: 0x0a000000n,
      last: 0x0affffffn,
    });
    expect(cidrToRange({ family: 6, base: 0n, prefix: 0 })).toEqual({
      family: 6,
      first: 0n,
      last: maxAddress(6),
    });
  });
});

/** Checks that `cidrs` is a minimal exact cover of `range`. */
function checkCover(range: IpRange, cidrs: readonly Cidr[]): void {
  const bits = range.family === 4 ? 32 : 128;
  // Exact cover: blocks are valid, in order, disjoint and contiguous from first to last.
  let expectNext = range.first;
  for (const cidr of cidrs) {
    expect(cidr.family).toBe(range.family);
    const r = cidrToRange(cidr);
    expect(r.first).toBe(expectNext);
    expect((cidr.base & (maxAddress(range.family) >> BigInt(cidr.prefix))) === 0n).toBe(true);
    expect(cidr.prefix).toBeGreaterThanOrEqual(0);
    expect(cidr.prefix).toBeLessThanOrEqual(bits);
    expectNext = r.last + 1n;
  }
  expect(expectNext).toBe(range.last + 1n);
  // No two blocks merge into one: two neighbours of the same size whose union is aligned.
  for (let i = 0; i + 1 < cidrs.length; i++) {
    const a = cidrs[i] as Cidr;
    const b = cidrs[i + 1] as Cidr;
    if (a.prefix === b.prefix && a.prefix > 0) {
      const parentMask = maxAddress(range.family) >> BigInt(a.prefix - 1);
      expect((a.base & parentMask) !== 0n, `blocks ${i} and ${i + 1} could merge`).toBe(true);
    }
  }
}

/** The size of a minimal cover, by dynamic programming over the addresses (tiny ranges only). */
function bruteForceMinimum(family: IpFamily, first: number, last: number): number {
  const bits = family === 4 ? 32 : 128;
  const best = new Map<number, number>([[last + 1, 0]]);
  for (let a = last; a >= first; a--) {
    let min = Infinity;
    for (let size = 0; size < Math.min(bits, 31); size++) {
      const n = 2 ** size;
      if (a % n !== 0 || a + n - 1 > last) continue;
      min = Math.min(min, 1 + (best.get(a + n) ?? Infinity));
    }
    best.set(a, min);
  }
  return best.get(first) ?? Infinity;
}

describe('rangeToCidrs', () => {
  it('covers a single address with one host block', () => {
    expect(rangeToCidrs({ family: 4, first: 5n, last: 5n })).toEqual([
      { family: 4, base: 5n, prefix: 32 },
    ]);
  });

  it('covers the whole space with one block', () => {
    expect(rangeToCidrs({ family: 4, first: 0n, last: maxAddress(4) })).toEqual([
      { family: 4, base: 0n, prefix: 0 },
    ]);
    expect(rangeToCidrs({ family: 6, first: 0n, last: maxAddress(6) })).toEqual([
      { family: 6, base: 0n, prefix: 0 },
    ]);
  });

  it('covers 127.0.0.1-127.0.0.255 with 8 blocks', () => {
    const range: IpRange = { family: 4, first: 0x7f000001n, last: 0x7f0000ffn };
    const cidrs = rangeToCidrs(range);
    expect(cidrs.map((c) => `${formatIpv4(c.base)}/${c.prefix}`)).toEqual([
      '127.0.0.1/32',
      '127.0.0.2/31',
      '127.0.0.4/30',
      '127.0.0.8/29',
      '127.0.0.16/28',
      '127.0.0.32/27',
      '127.0.0.64/26',
      '127.0.0.128/25',
    ]);
    checkCover(range, cidrs);
  });

  it('is minimal on small random ranges (brute force)', () => {
    const next = random(42);
    for (let i = 0; i < 400; i++) {
      const first = Math.floor(next() * 1024);
      const last = first + Math.floor(next() * 300);
      for (const family of [4, 6] as const) {
        const range: IpRange = { family, first: BigInt(first), last: BigInt(last) };
        const cidrs = rangeToCidrs(range);
        checkCover(range, cidrs);
        expect(cidrs.length).toBe(bruteForceMinimum(family, first, last));
      }
    }
  });

  it('is an exact, unmergeable cover on large random ranges of both families', () => {
    const next = random(7);
    const randomBig = (bits: number): bigint => {
      let v = 0n;
      for (let b = 0; b < bits; b += 16) v = (v << 16n) | BigInt(Math.floor(next() * 0x10000));
      return v & ((1n << BigInt(bits)) - 1n);
    };
    for (let i = 0; i < 300; i++) {
      for (const family of [4, 6] as const) {
        const bits = family === 4 ? 32 : 128;
        const a = randomBig(bits);
        const b = randomBig(bits);
        const range: IpRange = { family, first: a < b ? a : b, last: a < b ? b : a };
        const cidrs = rangeToCidrs(range);
        checkCover(range, cidrs);
        expect(cidrs.length).toBeLessThanOrEqual(2 * bits - 2);
      }
    }
  });

  it('needs 2·128−2 blocks for ::1 to ffff:…:fffe, the IPv6 worst case', () => {
    const range: IpRange = { family: 6, first: 1n, last: maxAddress(6) - 1n };
    const cidrs = rangeToCidrs(range);
    expect(cidrs).toHaveLength(254);
    checkCover(range, cidrs);
  });

  it('rejects reversed and out-of-range input', () => {
    expect(() => rangeToCidrs({ family: 4, first: 2n, last: 1n })).toThrow(RangeError);
    expect(() => rangeToCidrs({ family: 4, first: 0n, last: 1n << 32n })).toThrow(RangeError);
  });
});
